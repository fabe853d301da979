"""A Dagster job for one live-bars session, launchable from the UI (``mdp record-bars`` is the CLI)."""

import asyncio

import dagster as dg

from platform_assets.ingestion.depth_capture import failed_end
from platform_assets.ingestion.live_bars import record_bars
from resources.ib_source import IBSource
from resources.lake import ParquetLake
from resources.bars_manifest import BarsManifest
from resources.validation import normalize_symbol


class LiveBarsConfig(dg.Config):
    symbols: list[str]
    duration_s: float = 23400.0  # a regular session
    flush_s: float = 60.0
    what_to_show: str = "TRADES"
    use_rth: bool = True
    backfill_open: bool = True
    reconnects: int = 5  # drops in a row before the session gives up (the op then fails)


@dg.op(description="Record live 1-minute bars (5-second reqRealTimeBars aggregated) into lake/raw_bars/source=ib_live.", out=dg.Out(dg.Nothing))
def record_bars_op(context: dg.OpExecutionContext, config: LiveBarsConfig, ib: IBSource, lake: ParquetLake, bars_manifest: BarsManifest) -> None:
    symbols = [normalize_symbol(s) for s in config.symbols]
    stats = asyncio.run(record_bars(ib, lake, symbols, what_to_show=config.what_to_show, use_rth=config.use_rth, flush_s=config.flush_s,
                                    duration_s=config.duration_s, backfill_open=config.backfill_open, bars_manifest=bars_manifest,
                                    reconnects=config.reconnects))
    for gap in stats.gaps:
        context.log.error(f"live bars: minutes left missing: {gap}")
    context.log.info(f"recorded {stats.minutes} minutes live + {stats.backfilled} backfilled in {stats.batches} batches, "
                     f"{stats.reconnects} reconnects ({stats.end_reason})")
    bars_manifest.rebuild_coverage()
    if failed_end(stats.end_reason):  # the connection was lost for good: what was recorded is kept, the session failed
        raise dg.Failure(description=f"record_bars {', '.join(symbols)}: {stats.end_reason}")
    if stats.refused:
        raise dg.Failure(description="record_bars: IB refused real-time bars of " + "; ".join(f"{s} ({why})" for s, why in stats.refused.items()))


@dg.job(description="Live 1-minute bars from TWS / IB Gateway into the raw layer (source ib_live); curated_bars prefers ib, then ib_live.")
def record_bars_job():
    record_bars_op()
