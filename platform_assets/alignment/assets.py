"""Time-aligned views: curated bars joined with the L2 top of book."""

import datetime as dt

import dagster as dg

from platform_assets.alignment.transforms import align_sessions_top_of_book, align_top_of_book
from platform_assets.curation.assets import curated_bars
from platform_assets.ingestion.assets import l2_snapshots_sim
from platform_assets.ingestion.databento_assets import l2_snapshots_databento
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions, follow_upstream
from platform_assets.calendars import STOCKS
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, dq_tables
from platform_assets.symbol_days import Outcome, StepEvents, SymbolDayStep, complete_check_spec, kept, written
from platform_assets.curated_input import curated_day, curated_days, date_slices, write_by_date
from platform_assets.run_options import keep_existing
from platform_assets.universe import run_symbols, tracked_symbols
from resources.l2_store import L2SnapshotStore
from resources.lake import ALIGNED_BARS, ParquetLake

ALIGNED_DQ_CHECKS = dq_check_specs("aligned_bars", "aligned_bars")

@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="alignment",
    kinds={"parquet", "pandas"},
    deps=[curated_bars, l2_snapshots_sim, l2_snapshots_databento],
    metadata={"lake_table": str(ALIGNED_BARS)},
    check_specs=[complete_check_spec("aligned_bars", stock_date_partitions), *ALIGNED_DQ_CHECKS],
)
def aligned_bars(context: dg.AssetExecutionContext, lake: ParquetLake, l2_store: L2SnapshotStore, data_quality: DataQuality) -> StepEvents:
    """Curated 1-minute bars with the as-of L2 top of book, one row per session minute.

    Each bar (stamped with its start ``ts``, closed at ``bar_end = ts + 1 min``) gets the last L2
    snapshot taken strictly before ``bar_end`` and at most 5 minutes old: l2_ts, bid/ask price and
    size at level 0, mid_px, spread, spread_bps, l2_age_s, and the flags l2_stale (no usable
    snapshot) and book_crossed. The join never looks ahead. Partitioned by trading date; one file
    per (symbol, date) in ``lake/aligned_bars``. Skips a (symbol, date) whose curated bars failed an
    error DQ rule. The ``aligned_bars`` DQ rules (close null rate, one row per (symbol, ts),
    increasing ts) run on every written date as the ``dq_*`` checks.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    keep = keep_existing(context, "curated")
    quality = data_quality.recorder(lake, "aligned_bars", stored_as="aligned_bars", asset_key="aligned_bars")

    def align(symbol: str, day: dt.date) -> Outcome:
        if keep and lake.has_partition(ALIGNED_BARS, symbol, day):
            return kept()
        bars = curated_day(lake, symbol, day)
        if isinstance(bars, Outcome):
            return bars
        book, _ = l2_store.read_day_top(symbol, day)
        aligned = align_top_of_book(bars, book)
        lake.write_partition(ALIGNED_BARS, symbol, day, aligned)
        quality.add(symbol, day, aligned)
        return written(len(aligned), l2_stale_rows=int(aligned["l2_stale"].sum()), crossed_book_rows=int(aligned["book_crossed"].sum()))

    def align_days(symbol: str, days: list[dt.date]) -> dict[dt.date, Outcome]:
        bars, outcomes = curated_days(lake, symbol, days, is_kept=(lambda day: lake.has_partition(ALIGNED_BARS, symbol, day)) if keep else None)
        slices = date_slices(bars)
        if not slices:
            return outcomes
        index = l2_store.day_index(symbol)
        books = [(start, stop, l2_store.read_day_top(symbol, day, index)[0]) for day, start, stop in slices]
        aligned = align_sessions_top_of_book(bars.reset_index(drop=True), books)
        write_by_date(lake, ALIGNED_BARS, symbol, aligned, quality)
        stale, crossed = aligned["l2_stale"].to_numpy(), aligned["book_crossed"].to_numpy()
        for day, start, stop in slices:
            outcomes[day] = written(stop - start, l2_stale_rows=int(stale[start:stop].sum()), crossed_book_rows=int(crossed[start:stop].sum()))
        return outcomes

    step = SymbolDayStep(
        context, "aligned_bars", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
        is_stored=lambda s, d: lake.has_partition(ALIGNED_BARS, s, d), stats_keys=("l2_stale_rows", "crossed_book_rows"), lake=lake,
        quality=[quality], heals=[ALIGNED_BARS, *dq_tables("aligned_bars")],
    )
    yield from step.run_by_symbol(align_days, align).finish(quality.finish(check_groups(ALIGNED_DQ_CHECKS)))
