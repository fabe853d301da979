"""Databento ingestion assets: 1-minute bars, trades, TBBO and mbp-10 L2 snapshots.

Every asset fetches through one ``DatabentoAdapter`` per run (``databento.adapter()``) and puts
its counters (records_fetched, api_calls_made, retry_attempts, validation_errors,
processing_time_ms, data_volume_mb) in the materialization metadata. ``raw_bars_databento`` is
generated from the adapter registry (``adapter_assets``). All partitioned by XNYS trading date (ranged runs), run in the ``databento`` concurrency pool
(dagster.yaml ``concurrency: pools``) so parallel runs cannot multiply the requests sent, and read
the key from ``DATABENTO_API_KEY`` at run time (the assets load without it).
"""

import dagster as dg
import pandas as pd

from platform_assets.ingestion.adapter_assets import GENERATED_RAW_BARS_ASSETS, frames_by_day
from platform_assets.ingestion.assets import L2_DQ_DATASET, l2_quality_input
from platform_assets.ingestion.databento_transforms import tbbo_to_frame, trades_to_frame
from platform_assets.ingestion.l2_backfill import backfill_l2_day
from platform_assets.ingestion.l2_sampling import L2Sampling
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions
from platform_assets.progress import Progress
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs
from platform_assets.quality.heal import heal_lost_results, l2_days_input
from platform_assets.universe import run_symbols
from resources.adapters.ranges import days_range
from resources.databento_source import DatabentoSource
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake, Table, content_hash, raw_bars_table
from resources.settings import get_settings

DATABENTO = "databento"
POOL = "databento"
RAW_BARS_DATABENTO = raw_bars_table(DATABENTO)
RAW_TRADES_DATABENTO = Table("raw_trades", (("source", DATABENTO),))
RAW_TBBO_DATABENTO = Table("raw_tbbo", (("source", DATABENTO),))
FORCE_TAG = "platform/force"
L2_DQ_CHECKS = dq_check_specs("l2_snapshots_databento", "l2_snapshots")


# The raw-bars asset is generated from the adapter registry like any source's (adapter_assets).
raw_bars_databento = GENERATED_RAW_BARS_ASSETS[DATABENTO]


def _tick_asset(context, databento: DatabentoSource, lake: ParquetLake, schema: str, table: Table, convert) -> dg.MaterializeResult:
    symbols, dates = run_symbols(context), partition_dates(context)
    start, end = days_range(dates)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    rows = written = 0
    with databento.adapter() as adapter:
        for (symbol, day), frame, _ in frames_by_day(adapter.fetch_frames(symbols, schema, start, end, convert), symbols, dates):
            if frame.empty:
                continue
            frame = frame.assign(source=DATABENTO, date=day, ingestion_ts=ingestion_ts)
            batch_id = content_hash(frame.drop(columns=["ingestion_ts"]), DATABENTO, schema, symbol, str(day))
            _, new = lake.append_batch(table, symbol, day, frame.assign(batch_id=batch_id), batch_id, ingestion_ts)
            rows, written = rows + len(frame), written + new
    return dg.MaterializeResult(
        metadata={"source": DATABENTO, "dataset": databento.dataset, "schema": schema, "symbols": len(symbols), "dates": len(dates), "rows": rows,
                  "batches_written": written, **adapter.metrics.as_dict()}
    )


@dg.asset(
    partitions_def=stock_date_partitions, backfill_policy=ranged_backfill_policy, group_name="databento", kinds={"parquet"}, pool=POOL,
    metadata={"lake_table": str(RAW_TRADES_DATABENTO), "source": DATABENTO, "schema": "trades"},
)
def raw_trades_databento(context: dg.AssetExecutionContext, databento: DatabentoSource, lake: ParquetLake) -> dg.MaterializeResult:
    """Every trade from Databento (``trades``, 1-day chunks): symbol, ts (event), ts_recv, price,
    size, side, sequence. Append-only content-hashed batches per (symbol, New York date) under
    ``lake/raw_trades/source=databento``. Partitioned by XNYS trading date."""
    return _tick_asset(context, databento, lake, "trades", RAW_TRADES_DATABENTO, trades_to_frame)


