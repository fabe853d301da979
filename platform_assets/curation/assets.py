"""Curated, gap-aware 1-minute bars."""


import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from platform_assets.calendars import STOCKS, session_minutes
from platform_assets.curation.gap_engine import ImputationPolicy, curate_bars, l2_minute_activity
from platform_assets.ingestion.assets import l2_snapshots_sim, raw_bars_sim
from platform_assets.ingestion.databento_assets import l2_snapshots_databento, raw_bars_databento
from platform_assets.ingestion.ib_assets import raw_bars_ib
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions, follow_upstream
from platform_assets.progress import Progress
from platform_assets.run_options import keep_existing
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, is_blocked, raw_dq_dataset
from platform_assets.universe import run_symbols
from resources.l2_store import L2SnapshotStore
from resources.lake import CURATED_BARS, ParquetLake, quarantine_table, raw_bars_table
from resources.schemas import L2Book

TIMELINE_CHECK = "timeline_complete"
CURATED_DQ_CHECKS = dq_check_specs("curated_bars", "curated_bars")


class CurationConfig(dg.Config):
    """Which raw source wins when several delivered the same (symbol, date), and halt detection."""

    source_priority: list[str] = ["databento", "ib", "ib_live", "sim"]
    halt_min_minutes: int = 5


def pick_raw_source(lake: ParquetLake, symbol: str, day: dt.date, priority: list[str]) -> tuple[str | None, pd.DataFrame | None]:
    """The newest batch of the highest-priority source that delivered this (symbol, date)."""
    for source in priority:
        batch = lake.read_latest_batch(raw_bars_table(source), symbol, day)
        if batch is not None:
            return source, batch
    return None, None


def book_activity(book: L2Book, timeline: pd.DatetimeIndex) -> pd.DataFrame | None:
    if len(book) == 0:
        return None
    top = np.stack([book.bid_prices[:, 0], book.ask_prices[:, 0], book.bid_sizes[:, 0], book.ask_sizes[:, 0]], axis=1)
    return l2_minute_activity(book.timestamp, top, timeline)


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="curation",
    kinds={"parquet", "pandas"},
    deps=[raw_bars_sim, l2_snapshots_sim, raw_bars_databento, l2_snapshots_databento, raw_bars_ib],
    metadata={"lake_table": str(CURATED_BARS)},
    check_specs=[
        dg.AssetCheckSpec(TIMELINE_CHECK, asset="curated_bars", blocking=True, description="every curated partition holds exactly the session's minutes, each once"),
        *CURATED_DQ_CHECKS,
    ],
)
def curated_bars(
    context: dg.AssetExecutionContext, config: CurationConfig, lake: ParquetLake, l2_store: L2SnapshotStore, data_quality: DataQuality
) -> dg.MaterializeResult:
    """Canonical gap-aware 1-minute bars, one row per minute of the exchange session.

    Built from the newest raw batch of the preferred source (config ``source_priority``), validated
    (bad ticks and inconsistent OHLC removed and counted, duplicate minutes dropped), aligned to
    the XNYS session timeline (390 minutes, 210 on half days, DST-aware UTC stamps) and gap-filled:
    close forward-filled, volume 0, with the gap mask ``is_imputed``/``gap_type``/
    ``gap_run_minutes`` and ``dq_status`` (ok|imputed|missing).

    Feed gap vs no-trade minute: a missing bar whose minute still has moving L2 snapshots is a
    ``no_trade`` minute (the feed was alive, nobody traded); a long frozen-book quiet run is a
    ``halt``; a missing bar with no L2 snapshot either is a ``feed_gap``; without any L2 data for
    the day the gap is ``unknown``. Rejected raw rows are kept in ``quarantine/curated_bars``.
    The ``curated_bars`` rules of the DQ rule file run as the ``dq_*`` asset checks; per-partition
    results go to ``dq_metrics/dataset=curated_bars`` and a partition with an error result is
    skipped by the downstream assets. A (symbol, date) whose raw batch failed an error rule is not
    curated. Partitioned by trading date; one Parquet file per (symbol, date) in ``lake/curated_bars``.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    policy = ImputationPolicy(halt_min_minutes=config.halt_min_minutes)
    totals: dict[str, float] = {}
    no_raw, raw_blocked, timeline_problems, sources = [], [], [], set()
    quality = data_quality.recorder(lake, "curated_bars", asset_key="curated_bars")
    keep = keep_existing(context, "curated")
    progress = Progress(context, "curated_bars", len(symbols) * len(dates))
    for day in dates:
        timeline = session_minutes(STOCKS, day)
        for symbol in symbols:
            progress.step()
            if keep and lake.has_partition(CURATED_BARS, symbol, day):
                continue
            source, raw = pick_raw_source(lake, symbol, day, config.source_priority)
            if raw is None:
                no_raw.append(f"{symbol}@{day}")
                continue
            if is_blocked(lake, raw_dq_dataset(source), symbol, day):
                raw_blocked.append(f"{symbol}@{day}")
                continue
            sources.add(source)
            book, _ = l2_store.read_day(symbol, day)
            curated, stats, rejected = curate_bars(
                raw, timeline, symbol=symbol, day=day, source=source, activity=book_activity(book, timeline), policy=policy
            )
            lake.write_partition(CURATED_BARS, symbol, day, curated)
            if len(rejected):
                lake.write_partition(quarantine_table(CURATED_BARS), symbol, day, rejected)
            else:
                lake.delete_partition(quarantine_table(CURATED_BARS), symbol, day)
            values = stats.as_dict()
            quality.add(symbol, day, curated, stats=values)
            if len(curated) != len(timeline) or curated["ts"].duplicated().any():
                timeline_problems.append(f"{symbol}@{day}")
            for key, value in values.items():
                if key != "gap_ratio":
                    totals[key] = totals.get(key, 0) + value
    if no_raw:
        context.log.warning(f"no raw bars for {len(no_raw)} symbol-days, left untouched: {', '.join(no_raw[:20])}")
    if raw_blocked:
        context.log.warning(f"raw bars failed an error DQ rule for {len(raw_blocked)} symbol-days, not curated: {', '.join(raw_blocked[:20])}")
    dq_results = quality.finish(check_groups(CURATED_DQ_CHECKS))
    expected = totals.get("expected_minutes", 0)
    return dg.MaterializeResult(
        metadata={
            "symbols": len(symbols),
            "dates": len(dates),
            "rows": int(expected),
            "sources": ", ".join(sorted(sources)),
            "symbol_days_without_raw": len(no_raw),
            "symbol_days_raw_blocked": len(raw_blocked),
            "gap_ratio": round((expected - totals.get("real_minutes", 0)) / expected, 6) if expected else 0.0,
            **{k: int(v) for k, v in totals.items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=TIMELINE_CHECK,
                passed=not timeline_problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"partitions_checked": len(symbols) * len(dates) - len(no_raw), "failing": ", ".join(timeline_problems[:50])},
            ),
            *dq_results,
        ],
    )
