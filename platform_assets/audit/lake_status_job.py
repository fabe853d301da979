"""``lake_status_audit_job``: fail the completeness check of dates whose data left the lake.

Dagster keeps showing a date materialized and complete after its files are removed by hand or
lost to the disk; this job looks at every date judged complete (``platform_assets.lake_status``)
and fails it again where a tracked symbol's data is no longer stored, naming the symbols. The op
fails when it found any, so the run is red too. Scheduled daily (06:00 UTC; stopped by default like every
schedule here: switch it on in the UI, Automation tab).
"""

import dagster as dg

from platform_assets.lake_status import audit_stored_partitions, report_lost_dates
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake
from resources.lost_dates import unreadable


class LakeStatusAuditConfig(dg.Config):
    decode: bool = False
    """Also decode every stored file whole (finds pages rotted behind a readable footer; reads all the data)."""


@dg.op(description="Fail the symbols_complete check of every date judged complete whose data is no longer stored", out=dg.Out(dg.Nothing))
def audit_lake_status(context: dg.OpExecutionContext, config: LakeStatusAuditConfig, lake: ParquetLake, l2_store: L2SnapshotStore) -> None:
    failed = audit_stored_partitions(context.instance, lake, log=context.log.warning, decode=config.decode, l2_store=l2_store)
    report_lost_dates(context.instance, lake, context.log.warning, mine_only=False)  # files quarantined by anyone and not re-computed yet (their dates are in ``failed`` too)
    bad = unreadable(lake.root)
    if bad:
        raise dg.Failure(description=f"{len(bad)} lost-dates record(s) do not read: the dates they named are unknown; audit with decode: true, re-run what it names, then remove them",
                         metadata={"records": "\n".join(str(p) for p in bad[:50])})
    dates = sum(len(days) for days in failed.values())
    context.log.info(f"lake status audit: {dates} date(s) judged complete no longer fully stored" + (f" ({', '.join(f'{a}: {len(d)}' for a, d in failed.items())})" if failed else ""))
    if failed:
        raise dg.Failure(
            description=f"{dates} date(s) judged complete no longer have every tracked symbol stored; their symbols_complete check now fails",
            metadata={asset: dg.MetadataValue.json(days) for asset, days in failed.items()},
        )


@dg.job(description="Audit: every date judged complete still has its data stored (fails the completeness check where not)")
def lake_status_audit_job():
    audit_lake_status()


lake_status_audit_schedule = dg.ScheduleDefinition(
    name="lake_status_audit_schedule",
    job=lake_status_audit_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily 06:00 UTC: fail the completeness check of dates whose data left the lake since they were judged.",
)
