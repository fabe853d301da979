"""Job records of the API (ingestion and backfill jobs), stored next to the Dagster instance.

A job is a set of Dagster runs tagged ``platform/job_id=<id>`` (filter the UI's Runs page by that
tag); its record (``$DAGSTER_HOME/platform_jobs/<id>.json``, written atomically) keeps what the
runs cannot: the request as given, the plan, who executes it, where it logs and when it finished.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from platform_api.errors import UnknownJobError
from resources.atomic import write_json_atomic

JOB_ID_TAG = "platform/job_id"
JOB_KIND_TAG = "platform/job_kind"
_JOB_ID = re.compile(r"^[a-z]+-[0-9a-f]{12}$")


@dataclass
class JobRecord:
    job_id: str
    kind: str  # "ingestion" | "backfill"
    params: dict
    symbols: list[str]
    start: str
    end: str
    job_name: str
    asset_selection: list[str] | None
    tags: dict[str, str]
    workers: int = 1
    add_missing_symbols: bool = False
    source: str | None = None
    dataset: str | None = None
    market: str = "stocks"  # stocks | crypto | all: which calendars' plans the job runs
    settings_env: dict[str, str] = field(default_factory=dict)
    instance_ref: str | None = None
    planned_runs: int = 0
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    worker_pid: int | None = None
    runner_pid: int | None = None  # wait=True: the caller's process runs the job (a sync HTTP refresh: the service)
    runner_start: float | None = None  # its start time (epoch s), against pid reuse
    runner_host: str | None = None  # the host running it: another host (an API replica) cannot see its pid
    error: str | None = None
    log_path: str | None = None  # the worker's stderr: {LOGS_PATH}/jobs/<job_id>.log
    materializations: dict[str, int] = field(default_factory=dict)


def jobs_dir(instance: dg.DagsterInstance) -> Path:
    return Path(instance.root_directory) / "platform_jobs"


def save(folder: Path, record: JobRecord) -> None:
    write_json_atomic(dataclasses.asdict(record), folder / f"{record.job_id}.json", fsync=False)


def load(folder: Path, job_id: object) -> JobRecord:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise UnknownJobError(f"invalid job id {job_id!r}: expected e.g. backfill-0123456789ab")
    path = folder / f"{job_id}.json"
    if not path.exists():
        raise UnknownJobError(f"no job {job_id} on this Dagster instance")
    stored = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(JobRecord)}
    return JobRecord(**{k: v for k, v in stored.items() if k in known})  # records of other versions load too
