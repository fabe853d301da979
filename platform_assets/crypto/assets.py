"""Crypto pairs on a 24/7 calendar: raw 1-minute bars and curated bars, partitioned by UTC day."""

import datetime as dt
import functools

import dagster as dg
import pandas as pd

from platform_assets.calendars import CRYPTO, elapsed_session_minutes
from platform_assets.curation.gap_engine import curate_bars
from platform_assets.ingestion.raw_batch_store import RAW_STATS, raw_batch_stats, store_raw_batch
from platform_assets.ingestion.raw_batches import build_raw_batch
from platform_assets.partitions import crypto_date_partitions, partition_dates, ranged_backfill_policy, follow_upstream
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, dq_tables
from platform_assets.symbol_days import Outcome, StepEvents, SymbolDayStep, complete_check_spec, no_input, stored_batch, written
from platform_assets.universe import run_symbols, tracked_symbols
from resources.lake import CURATED_BARS, ParquetLake, raw_bars_table
from resources.bars_manifest import BarsManifest
from resources.offline_source import SIM_SOURCE, SIMULATED, OfflineSource

RAW_BARS_SIM = raw_bars_table(SIM_SOURCE)
CRYPTO_CURATED_DQ_CHECKS = dq_check_specs("crypto_curated_bars", "crypto_curated_bars")  # the curated rules sized for 1,440-minute days


@dg.asset(
    partitions_def=crypto_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="crypto",
    kinds={"parquet"},
    metadata={"lake_table": str(RAW_BARS_SIM), "source": SIM_SOURCE, "calendar": "24/7 UTC"},
    check_specs=[complete_check_spec("crypto_raw_bars_sim", crypto_date_partitions)],
)
def crypto_raw_bars_sim(
    context: dg.AssetExecutionContext, offline_source: OfflineSource, lake: ParquetLake, bars_manifest: BarsManifest
) -> StepEvents:
    """Raw 1-minute bars of the tracked crypto pairs from the offline simulator, 1,440 minutes a day.

    Same table and contract as the stock raw bars (``lake/raw_bars/source=sim/...``, append-only
    content-hashed batches), partitioned by UTC calendar day (every day: crypto trades 24/7). Each
    date's ``symbols_complete`` check says whether every tracked crypto pair has a batch stored (the
    lake status audit re-checks it: a batch removed by hand fails its date until re-ingested).
    """
    symbols, dates = run_symbols(context, CRYPTO), partition_dates(context)
    ingestion_ts = pd.Timestamp.now(tz="UTC")

    def ingest(symbol: str, day: dt.date) -> Outcome:
        bars = offline_source.day(symbol, day, CRYPTO).bars
        batch_id, batch, repeated = build_raw_batch(bars, source=SIM_SOURCE, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
        path, new = store_raw_batch(lake, RAW_BARS_SIM, symbol, day, batch, batch_id, repeated, ingestion_ts)
        bars_manifest.record(path, batch, vendor=SIM_SOURCE, symbol=symbol, bar_size="1m", new=new)
        return stored_batch(new, len(batch), **raw_batch_stats(new, len(repeated)))

    step = SymbolDayStep(
        context, "crypto_raw_bars_sim", symbols, dates, tracked=tracked_symbols(context.instance, CRYPTO),
        is_stored=functools.partial(lake.has_batch, RAW_BARS_SIM), stats_keys=RAW_STATS,
    ).run(ingest)
    bars_manifest.rebuild_coverage()
    context.add_asset_metadata(SIMULATED)
    yield from step.finish()


@dg.asset(
    partitions_def=crypto_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="crypto",
    kinds={"parquet", "pandas"},
    deps=[crypto_raw_bars_sim],
    metadata={"lake_table": str(CURATED_BARS), "calendar": "24/7 UTC"},
    check_specs=[complete_check_spec("crypto_curated_bars", crypto_date_partitions), *CRYPTO_CURATED_DQ_CHECKS],
)
def crypto_curated_bars(context: dg.AssetExecutionContext, lake: ParquetLake, data_quality: DataQuality) -> StepEvents:
    """Curated gap-aware 1-minute bars of crypto pairs: 1,440 minutes per UTC day.

    The stock gap engine on a 24/7 timeline (no L2 here, so a missing minute is an ``unknown``
    gap), written to the same ``lake/curated_bars`` table as stocks; the ``curated_bars`` DQ rules
    run as the ``dq_*`` checks. Partitioned by UTC calendar day.
    """
    symbols, dates = run_symbols(context, CRYPTO), partition_dates(context)
    quality = data_quality.recorder(lake, "crypto_curated_bars", stored_as="curated_bars", asset_key="crypto_curated_bars")  # read as curated_bars DQ

    def curate(symbol: str, day: dt.date) -> Outcome:
        raw = lake.read_latest_batch(RAW_BARS_SIM, symbol, day)
        if raw is None:
            return no_input("no raw bars")
        timeline = elapsed_session_minutes(CRYPTO, day)  # the UTC day under way: the minutes so far
        if not len(timeline):
            return no_input("the day has not begun")
        curated, stats, _ = curate_bars(raw, timeline, symbol=symbol, day=day, source=SIM_SOURCE)
        lake.write_partition(CURATED_BARS, symbol, day, curated)
        quality.add(symbol, day, curated, stats=stats.as_dict())
        return written(len(curated))

    step = SymbolDayStep(
        context, "crypto_curated_bars", symbols, dates, tracked=tracked_symbols(context.instance, CRYPTO),
        is_stored=lambda s, d: lake.has_partition(CURATED_BARS, s, d), lake=lake, quality=[quality], heals=[CURATED_BARS, *dq_tables("curated_bars")],
    ).run(curate)
    yield from step.finish(quality.finish(check_groups(CRYPTO_CURATED_DQ_CHECKS)))
