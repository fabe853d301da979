"""Interactive Brokers ingestion: historical 1-minute bars through TWS / IB Gateway."""

import functools

import dagster as dg
import pandas as pd

from platform_assets.ingestion.raw_batch_store import store_raw_batch
from platform_assets.ingestion.raw_batches import build_raw_batch
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, raw_dq_dataset
from platform_assets.quality.heal import heal_lost_results, raw_batches_input
from platform_assets.calendars import STOCKS
from platform_assets.run_options import ingestion_options
from platform_assets.symbol_days import FAILED, Outcome, StepEvents, SymbolDayStep, complete_check_spec, no_input, stored_batch
from platform_assets.universe import run_symbols, tracked_symbols
from resources.ib_source import BarsResult, IBSource
from resources.lake import ParquetLake, raw_bars_table
from resources.bars_manifest import BarsManifest

IB = "ib"
RAW_BARS_IB = raw_bars_table(IB)
RAW_DQ_CHECKS = dq_check_specs("raw_bars_ib", "raw_bars")
IB_STATS = ("batches_written", "duplicate_key_rows_quarantined")


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="ib",
    kinds={"parquet"},
    pool="ib",
    metadata={"lake_table": str(RAW_BARS_IB), "source": IB},
    check_specs=[*RAW_DQ_CHECKS, complete_check_spec("raw_bars_ib", stock_date_partitions)],
)
def raw_bars_ib(
    context: dg.AssetExecutionContext, ib: IBSource, lake: ParquetLake, bars_manifest: BarsManifest, data_quality: DataQuality
) -> StepEvents:
    """Raw historical bars from Interactive Brokers (``reqHistoricalData``), source="ib".

    Options from the run's ``platform/options`` tag (the ingestion API sets it): bar_size (default
    "1 min"), what_to_show ("TRADES"), use_rth (true), max_parallel_requests (bars of 30 s and less),
    max_concurrent_requests (1 min and up), pacing_policy ("auto" or "strict"). Pacing follows the
    bar size (``resources.ib_source``): for 30 s and less IB's hard rules with one-day pages (60
    requests / 10 min, no identical request within 15 s, 6 per contract within 2 s); for 1 min and
    up multi-day pages (10 D for 1-min bars) and an adaptive limiter (up to 6 open requests, halved
    with a back-off on IB pacing errors). The ``ib`` concurrency pool keeps parallel runs from
    sharing one gateway at once. A symbol IB does not know fails alone (listed in the metadata,
    logged as an error, named by each date's ``symbols_complete`` check); days without data (IB's 162 "no data") are reported; a request IB never
    answers is retried like a lost page and then fails its symbol (never a day without data). Append-only content-hashed batches per
    (symbol, New York date) under ``lake/raw_bars/source=ib``, feeding curated_bars (where "ib"
    supersedes the session's live bars, "ib_live"). Partitioned by XNYS trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    options = ingestion_options(context)
    if options.get("pacing_policy", "auto") not in ("auto", "strict"):
        raise dg.Failure(f"IB option pacing_policy must be 'auto' or 'strict', got {options['pacing_policy']!r}")
    source = ib.model_copy(update={
        "max_parallel_requests": int(options.get("max_parallel_requests", ib.max_parallel_requests)),
        "max_concurrent_requests": int(options.get("max_concurrent_requests", ib.max_concurrent_requests)),
        "pacing_policy": str(options.get("pacing_policy", ib.pacing_policy)),
    })
    quality = data_quality.recorder(lake, "raw_bars", stored_as=raw_dq_dataset(IB), asset_key="raw_bars_ib")
    step = SymbolDayStep(context, "raw_bars_ib", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
                         is_stored=functools.partial(lake.has_batch, RAW_BARS_IB), stats_keys=IB_STATS, quality=[quality])
    try:
        result = source.fetch_bars(
            symbols, dates, bar_size=options.get("bar_size", "1 min"), what_to_show=options.get("what_to_show", "TRADES"),
            use_rth=bool(options.get("use_rth", True)),
        )
    except Exception as error:  # noqa: BLE001 - IB unreachable: every symbol-day failed with it, judged below, then the step fails
        result = BarsResult(errors={symbol: f"{type(error).__name__}: {error}".splitlines()[0][:300] for symbol in symbols})
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    bar_size = options.get("bar_size", "1 min").replace(" ", "")
    for (symbol, day), bars in sorted(result.bars.items()):
        batch_id, batch, repeated = build_raw_batch(bars, source=IB, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
        path, new = store_raw_batch(lake, RAW_BARS_IB, symbol, day, batch, batch_id, repeated, ingestion_ts)
        quality.add(symbol, day, batch)  # judged once stored, whatever fails after
        bars_manifest.record(path, batch, vendor=IB, symbol=symbol, bar_size=bar_size, new=new)
        stats = {"batches_written": int(new), "duplicate_key_rows_quarantined": len(repeated)}
        step.record(symbol, day, stored_batch(new, len(batch), **stats))
    for symbol, day in result.empty_days:
        step.record(symbol, day, no_input("IB: HMDS query returned no data"))
    for symbol, error in result.errors.items():
        context.log.error(f"IB: {symbol} failed: {error}")
        for day in dates:
            step.record(symbol, day, Outcome(FAILED, detail=f"IB: {error}"[:300]))
    heal_lost_results(quality, raw_batches_input(lake, RAW_BARS_IB), context.log)
    bars_manifest.rebuild_coverage()
    context.add_asset_metadata({
        "source": IB, "symbols": len(symbols), "dates": len(dates),
        "requests": result.requests, "pacing_retries": result.pacing_retries, "timeouts": result.timeouts, "reconnects": result.reconnects,
        "pacing_policy": result.policy, "pages": result.pages, "peak_open_requests": result.peak_open,
    })  # the fetch's counters (one fetch serves every date of the run); each date's own failed / no-data symbols are in its step metadata
    yield from step.finish(quality.finish(check_groups(RAW_DQ_CHECKS)))
