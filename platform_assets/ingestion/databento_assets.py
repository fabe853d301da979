"""Databento ingestion assets: 1-minute bars, trades, TBBO and mbp-10 L2 snapshots.

All partitioned by XNYS trading date (ranged runs), run in the ``databento`` concurrency pool
(dagster.yaml ``concurrency: pools``) so parallel runs cannot multiply the requests sent, and read
the key from ``DATABENTO_API_KEY`` at run time (the assets load without it).
"""

import datetime as dt

import dagster as dg
import pandas as pd

from platform_assets.ingestion.assets import L2_DQ_DATASET, l2_quality_input
from platform_assets.ingestion.databento_transforms import ohlcv_to_bars, split_by_et_date, tbbo_to_frame, trades_to_frame
from platform_assets.ingestion.l2_backfill import backfill_l2_day
from platform_assets.ingestion.raw_batches import build_raw_batch
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions
from platform_assets.progress import Progress
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, raw_dq_dataset
from platform_assets.universe import run_symbols
from resources.databento_source import DatabentoSource, et_day_bounds
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake, Table, content_hash, quarantine_table, raw_bars_table
from resources.manifests import BarsManifest
from resources.schemas import RAW_BARS_SCHEMA
from resources.settings import get_settings

DATABENTO = "databento"
POOL = "databento"
RAW_BARS_DATABENTO = raw_bars_table(DATABENTO)
RAW_TRADES_DATABENTO = Table("raw_trades", (("source", DATABENTO),))
RAW_TBBO_DATABENTO = Table("raw_tbbo", (("source", DATABENTO),))
FORCE_TAG = "platform/force"
RAW_DQ_CHECKS = dq_check_specs("raw_bars_databento", "raw_bars")
L2_DQ_CHECKS = dq_check_specs("l2_snapshots_databento", "l2_snapshots")


def _run_range(dates: list[dt.date]) -> tuple[pd.Timestamp, pd.Timestamp]:
    return et_day_bounds(dates[0])[0], et_day_bounds(dates[-1])[1]


def _vendor_maps(databento: DatabentoSource, symbols: list[str]) -> tuple[list[str], dict[str, str]]:
    to_vendor = databento.vendor_symbols(symbols)
    return sorted(set(to_vendor.values())), {vendor: local for local, vendor in to_vendor.items()}


