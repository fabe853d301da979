"""A Dagster job for one live depth-capture session, launchable from the UI (``mdp record-depth`` is the CLI)."""

import asyncio

import dagster as dg

from platform_assets.ingestion.depth_capture import DEFAULT_STALE_S, failed_end, record_depth
from resources.ib_source import IBSource
from resources.l2_store import L2SnapshotStore
from resources.validation import normalize_symbol


class DepthCaptureConfig(dg.Config):
    symbol: str
    duration_s: float = 23400.0  # a regular session
    interval_s: float = 1.0
    levels: int = 10
    stale_s: float = DEFAULT_STALE_S  # no depth update for this long: a gap (no snapshots) until the next one; 0: off


@dg.op(description="Record live depth (reqMktDepth) into level2/{SYMBOL}/ snapshot, message and stats files.", out=dg.Out(dg.Nothing))
def record_depth_op(context: dg.OpExecutionContext, config: DepthCaptureConfig, ib: IBSource, l2_store: L2SnapshotStore) -> None:
    stats = asyncio.run(record_depth(ib, l2_store, normalize_symbol(config.symbol), levels=config.levels,
                                     interval_s=config.interval_s, duration_s=config.duration_s, stale_s=config.stale_s))
    context.log.info(f"recorded {stats.snapshots} snapshots, {stats.messages} messages ({stats.end_reason}): {', '.join(stats.files)}")
    for gap in stats.gaps:
        context.log.warning(f"depth data down {gap['start']} .. {gap['end']}: {gap['reason']} (no snapshots)")
    if failed_end(stats.end_reason):
        raise dg.Failure(description=f"record_depth {config.symbol}: {stats.end_reason}")


@dg.job(description="Live L2 depth capture from TWS / IB Gateway; the L2 snapshot-file sensor then derives L2 features.")
def record_depth_job():
    record_depth_op()
