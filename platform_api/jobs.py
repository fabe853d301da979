"""Job control for TF_1 and the HTTP service: ingestion and backfills as Dagster runs.

``trigger_*`` validate the request, write a job record and start the job (in a detached worker
process by default, or in this process with ``wait=True``), returning a ``JobHandle`` at once.
Every run of a job is a real Dagster run on the instance, tagged ``platform/job_id``, so the UI
and the API show the same runs. ``get_*_job_status`` answers from the instance's run records:
PENDING (no run started yet) -> RUNNING -> SUCCEEDED or FAILED.

Runs are ranged (a contiguous date range of every requested symbol per run, see README
"Partitioning"); ``max_parallel_jobs`` / ``max_parallel_requests`` set how many run at once.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field, replace
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from platform_api import job_store
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.errors import InvalidDateRangeError, InvalidOptionError, UnknownDatasetError
from platform_api.job_store import JOB_ID_TAG, JOB_KIND_TAG, JobRecord
from platform_assets.automation.jobs import OFFLINE_PIPELINE_JOB, STOCK_PIPELINE_JOB
from platform_assets.calendars import CRYPTO, STOCKS, is_session, sessions_in_range
from platform_assets.run_options import KEEP_EXISTING_TAG
from platform_assets.universe import asset_types, market_of, require_tracked, tracked_symbols
from resources.settings import PlatformSettings, get_settings, settings_env

States = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
SOURCE_INGESTION_ASSETS = {
    "sim": ["raw_bars_sim", "l2_snapshots_sim"],
    "databento": ["raw_bars_databento", "l2_snapshots_databento"],
    "ib": ["raw_bars_ib"],
}
DERIVED_GROUPS = ("curation", "alignment", "features")
from platform_assets.run_options import INGESTION_OPTIONS_TAG as OPTIONS_TAG  # noqa: E402
_CHILDREN: dict[str, subprocess.Popen] = {}


class IngestionOptions(BaseModel):
    """Options of a historical ingestion (the IB names; other sources ignore what they lack)."""

    model_config = ConfigDict(extra="forbid")
    bar_size: Literal["1 min", "5 mins", "15 mins", "30 mins", "1 hour", "1 day"] = "1 min"
    what_to_show: Literal["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"] = "TRADES"
    use_rth: bool = True
    max_parallel_requests: int = Field(1, ge=1, le=8)


class BackfillOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overwrite_curated: bool = True
    overwrite_features: bool = True
    max_parallel_jobs: int = Field(1, ge=1, le=8)


@dataclass(frozen=True)
class JobHandle:
    job_id: str
    kind: str
    submitted_at: str


@dataclass
class JobStatus:
    job_id: str
    kind: str
    state: States
    start_ts: str | None
    end_ts: str | None
    source: str | None
    dataset: str | None
    params: dict
    summary: dict = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)


def _options(model: type[BaseModel], options: dict | None) -> BaseModel:
    try:
        return model(**(options or {}))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors())
        raise InvalidOptionError(f"invalid options: {problems}") from None


def _instance(instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    from platform_api.instance import get_instance

    return get_instance()


def _defs(settings: PlatformSettings) -> dg.Definitions:
    from definitions import build_definitions

    return build_definitions(settings)


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()


def _asset_names(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def _downstream(defs: dg.Definitions, names: list[str]) -> list[str]:
    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.assets(*names).downstream().resolve(graph)
    derived = dg.AssetSelection.groups(*DERIVED_GROUPS).resolve(graph)
    return sorted({k.to_user_string() for k in keys & derived} | set(names))


def _submit(record: JobRecord, instance: dg.DagsterInstance, settings: PlatformSettings, wait: bool, defs) -> JobHandle:
    folder = job_store.jobs_dir(instance)
    record.settings_env = settings_env(settings)
    record.instance_ref = dg.serialize_value(instance.get_ref())
    record.created_at = _now()
    job_store.save(folder, record)
    if wait:
        execute_job(instance, record.job_id, defs=defs)
    else:
        with open(folder / f"{record.job_id}.log", "ab") as log:  # the child keeps its own copy of the handle
            child = subprocess.Popen(
                [sys.executable, "-m", "platform_api.job_worker", str(folder), record.job_id],
                env={**os.environ, **record.settings_env},
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        _CHILDREN[record.job_id] = child
        record.worker_pid = child.pid
        _update(folder, record.job_id, worker_pid=child.pid)
    return JobHandle(record.job_id, record.kind, record.created_at)


def _update(folder, job_id: str, **changes) -> JobRecord:
    record = job_store.load(folder, job_id)
    for key, value in changes.items():
        setattr(record, key, value)
    job_store.save(folder, record)
    return record


def execute_job(instance: dg.DagsterInstance, job_id: str, defs: dg.Definitions | None = None) -> JobRecord:
    """Run a recorded job's runs to the end (called by the worker process or with ``wait=True``)."""
    folder = job_store.jobs_dir(instance)
    record = _update(folder, job_id, started_at=_now())
    try:
        plans = _job_plans(instance, record)
        _update(folder, job_id, planned_runs=sum(len(plan.chunks) for plan, _ in plans))
        runs = []
        for plan, selection in plans:
            report = run_backfill(
                instance, plan, defs=defs, add_missing_symbols=record.add_missing_symbols, workers=record.workers,
                launched_by=f"api-{record.kind}", asset_selection=selection, extra_tags=record.tags,
            )
            runs += report.runs
        counts: dict[str, int] = {}
        for run in runs:
            for name, count in run.materializations.items():
                counts[name] = counts.get(name, 0) + count
        errors = "; ".join(r.error for r in runs if not r.success) or None
        return _update(folder, job_id, finished_at=_now(), materializations=counts, error=errors)
    except Exception as error:  # recorded for the status call, then re-raised for the worker's exit code
        _update(folder, job_id, finished_at=_now(), error=f"{type(error).__name__}: {error}")
        raise


