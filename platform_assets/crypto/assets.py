"""Crypto pairs on a 24/7 calendar: raw 1-minute bars and curated bars, partitioned by UTC day."""

import datetime as dt

import dagster as dg
import pandas as pd

from platform_assets.calendars import CRYPTO, session_minutes
from platform_assets.curation.gap_engine import curate_bars
from platform_assets.ingestion.raw_batch_store import store_raw_batch
from platform_assets.ingestion.raw_batches import build_raw_batch
from platform_assets.partitions import crypto_date_partitions, partition_dates, ranged_backfill_policy, follow_upstream
from platform_assets.progress import Progress
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, dq_tables
from platform_assets.symbol_days import Outcome, SymbolDayStep, complete_check_spec, no_input, written
from platform_assets.universe import run_symbols, tracked_symbols
from resources.lake import CURATED_BARS, ParquetLake, raw_bars_table
from resources.bars_manifest import BarsManifest
from resources.offline_source import SIM_SOURCE, OfflineSource

RAW_BARS_SIM = raw_bars_table(SIM_SOURCE)
CRYPTO_CURATED_DQ_CHECKS = dq_check_specs("crypto_curated_bars", "crypto_curated_bars")  # the curated rules sized for 1,440-minute days


@dg.asset(
    partitions_def=crypto_date_partitions,
    backfill_policy=ranged_backfill_policy,
    group_name="crypto",
    kinds={"parquet"},
    metadata={"lake_table": str(RAW_BARS_SIM), "source": SIM_SOURCE, "calendar": "24/7 UTC"},
)
def crypto_raw_bars_sim(
    context: dg.AssetExecutionContext, offline_source: OfflineSource, lake: ParquetLake, bars_manifest: BarsManifest
) -> dg.MaterializeResult:
    """Raw 1-minute bars of the tracked crypto pairs from the offline simulator, 1,440 minutes a day.

    Same table and contract as the stock raw bars (``lake/raw_bars/source=sim/...``, append-only
    content-hashed batches), partitioned by UTC calendar day (every day: crypto trades 24/7).
    """
    symbols, dates = run_symbols(context, CRYPTO), partition_dates(context)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    rows = written = duplicates = 0
    progress = Progress(context, "crypto_raw_bars_sim", len(symbols) * len(dates))
    for day in dates:
        for symbol in symbols:
            bars = offline_source.day(symbol, day, CRYPTO).bars
            batch_id, batch, repeated = build_raw_batch(bars, source=SIM_SOURCE, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
            path, new = store_raw_batch(lake, RAW_BARS_SIM, symbol, day, batch, batch_id, repeated, ingestion_ts)
            duplicates += len(repeated)
            bars_manifest.record(path, batch, vendor=SIM_SOURCE, symbol=symbol, bar_size="1m", new=new)
            rows, written = rows + len(batch), written + new
            progress.step()
    bars_manifest.rebuild_coverage()
    return dg.MaterializeResult(metadata={"source": SIM_SOURCE, "symbols": len(symbols), "dates": len(dates), "rows": rows, "batches_written": written,
                                            "duplicate_key_rows_quarantined": duplicates})


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
def crypto_curated_bars(context: dg.AssetExecutionContext, lake: ParquetLake, data_quality: DataQuality) -> dg.MaterializeResult:
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
        curated, stats, _ = curate_bars(raw, session_minutes(CRYPTO, day), symbol=symbol, day=day, source=SIM_SOURCE)
        lake.write_partition(CURATED_BARS, symbol, day, curated)
        quality.add(symbol, day, curated, stats=stats.as_dict())
        return written(len(curated))

    step = SymbolDayStep(
        context, "crypto_curated_bars", symbols, dates, tracked=tracked_symbols(context.instance, CRYPTO),
        is_stored=lambda s, d: lake.has_partition(CURATED_BARS, s, d), lake=lake, quality=[quality], heals=[CURATED_BARS, *dq_tables("curated_bars")],
    ).run(curate)
    yield from step.finish(quality.finish(check_groups(CRYPTO_CURATED_DQ_CHECKS)))