def _frames_by_day(databento: DatabentoSource, symbols: list[str], dates: list[dt.date], schema: str, convert):
    """Yield ((symbol, day), frame, rejected) per requested (symbol, trading date), chunk by chunk.

    A day is yielded once the chunks covering all of it are in (chunk edges fall on UTC instants,
    which DST can move off New York midnight), so a day is never split into two batches.
    """
    vendor_symbols, to_local = _vendor_maps(databento, symbols)
    start, end = _run_range(dates)
    wanted = set(dates)
    pending: dict[tuple[str, dt.date], list[pd.DataFrame]] = {}
    rejected: dict[tuple[str, dt.date], list[pd.DataFrame]] = {}

    def flush(until: pd.Timestamp):
        for key in sorted(k for k in pending if et_day_bounds(k[1])[1] <= until):
            frames, bad = pending.pop(key), rejected.pop(key, [])
            good = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            yield key, good, (pd.concat(bad, ignore_index=True) if bad else None)

    for chunk in databento.fetch(vendor_symbols, schema, start, end):
        ids = chunk.instrument_symbols()
        for records in chunk.record_batches():
            good, bad = convert(records, ids)
            for target, frame in ((pending, good), (rejected, bad)):
                if frame is None or frame.empty:
                    continue
                frame = frame.assign(symbol=frame["symbol"].map(to_local).fillna(frame["symbol"]))
                for (symbol, day), rows in split_by_et_date(frame).items():
                    if day in wanted and symbol in symbols:
                        target.setdefault((symbol, day), []).append(rows)
                        if target is rejected:
                            pending.setdefault((symbol, day), [])
        yield from flush(chunk.end)
    yield from flush(pd.Timestamp.max.tz_localize("UTC"))


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="databento",
    kinds={"parquet"},
    pool=POOL,
    metadata={"lake_table": str(RAW_BARS_DATABENTO), "source": DATABENTO, "schema": "ohlcv-1m"},
    check_specs=RAW_DQ_CHECKS,
)
def raw_bars_databento(
    context: dg.AssetExecutionContext, databento: DatabentoSource, lake: ParquetLake, bars_manifest: BarsManifest, data_quality: DataQuality
) -> dg.MaterializeResult:
    """Raw 1-minute OHLCV bars from Databento (``ohlcv-1m``), source="databento".

    Fetched for the run's symbols and whole date range in 7-day chunks, streamed to disk and
    decoded in record batches. Malformed vendor records (non-positive or non-finite price, high <
    low, open/close outside the range, unknown instrument) are filtered out, counted and kept in
    ``quarantine/raw_bars/source=databento`` with the reason. Valid bars land per (symbol, New York
    date) as append-only content-hashed batches under ``lake/raw_bars/source=databento`` (logged in
    the bars download manifest) and feed ``curated_bars`` (source priority databento > ib > sim).
    Partitioned by XNYS trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    quality = data_quality.recorder(lake, "raw_bars", stored_as=raw_dq_dataset(DATABENTO), asset_key="raw_bars_databento")
    rows = written = rejected_rows = 0
    missing = {(s, d) for s in symbols for d in dates}
    progress = Progress(context, "raw_bars_databento", len(missing))
    for (symbol, day), bars, bad in _frames_by_day(databento, symbols, dates, "ohlcv-1m", ohlcv_to_bars):
        missing.discard((symbol, day))
        if bad is not None and len(bad):
            rejected_rows += len(bad)
            lake.append_batch(quarantine_table(RAW_BARS_DATABENTO), symbol, day, bad, content_hash(bad, DATABENTO, symbol, str(day)), ingestion_ts)
        if bars.empty:
            continue
        batch_id, batch, _ = build_raw_batch(bars.sort_values("ts", kind="stable"), source=DATABENTO, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
        path, new = lake.append_batch(RAW_BARS_DATABENTO, symbol, day, batch, batch_id, ingestion_ts, RAW_BARS_SCHEMA)
        if new:
            bars_manifest.record(path, batch, vendor=DATABENTO, symbol=symbol, bar_size="1m")
        quality.add(symbol, day, batch)
        rows, written = rows + len(batch), written + new
        progress.step()
    bars_manifest.rebuild_coverage()
    if missing:
        context.log.warning(f"Databento returned no bars for {len(missing)} symbol-days: {', '.join(sorted(f'{s}@{d}' for s, d in missing)[:20])}")
    return dg.MaterializeResult(
        metadata={
            "source": DATABENTO, "dataset": databento.dataset, "symbols": len(symbols), "dates": len(dates), "rows": rows,
            "batches_written": written, "malformed_rows_quarantined": rejected_rows, "symbol_days_without_data": len(missing),
        },
        check_results=quality.finish(check_groups(RAW_DQ_CHECKS)),
    )


def _tick_asset(context, databento: DatabentoSource, lake: ParquetLake, schema: str, table: Table, convert) -> dg.MaterializeResult:
    symbols, dates = run_symbols(context), partition_dates(context)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    rows = written = 0
    for (symbol, day), frame, _ in _frames_by_day(databento, symbols, dates, schema, lambda r, ids: (convert(r, ids), None)):
        if frame.empty:
            continue
        frame = frame.assign(source=DATABENTO, date=day, ingestion_ts=ingestion_ts)
        batch_id = content_hash(frame.drop(columns=["ingestion_ts"]), DATABENTO, schema, symbol, str(day))
        _, new = lake.append_batch(table, symbol, day, frame.assign(batch_id=batch_id), batch_id, ingestion_ts)
        rows, written = rows + len(frame), written + new
    return dg.MaterializeResult(metadata={"source": DATABENTO, "schema": schema, "symbols": len(symbols), "dates": len(dates), "rows": rows, "batches_written": written})


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
    """Historical 10-level L2 snapshots from Databento ``mbp-10`` (one snapshot per book event).

    For each (symbol, trading date): the records inside ``L2_BACKFILL_WINDOW_ET`` (DST-aware) become
    fixed 10-level arrays (zeros for missing levels) in
    ``level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_databento.parquet``, written atomically and streamed in
    record batches. Idempotent: an existing file is skipped unless the run has the tag
    ``platform/force=true``; a day without records writes nothing (reported as empty). Same code as
    ``platform_api.l2_backfill.backfill_l2``. Partitioned by XNYS trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    force = context.run.tags.get(FORCE_TAG, "").lower() == "true"
    settings = get_settings()
    window = (settings.l2_window.start, settings.l2_window.end)  # L2_BACKFILL_WINDOW_ET within L2_TRADING_WINDOW_ET
    quality = data_quality.recorder(lake, "l2_snapshots", stored_as=L2_DQ_DATASET, asset_key="l2_snapshots_databento")
    counts = {"written": 0, "skipped": 0, "empty": 0, "error": 0}
    errors, snapshots = [], 0
    progress = Progress(context, "l2_snapshots_databento", len(symbols) * len(dates))
    for day in dates:
        for symbol in symbols:
            result = backfill_l2_day(databento, l2_store, symbol, day, window, force=force)
            kind = "empty" if result["zero_rows"] else result["status"]
            counts[kind] += 1
            if kind == "error":
                errors.append(f"{symbol}@{day}: {result['error']}")
            elif kind == "written":
                book, _ = l2_store.read_day(symbol, day)
                quality.add(symbol, day, *l2_quality_input(symbol, book))
                snapshots += result["rows"]
            progress.step()
    if errors:
        raise dg.Failure(f"{len(errors)} of {len(symbols) * len(dates)} L2 days failed", metadata={"errors": "\n".join(errors[:50]), **counts})
    return dg.MaterializeResult(
        metadata={"source": DATABENTO, "snapshots_written": snapshots, **{f"days_{k}": v for k, v in counts.items()}},
        check_results=quality.finish(check_groups(L2_DQ_CHECKS)),
    )


DATABENTO_ASSETS = [raw_bars_databento, raw_trades_databento, raw_tbbo_databento, l2_snapshots_databento]
