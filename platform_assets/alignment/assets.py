"""Time-aligned views: curated bars joined with the L2 top of book."""


import dagster as dg

from platform_assets.alignment.transforms import align_top_of_book
from platform_assets.curation.assets import curated_bars
from platform_assets.ingestion.assets import l2_snapshots_sim
from platform_assets.ingestion.databento_assets import l2_snapshots_databento
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions, follow_upstream
from platform_assets.progress import Progress
from platform_assets.quality.checks import is_blocked, log_blocked
from platform_assets.run_options import keep_existing
from platform_assets.universe import run_symbols
from resources.l2_store import L2SnapshotStore
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="alignment",
    kinds={"parquet", "pandas"},
    deps=[curated_bars, l2_snapshots_sim, l2_snapshots_databento],
    metadata={"lake_table": str(ALIGNED_BARS)},
)
def aligned_bars(context: dg.AssetExecutionContext, lake: ParquetLake, l2_store: L2SnapshotStore) -> dg.MaterializeResult:
    """Curated 1-minute bars with the as-of L2 top of book, one row per session minute.

    Each bar (stamped with its start ``ts``, closed at ``bar_end = ts + 1 min``) gets the last L2
    snapshot taken strictly before ``bar_end`` and at most 5 minutes old: l2_ts, bid/ask price and
    size at level 0, mid_px, spread, spread_bps, l2_age_s, and the flags l2_stale (no usable
    snapshot) and book_crossed. The join never looks ahead. Partitioned by trading date; one file
    per (symbol, date) in ``lake/aligned_bars``. Skips a (symbol, date) whose curated bars failed an
    error DQ rule.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    rows = stale = crossed = 0
    blocked = []
    keep = keep_existing(context, "curated")
    progress = Progress(context, "aligned_bars", len(symbols) * len(dates))
    for day in dates:
        for symbol in symbols:
            progress.step()
            if keep and lake.has_partition(ALIGNED_BARS, symbol, day):
                continue
            if is_blocked(lake, "curated_bars", symbol, day):
                blocked.append(f"{symbol}@{day}")
                continue
            bars = lake.read(CURATED_BARS, [symbol], [day])
            if bars.empty:
                continue
            book, _ = l2_store.read_day(symbol, day)
            aligned = align_top_of_book(bars, book)
            lake.write_partition(ALIGNED_BARS, symbol, day, aligned)
            rows += len(aligned)
            stale += int(aligned["l2_stale"].sum())
            crossed += int(aligned["book_crossed"].sum())
    log_blocked(context, "curated_bars", blocked)
    return dg.MaterializeResult(
        metadata={"rows": rows, "l2_stale_rows": stale, "crossed_book_rows": crossed, "symbols": len(symbols), "dates": len(dates), "symbol_days_dq_blocked": len(blocked)}
    )