def _job_plans(instance: dg.DagsterInstance, record: JobRecord) -> list[tuple]:
    """(plan, asset selection) per market the job covers: stocks use the record's selection and
    job; crypto runs its own job (UTC days) over the same date range."""
    markets = {"stocks": [STOCKS], "crypto": [CRYPTO], "all": [STOCKS, CRYPTO]}[record.market]
    types = asset_types(instance)
    plans = []
    for market in markets:
        symbols = [s for s in record.symbols if market_of(s, types) == market] if len(markets) > 1 or market == CRYPTO else record.symbols
        if not symbols:
            continue
        if not sessions_in_range(market, dt.date.fromisoformat(record.start), dt.date.fromisoformat(record.end)):
            continue  # e.g. a 1-day stock refresh on a Sunday: only crypto has a session
        plan = plan_backfill(symbols, record.start, record.end, min_chunks=record.workers, market=market)
        if market == STOCKS:
            plans.append((replace(plan, job_name=record.job_name), record.asset_selection))
        else:
            plans.append((plan, None))
    return plans


def _new_record(kind: str, **fields) -> JobRecord:
    return JobRecord(job_id=f"{kind}-{uuid.uuid4().hex[:12]}", kind=kind, **fields)


def _check_symbols(instance, symbols, add_missing_symbols: bool) -> list[str]:
    from resources.validation import normalize_symbols

    symbols = normalize_symbols(symbols)
    if not add_missing_symbols:
        require_tracked(instance, symbols)
    return symbols


# ------------------------------------------------------------------------------ triggers
def trigger_historical_ingestion(
    source: str, symbols, start, end, options: dict | None = None, *,
    add_missing_symbols: bool = False, wait: bool = False,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> JobHandle:
    """Ingest ``source`` (sim, databento, ib) raw data for symbols x trading days [start, end]."""
    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    if source not in SOURCE_INGESTION_ASSETS:
        raise InvalidOptionError(f"unknown source {source!r}; known: {', '.join(SOURCE_INGESTION_ASSETS)}")
    assets = [a for a in SOURCE_INGESTION_ASSETS[source] if a in _asset_names(defs)]
    if not assets:
        raise InvalidOptionError(f"source {source!r} has no ingestion assets in this deployment")
    parsed = _options(IngestionOptions, options)
    plan = plan_backfill(symbols, start, end)  # validates symbols and dates up front
    _check_symbols(instance, plan.symbols, add_missing_symbols)
    record = _new_record(
        "ingestion", params={"source": source, "symbols": plan.symbols, "start": str(plan.dates[0]), "end": str(plan.dates[-1]), "options": parsed.model_dump()},
        symbols=plan.symbols, start=str(plan.dates[0]), end=str(plan.dates[-1]),
        job_name=OFFLINE_PIPELINE_JOB if source == "sim" else STOCK_PIPELINE_JOB,
        asset_selection=assets, tags={OPTIONS_TAG: parsed.model_dump_json()}, workers=parsed.max_parallel_requests,
        add_missing_symbols=add_missing_symbols, source=source,
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "ingestion"})
    return _submit(record, instance, settings, wait, defs)


