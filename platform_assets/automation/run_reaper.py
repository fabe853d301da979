"""Failing runs whose process is gone, so a killed run never stays STARTED and the queue moves.

Dagster's run monitoring (``run_monitoring`` in dagster.yaml) fails runs stuck STARTING or
CANCELING, but with the default run launcher it cannot tell whether a STARTED run's process is
alive, and runs executed in a process of ours (``mdp backfill``, API job workers) have no launcher
at all. A SIGKILLed run therefore stayed STARTED forever; two of them filled
``max_concurrent_runs`` and nothing queued started again. The reaper decides from facts only:

* the run's process: the ``platform/pid`` tag our in-process runs carry (with ``platform/host``
  and the process start time ``platform/pid_start``, against pid reuse), else the pid Dagster
  records on the run's RUN_START event (runs launched by the daemon/UI);
* a run is dead when that process no longer exists on this host, is a zombie, or started after
  the run did (the pid was reused). Runs of another host, or of a shared (PostgreSQL) instance
  without a host tag, are left to their own host.

Dead runs are marked FAILED with ``instance.report_run_failed`` and a message naming the pid.
Called by the ``dead_run_reaper`` sensor (every 30 s in the daemon), at the start of every
``mdp backfill`` / API backfill, and by the job status API when a job's worker is gone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import dagster as dg

PID_TAG = "platform/pid"
PID_START_TAG = "platform/pid_start"
HOST_TAG = "platform/host"
REAPED_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def process_start_time(pid: int) -> float | None:
    """Epoch seconds at which ``pid`` started; None when there is no such live process (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return _boot_time() + int(fields[19]) / _CLOCK_TICKS


def own_process_tags() -> dict[str, str]:
    """Tags naming the current process as a run's executor (see ``reap_dead_runs``)."""
    started = process_start_time(os.getpid())
    return {PID_TAG: str(os.getpid()), PID_START_TAG: f"{started:.2f}" if started else "", HOST_TAG: socket.gethostname()}


def _is_local_instance(instance: dg.DagsterInstance) -> bool:
    """SQLite storage lives on this host, so every run of it ran on this host."""
    return "sqlite" in type(instance.run_storage).__name__.lower()


def _owner(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, float] | None:
    """(pid, latest start time it may have) of the run's process on this host; None if unknown."""
    tags = run.tags
    if PID_TAG in tags:
        if tags.get(HOST_TAG) != socket.gethostname():
            return None
        started = float(tags[PID_START_TAG]) if tags.get(PID_START_TAG) else time.time()
        return int(tags[PID_TAG]), started + 1.0
    if run.status != dg.DagsterRunStatus.STARTED or not _is_local_instance(instance):
        return None
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records or records[0].event_log_entry.dagster_event is None:
        return None
    event = records[0].event_log_entry
    pid = event.dagster_event.pid
    return (pid, event.timestamp + 1.0) if pid else None


def run_process_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The pid of the run's process when it is provably gone, else None."""
    owner = _owner(instance, run)
    if owner is None:
        return None
    pid, latest_start = owner
    if pid == os.getpid():
        return None
    started = process_start_time(pid)
    return pid if started is None or started > latest_start else None


def reap_dead_runs(
    instance: dg.DagsterInstance, *, tags: dict[str, str] | None = None, log: Callable[[str], None] | None = None
) -> list[str]:
    """Mark FAILED every in-flight run (optionally only those with ``tags``) whose process is gone."""
    reaped = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=REAPED_STATUSES, tags=tags or {})):
        run = record.dagster_run
        pid = run_process_gone(instance, run)
        if pid is None:
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status not in REAPED_STATUSES:
            continue
        message = (
            f"Run {run.run_id} was {current.status.value} but its process (pid {pid} on {socket.gethostname()}) is gone "
            "(killed or crashed): marked failed by the platform's dead-run reaper. Re-run its partitions (idempotent)."
        )
        instance.report_run_failed(current, message)
        reaped.append(run.run_id)
        if log:
            log(message)
    return reaped


@dg.sensor(
    name="dead_run_reaper",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: mark FAILED the runs whose process died (SIGKILL, OOM) so the run queue moves.",
)
def dead_run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance, log=context.log.warning)
    return dg.SkipReason(f"failed {len(reaped)} dead run(s): {', '.join(reaped)}" if reaped else "no dead runs")
