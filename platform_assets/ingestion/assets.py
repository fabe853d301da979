"""Ingestion assets of the offline (simulated) source: raw 1-min bars and L2 snapshots."""


import functools

import dagster as dg
import pandas as pd

from platform_assets.calendars import STOCKS, session_bounds
from platform_assets.ingestion.raw_batch_store import RAW_STATS, raw_batch_stats, store_raw_batch
from platform_assets.ingestion.raw_batches import as_delivered, raw_batch_table
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, raw_dq_dataset
from platform_assets.quality.heal import heal_lost_results, l2_days_input, raw_batches_input
from platform_assets.symbol_days import Outcome, StepEvents, SymbolDayStep, complete_check_spec, stored_batch, written
from platform_assets.universe import run_symbols, tracked_symbols
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake, raw_bars_table
from resources.bars_manifest import BarsManifest
from resources.offline_source import SIM_SOURCE, SIMULATED, OfflineSource

RAW_BARS_SIM = raw_bars_table(SIM_SOURCE)
RAW_DQ_CHECKS = dq_check_specs("raw_bars_sim", "raw_bars")
L2_DQ_CHECKS = dq_check_specs("l2_snapshots_sim", "l2_snapshots")
L2_DQ_DATASET = "l2_snapshots"


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="ingestion",
    kinds={"parquet"},
    metadata={"lake_table": str(RAW_BARS_SIM), "source": SIM_SOURCE},
    check_specs=[*RAW_DQ_CHECKS, complete_check_spec("raw_bars_sim", stock_date_partitions)],
)
def raw_bars_sim(
    context: dg.AssetExecutionContext, offline_source: OfflineSource, lake: ParquetLake, data_quality: DataQuality,
    bars_manifest: BarsManifest,
) -> StepEvents:
    """Raw 1-minute OHLCV bars from the offline simulator (source="sim"), as delivered.

    Append-only raw layer: one batch file per (source, symbol, trading date) under
    ``lake/raw_bars/source=sim/symbol=S/date=D/``, columns source, symbol, date, ts (UTC bar
    start), open, high, low, close, volume, vwap, trade_count, batch_id, ingestion_ts. Vendor faults
    (bad ticks, missing minutes) are kept as delivered; rows repeating the primary key
    (source, symbol, ts, batch_id) go to ``quarantine/raw_bars``. Every new batch is logged in
    ``manifests/bars_download_manifest.jsonl`` and the coverage manifest rebuilt. Re-running a partition with the
    same data writes nothing (content-hashed batch id). The ``raw_bars`` DQ rules run on every
    delivered batch as the ``dq_*`` checks (results in ``dq_metrics/dataset=raw_bars_sim``); a
    batch failing an error rule is kept but not curated. Partitioned by XNYS trading date; every
    tracked stock symbol (or the ``platform/symbols`` tag subset) is processed.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    quality = data_quality.recorder(lake, "raw_bars", stored_as=raw_dq_dataset(SIM_SOURCE), asset_key="raw_bars_sim")

    def ingest(symbol: str, day) -> Outcome:
        bars = offline_source.day(symbol, day).bar_columns
        batch_id, batch, repeated = raw_batch_table(bars, source=SIM_SOURCE, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
        path, new = store_raw_batch(lake, RAW_BARS_SIM, symbol, day, batch, batch_id, repeated, ingestion_ts)
        quality.add(symbol, day, as_delivered(bars, source=SIM_SOURCE, symbol=symbol, day=day))  # judged once stored, whatever fails after
        bars_manifest.record(path, batch, vendor=SIM_SOURCE, symbol=symbol, bar_size="1m", new=new)  # a found batch: logged if its line is missing
        return stored_batch(new, len(batch), **raw_batch_stats(new, len(repeated)))

    step = SymbolDayStep(
        context, "raw_bars_sim", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
        is_stored=functools.partial(lake.has_batch, RAW_BARS_SIM), stats_keys=RAW_STATS, quality=[quality],
    ).run(ingest)
    heal_lost_results(quality, raw_batches_input(lake, RAW_BARS_SIM, as_delivered=True), context.log)
    bars_manifest.rebuild_coverage()
    context.add_asset_metadata(SIMULATED)
    yield from step.finish(quality.finish(check_groups(RAW_DQ_CHECKS)))


def l2_quality_input(symbol: str, book) -> tuple[dict, dict]:
    """An L2 book as the DQ engine takes it: the timestamp columns plus the level arrays."""
    frame = {"symbol": symbol, "timestamp": pd.DatetimeIndex(book.timestamp).tz_localize("UTC").array}
    arrays = {"bid_prices": book.bid_prices, "bid_sizes": book.bid_sizes, "ask_prices": book.ask_prices, "ask_sizes": book.ask_sizes}
    return frame, arrays


def _capture_suffix(day) -> str:
    """The offline source mimics a live capture started at the session open (ET wall clock)."""
    open_ts, _ = session_bounds(STOCKS, day)
    return open_ts.tz_convert(STOCKS.timezone).strftime("%H%M%S")


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="ingestion",
    kinds={"parquet"},
    metadata={"file_contract": "level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_{HHMMSS}.parquet", "source": SIM_SOURCE},
    check_specs=[*L2_DQ_CHECKS, complete_check_spec("l2_snapshots_sim", stock_date_partitions)],
)
def l2_snapshots_sim(
    context: dg.AssetExecutionContext, offline_source: OfflineSource, l2_store: L2SnapshotStore, lake: ParquetLake, data_quality: DataQuality
) -> StepEvents:
    """Level-2 order-book snapshots (10 levels, every 30 s) from the offline simulator.

    Written in the TF_1 file contract: ``level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_{HHMMSS}.parquet``
    with ``timestamp`` (UTC) and list columns bid_prices, bid_sizes, ask_prices, ask_sizes of fixed
    length 10 (zeros for missing levels), plus ``source="sim"``. HHMMSS is the session open in ET,
    as if a live capture had started then. Feed gaps have no snapshots; halts repeat a frozen
    book. Re-running a partition replaces the file atomically. The ``l2_snapshots`` DQ rules (crossed
    book, level order, sizes, 10 levels, increasing timestamps) run as the ``dq_*`` checks; a day
    failing an error rule gets no L2 features. Partitioned by XNYS trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    quality = data_quality.recorder(lake, "l2_snapshots", stored_as=L2_DQ_DATASET, asset_key="l2_snapshots_sim")
    for symbol in symbols:  # once per folder, not at every write (a folder holds a file per day)
        l2_store.sweep_temp_files(symbol)
    suffixes = {day: _capture_suffix(day) for day in dates}

    def capture(symbol: str, day) -> Outcome:
        book = offline_source.day(symbol, day).book
        l2_store.write(symbol, day, book, suffix=suffixes[day], source=SIM_SOURCE, sweep=False)
        quality.add(symbol, day, *l2_quality_input(symbol, book))
        return written(len(book), files=1)

    step = SymbolDayStep(
        context, "l2_snapshots_sim", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
        is_stored=lambda symbol, day: bool(l2_store.day_files(symbol, day)), stats_keys=("files",), quality=[quality],
    ).run(capture)
    heal_lost_results(quality, l2_days_input(l2_store, l2_quality_input), context.log)
    context.add_asset_metadata(SIMULATED)
    yield from step.finish(quality.finish(check_groups(L2_DQ_CHECKS)))