def trigger_daily_ingestion(
    as_of_date=None, *, sources: list[str] | None = None, wait: bool = False,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> JobHandle:
    """The day's ingestion plus everything downstream, for every tracked stock symbol.

    ``as_of_date`` defaults to the latest XNYS session up to today; it must be a session.
    ``sources`` defaults to the ``INGESTION_SOURCES`` setting.
    """
    from resources.validation import parse_date

    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    if as_of_date is None:
        today = dt.date.today()
        day = sessions_in_range(STOCKS, today - dt.timedelta(days=10), today)[-1]
    else:
        day = parse_date(as_of_date, name="as_of_date")
        if not is_session(STOCKS, day):
            raise InvalidDateRangeError(f"{day} is not an XNYS trading day")
    sources = sources or settings.ingestion_sources
    names = _asset_names(defs)
    raw = [a for s in sources for a in SOURCE_INGESTION_ASSETS.get(s, []) if a in names]
    if not raw:
        raise InvalidOptionError(f"none of the sources {sources} has ingestion assets in this deployment")
    symbols = tracked_symbols(instance, STOCKS)
    if not symbols:
        raise InvalidOptionError("the symbol universe is empty: add symbols first")
    job_name = OFFLINE_PIPELINE_JOB if set(sources) == {"sim"} else STOCK_PIPELINE_JOB
    record = _new_record(
        "ingestion", params={"as_of_date": day.isoformat(), "sources": list(sources), "symbols": symbols},
        symbols=symbols, start=day.isoformat(), end=day.isoformat(), job_name=job_name,
        asset_selection=_downstream(defs, raw), tags={}, source=",".join(sources),
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "daily_ingestion"})
    return _submit(record, instance, settings, wait, defs)


def trigger_backfill(
    dataset_name: str, symbols, start, end, options: dict | None = None, *,
    add_missing_symbols: bool = False, wait: bool = False,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> JobHandle:
    """Recompute ``dataset_name`` and everything downstream of it from stored raw data.

    ``dataset_name``: curated_bars (-> aligned, features, labels), aligned_bars, bar_features,
    l2_features or labels. ``overwrite_curated=False`` / ``overwrite_features=False`` leave stored
    (symbol, date) partitions of that layer untouched and compute only the missing ones.
    """
    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    graph = defs.resolve_asset_graph()
    derived = {k.to_user_string() for k in dg.AssetSelection.groups(*DERIVED_GROUPS).resolve(graph)}
    if dataset_name not in derived:
        raise UnknownDatasetError(f"cannot backfill dataset {dataset_name!r}; derived datasets: {', '.join(sorted(derived))}")
    parsed = _options(BackfillOptions, options)
    plan = plan_backfill(symbols, start, end)
    _check_symbols(instance, plan.symbols, add_missing_symbols)
    keep = [layer for layer, overwrite in (("curated", parsed.overwrite_curated), ("features", parsed.overwrite_features)) if not overwrite]
    record = _new_record(
        "backfill", params={"dataset_name": dataset_name, "symbols": plan.symbols, "start": str(plan.dates[0]), "end": str(plan.dates[-1]), "options": parsed.model_dump()},
        symbols=plan.symbols, start=str(plan.dates[0]), end=str(plan.dates[-1]), job_name=OFFLINE_PIPELINE_JOB,
        asset_selection=_downstream(defs, [dataset_name]), tags={KEEP_EXISTING_TAG: ",".join(keep)} if keep else {},
        workers=parsed.max_parallel_jobs, add_missing_symbols=add_missing_symbols, dataset=dataset_name,
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "backfill"})
    return _submit(record, instance, settings, wait, defs)


REFRESH_ASSET_TYPES = {"stocks": "stocks", "crypto": "crypto", "all": "all"}
REFRESH_INTERVALS = ("1d", "1h")