@dg.asset(
    partitions_def=stock_date_partitions, backfill_policy=ranged_backfill_policy, group_name="databento", kinds={"parquet"}, pool=POOL,
    metadata={"lake_table": str(RAW_TBBO_DATABENTO), "source": DATABENTO, "schema": "tbbo"},
)
def raw_tbbo_databento(context: dg.AssetExecutionContext, databento: DatabentoSource, lake: ParquetLake) -> dg.MaterializeResult:
    """Trades with the top of book just before each (``tbbo``, 1-day chunks): trade columns plus
    bid_px, ask_px, bid_sz, ask_sz. Append-only batches per (symbol, New York date) under
    ``lake/raw_tbbo/source=databento``. Partitioned by XNYS trading date."""
    return _tick_asset(context, databento, lake, "tbbo", RAW_TBBO_DATABENTO, tbbo_to_frame)


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="databento",
    kinds={"parquet"},
    pool=POOL,
    metadata={"file_contract": "level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_databento.parquet", "source": DATABENTO, "schema": "mbp-10"},
    check_specs=L2_DQ_CHECKS,
)
def l2_snapshots_databento(
    context: dg.AssetExecutionContext, databento: DatabentoSource, l2_store: L2SnapshotStore, lake: ParquetLake, data_quality: DataQuality
) -> dg.MaterializeResult:
    """Historical 10-level L2 snapshots from Databento ``mbp-10``, sampled per ``L2_SAMPLING_MODE``
    (default: as-of snapshots every ``L2_INTERVAL_MS`` like live capture; or one per book event).

    For each (symbol, trading date): the symbol's records (those of other instruments in the stream
    are dropped: ``foreign_records_dropped``) inside ``L2_BACKFILL_WINDOW_ET`` (DST-aware) become
    fixed 10-level arrays (zeros for missing levels) in
    ``level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_databento.parquet``, written atomically and streamed in
    record batches. Idempotent: an existing file is skipped unless the run has the tag
    ``platform/force=true`` (its DQ rules still run on it: a fault after an earlier run wrote the
    file and before its DQ results were stored must not leave the day unjudged); a day without
    records writes nothing (reported as empty). Same code as
    ``platform_api.l2_backfill.backfill_l2``. Partitioned by XNYS trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    force = context.run.tags.get(FORCE_TAG, "").lower() == "true"
    settings = get_settings()
    window = (settings.l2_window.start, settings.l2_window.end)  # L2_BACKFILL_WINDOW_ET within L2_TRADING_WINDOW_ET
    sampling = L2Sampling(settings.l2_sampling_mode, settings.l2_interval_ms, settings.l2_sampling_clock)
    quality = data_quality.recorder(lake, "l2_snapshots", stored_as=L2_DQ_DATASET, asset_key="l2_snapshots_databento")
    counts = {"written": 0, "skipped": 0, "empty": 0, "error": 0}
    errors, snapshots, foreign = [], 0, 0
    progress = Progress(context, "l2_snapshots_databento", len(symbols) * len(dates))
    adapter = databento.adapter()  # one adapter for the run (its counters), connected on first use
    try:
        for day in dates:
            for symbol in symbols:
                result = backfill_l2_day(adapter, l2_store, symbol, day, window, force=force, sampling=sampling)
                kind = "empty" if result["zero_rows"] else result["status"]
                counts[kind] += 1
                foreign += result.get("foreign_records", 0)
                if kind == "error":
                    errors.append(f"{symbol}@{day}: {result['error']}")
                elif kind in ("written", "skipped"):  # a skipped day is judged again: its DQ results may never have been stored
                    book, _ = l2_store.read_day(symbol, day)
                    quality.add(symbol, day, *l2_quality_input(symbol, book))
                    snapshots += result["rows"] if kind == "written" else 0
                progress.step()
    finally:
        adapter.disconnect()
    heal_lost_results(quality, l2_days_input(l2_store, l2_quality_input), context.log)
    if errors:
        raise dg.Failure(f"{len(errors)} of {len(symbols) * len(dates)} L2 days failed", metadata={"errors": "\n".join(errors[:50]), **counts, **adapter.metrics.as_dict()})
    return dg.MaterializeResult(
        metadata={"source": DATABENTO, "snapshots_written": snapshots, "foreign_records_dropped": foreign, "l2_sampling": sampling.describe(), **{f"days_{k}": v for k, v in counts.items()}, **adapter.metrics.as_dict()},
        check_results=quality.finish(check_groups(L2_DQ_CHECKS)),
    )


DATABENTO_ASSETS = [raw_bars_databento, raw_trades_databento, raw_tbbo_databento, l2_snapshots_databento]
