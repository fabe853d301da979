"""What a backfill produced: rows per asset, gaps found and DQ status, answered by DuckDB."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from resources.warehouse import LakeWarehouse

COUNTED_VIEWS = {
    "raw_bars_sim": "SELECT count(*) FROM raw_bars WHERE source = 'sim'",
    "l2_snapshots_sim": "SELECT count(*) FROM l2_snapshots",
    "curated_bars": "SELECT count(*) FROM curated_bars",
    "aligned_bars": "SELECT count(*) FROM aligned_bars",
    "bar_features (v1)": "SELECT count(*) FROM features_bar_features_v1",
    "l2_features (v1)": "SELECT count(*) FROM features_l2_features_v1",
    "labels (v1)": "SELECT count(*) FROM labels_v1",
}
RANGE_FILTER = " {glue} symbol IN (SELECT unnest($symbols)) AND date BETWEEN $start AND $end"


@dataclass
class LakeSummary:
    rows: dict[str, int] = field(default_factory=dict)
    gap_minutes: dict[str, int] = field(default_factory=dict)
    dq_status: dict[str, int] = field(default_factory=dict)
    dq_problems: list[tuple[str, str, str, float, str]] = field(default_factory=list)


def summarize(warehouse: LakeWarehouse, symbols: list[str], start: dt.date, end: dt.date) -> LakeSummary:
    """Rows per dataset, gap minutes by type and per-metric DQ status for the symbols and dates."""
    params = {"symbols": symbols, "start": start, "end": end}
    summary = LakeSummary()
    with warehouse.connect() as conn:
        views = {row[0] for row in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        for label, sql in COUNTED_VIEWS.items():
            view = sql.split(" FROM ")[1].split()[0]
            if view not in views:
                summary.rows[label] = 0
                continue
            glue = "AND" if " WHERE " in sql else "WHERE"
            summary.rows[label] = conn.execute(sql + RANGE_FILTER.format(glue=glue), params).fetchone()[0]
        if "curated_bars" in views:
            for gap_type, minutes in conn.execute(
                "SELECT gap_type_retrospective, count(*) FROM curated_bars WHERE gap_type_retrospective <> 'none' AND" + RANGE_FILTER.format(glue="") + " GROUP BY 1 ORDER BY 2 DESC",
                params,
            ).fetchall():
                summary.gap_minutes[gap_type] = minutes
        if "dq_metrics" in views:
            summary.dq_status = dict(
                conn.execute(
                    "SELECT status, count(*) FROM (SELECT symbol, date, CASE WHEN bool_or(status='error') THEN 'error' "
                    "WHEN bool_or(status='warn') THEN 'warn' ELSE 'ok' END AS status FROM dq_metrics WHERE dataset = 'curated_bars' AND"
                    + RANGE_FILTER.format(glue="")
                    + " GROUP BY 1, 2) GROUP BY 1 ORDER BY 1",
                    params,
                ).fetchall()
            )
            summary.dq_problems = conn.execute(
                "SELECT symbol, CAST(date AS VARCHAR), metric, value, status FROM dq_metrics WHERE dataset = 'curated_bars' AND status = 'error' AND"
                + RANGE_FILTER.format(glue="")
                + " ORDER BY date, symbol LIMIT 10",
                params,
            ).fetchall()
    return summary