def refresh_window(days_back: int, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """[start, end] of a refresh: the last ``days_back`` calendar days up to today (UTC)."""
    end = today or pd.Timestamp.now(tz="UTC").date()
    return end - dt.timedelta(days=days_back - 1), end


def trigger_refresh(
    days_back: int = 30, interval: str = "1d", asset_type: str = "all", *, wait: bool = False, today: dt.date | None = None,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> JobHandle:
    """Re-ingest the last ``days_back`` days of every tracked symbol of ``asset_type`` through the
    whole graph (stocks: XNYS sessions, crypto: every UTC day).

    ``interval`` (1d or 1h) is the bar interval the caller needs: the platform ingests 1-minute
    bars and serves 1h/1d by resampling on read, so both refresh the same partitions (echoed in
    the job's params).
    """
    if not isinstance(days_back, int) or isinstance(days_back, bool) or not 1 <= days_back <= 365:
        raise InvalidOptionError(f"days_back must be an integer between 1 and 365, got {days_back!r}")
    if interval not in REFRESH_INTERVALS:
        raise InvalidOptionError(f"interval must be one of {', '.join(REFRESH_INTERVALS)}, got {interval!r}")
    if asset_type not in REFRESH_ASSET_TYPES:
        raise InvalidOptionError(f"asset_type must be one of {', '.join(REFRESH_ASSET_TYPES)}, got {asset_type!r}")
    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    start, end = refresh_window(days_back, today)
    markets = {"stocks": [STOCKS], "crypto": [CRYPTO], "all": [STOCKS, CRYPTO]}[asset_type]
    symbols = [s for market in markets for s in tracked_symbols(instance, market) if sessions_in_range(market, start, end)]
    if not symbols:
        raise InvalidOptionError(f"nothing to refresh: no tracked {asset_type} symbols with a session between {start} and {end}")
    sources = settings.ingestion_sources  # stocks from the configured sources (crypto: the offline pipeline)
    raw = [a for s in sources for a in SOURCE_INGESTION_ASSETS.get(s, []) if a in _asset_names(defs)]
    if not raw:
        raise InvalidOptionError(f"none of the sources {sources} has ingestion assets in this deployment")
    simulated = set(sources) == {"sim"}
    record = _new_record(
        "refresh", params={"days_back": days_back, "interval": interval, "asset_type": asset_type, "start": start.isoformat(), "end": end.isoformat(), "symbols": symbols},
        symbols=symbols, start=start.isoformat(), end=end.isoformat(), job_name=OFFLINE_PIPELINE_JOB if simulated else STOCK_PIPELINE_JOB,
        asset_selection=None if simulated else _downstream(defs, raw), tags={}, market=REFRESH_ASSET_TYPES[asset_type], source=",".join(sources),
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "refresh"})
    return _submit(record, instance, settings, wait, defs)


# ------------------------------------------------------------------------------ status
def _worker_gone(record: JobRecord) -> bool:
    child = _CHILDREN.get(record.job_id)
    if child is not None:
        return child.poll() is not None
    if record.worker_pid is None:
        return False
    try:
        os.kill(record.worker_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def get_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> JobStatus:
    """State and summary of any job (ingestion or backfill)."""
    instance = _instance(instance)
    folder = job_store.jobs_dir(instance)
    record = job_store.load(folder, job_id)
    runs = instance.get_run_records(dg.RunsFilter(tags={JOB_ID_TAG: job_id}))
    statuses = [r.dagster_run.status for r in runs]
    failed = [s for s in statuses if s in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]
    succeeded = [s for s in statuses if s == dg.DagsterRunStatus.SUCCESS]
    errors = [record.error] if record.error else []
    if record.finished_at is None and _worker_gone(record):
        record = job_store.load(folder, job_id)
        if record.finished_at is None:
            errors.append("the job's worker process exited before finishing (see its .log next to the job record)")
    if record.finished_at is None and not errors:
        state: States = "RUNNING" if statuses else "PENDING"
    elif errors or failed or len(succeeded) < max(record.planned_runs, 1):
        state = "FAILED"
    else:
        state = "SUCCEEDED"
    summary = {
        "symbols": len(record.symbols),
        "runs_planned": record.planned_runs,
        "runs_started": len(statuses),
        "runs_succeeded": len(succeeded),
        "runs_failed": len(failed),
        "materializations": record.materializations,
        "errors": errors,
    }
    return JobStatus(
        job_id=record.job_id, kind=record.kind, state=state, start_ts=record.started_at, end_ts=record.finished_at,
        source=record.source, dataset=record.dataset, params=record.params, summary=summary,
        run_ids=[r.dagster_run.run_id for r in runs],
    )


def get_ingestion_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> JobStatus:
    return get_job_status(job_id, instance=instance)


def get_backfill_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> JobStatus:
    return get_job_status(job_id, instance=instance)
