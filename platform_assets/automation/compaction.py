"""Compaction of closed months: one Parquet file per (symbol, month) for the tables TF_1 reads.

A year of 1-minute features is ~250 files per symbol; opening a file costs ~0.3-0.5 ms whatever
its size, so a 50-symbol x 1-year training pull spends most of its time opening files. Merging
each closed month into one file cuts that by ~21x (see README "Benchmarks"). Months are "closed"
when they end before ``before_month`` (default: the current month), so live days are never touched.
The job is idempotent (nothing to merge -> nothing written) and safe against concurrent partition
writes and readers: each (table, symbol) is compacted under the lock every writer of it holds, and
the swap (month file written, day files removed) under the table's exclusive layout lock that
readers hold shared (see ``resources.lake`` and README "Reliability"). It first sweeps the lake of
``.tmp-*`` files that crashed writers left (never a live writer's).

Then it (re)builds the read copies of the feature and label tables (``resources.read_copy``): one
memory-mappable Arrow file per (table, symbol) holding its closed months, which single-group
training pulls read instead of the Parquet month files (README "Retrieval"). A copy already
standing for the current month files is left alone, so a re-run writes nothing.
"""


import dagster as dg
import pandas as pd

from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.lake_status import report_lost_dates
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake, Table, feature_table, labels_table
from resources.parquet_format import is_read_optimised
from resources.read_copy import build_read_copies, remove_read_copies


def compactable_tables() -> list[Table]:
    """Curated and aligned bars, every feature group version, every label definition."""
    tables = [CURATED_BARS, ALIGNED_BARS]
    tables += [feature_table(group, version) for group, versions in FEATURE_GROUPS.items() for version in versions]
    tables += [labels_table(version) for version in LABEL_DEFINITIONS]
    return tables


def current_month() -> str:
    today = pd.Timestamp.now(tz="UTC")
    return f"{today.year:04d}-{today.month:02d}"


def compact_closed_months(lake: ParquetLake, before_month: str | None = None, log=None) -> dict[str, int]:
    """Dates merged per table (tables with nothing to merge omitted)."""
    before = before_month or current_month()
    swept = lake.sweep_temp_files()
    if swept and log:
        log(f"removed {len(swept)} temp files left by crashed writers")
    out = {}
    for table in compactable_tables():
        merged = lake.compact_table(table, before)
        if merged:
            out[str(table)] = sum(merged.values())
            if log:
                log(f"{table}: merged {out[str(table)]} day files of {len(merged)} symbols into month files")
    return out


def refresh_read_copies(lake: ParquetLake, before_month: str | None = None, log=None, enabled: bool | None = None) -> dict[str, int]:
    """(Re)build the read copies of every feature and label table for months before ``before_month``
    (default: the current month); symbols whose copy was rewritten per table (up-to-date ones omitted).
    With read copies switched off (``enabled``, default the lake's ``read_copies``, i.e. the
    ``LAKE_READ_COPIES`` setting) every copy is removed instead (readers ignore them then anyway),
    freeing their disk."""
    before = before_month or current_month()
    enabled = lake.read_copies if enabled is None else enabled
    out = {}
    for table in compactable_tables():
        if not is_read_optimised(table.name):
            continue
        if not enabled:
            removed = remove_read_copies(lake, table)
            if removed and log:
                log(f"{table}: {removed} read copies removed (LAKE_READ_COPIES=false)")
            continue
        built = build_read_copies(lake, table, before)
        if built:
            out[str(table)] = len(built)
            if log:
                log(f"{table}: read copies of {len(built)} symbols rebuilt ({sum(built.values())} rows)")
    return out


class CompactionConfig(dg.Config):
    before_month: str = ""
    """Compact months strictly before this YYYY-MM (empty: the current month)."""


@dg.op(
    description="Merge closed months of the derived tables into one file per (symbol, month); rebuild the read copies of features and labels.",
    out=dg.Out(dg.Nothing),
)
def compact_lake_op(context: dg.OpExecutionContext, config: CompactionConfig, lake: ParquetLake) -> None:
    merged = compact_closed_months(lake, config.before_month or None, context.log.info)
    context.log.info(f"compaction: {sum(merged.values())} day files merged in {len(merged)} tables")
    copies = refresh_read_copies(lake, config.before_month or None, context.log.info)
    context.log.info(f"read copies: {sum(copies.values())} rebuilt in {len(copies)} tables")
    lost = report_lost_dates(context.instance, lake, context.log.warning)  # corrupt day files met while merging
    if lost:
        raise dg.Failure(
            description=f"{len(lost)} corrupt file(s) quarantined while compacting; their dates fail their asset's completeness check until re-run",
            metadata={"quarantined": dg.MetadataValue.md("\n".join(f"- {l.table} {l.symbol} {l.month}: {l.moved_to}" for l in lost))},
        )


@dg.job(description="Compaction of closed months (curated, aligned, features, labels).")
def compact_lake_job():
    compact_lake_op()


compaction_schedule = dg.ScheduleDefinition(
    name="compaction_schedule",
    job=compact_lake_job,
    cron_schedule="0 5 2 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="2nd of the month 05:00 UTC: compact every closed month.",
)
