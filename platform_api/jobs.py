"""Job control for TF_1 and the HTTP service: ingestion and backfills as Dagster runs.

The API contract (000, sections 2 and 5)::

    trigger_historical_ingestion(source, symbols, start, end, options) -> IngestionJobHandle
    trigger_daily_ingestion(as_of_date) -> IngestionJobHandle
    get_ingestion_job_status(job_id) -> IngestionJobStatus
    trigger_backfill(dataset_name, symbols, start, end, options) -> BackfillJobHandle
    get_backfill_job_status(job_id) -> BackfillJobStatus

``start``/``end`` are datetimes (or dates / ISO strings) of a half-open ``[start, end)`` range in
UTC (naive = UTC, a date = its midnight): the job covers every trading day that range touches, so
``start=2024-11-26, end=2024-11-28`` is the sessions of Nov 26 and 27. ``options`` is a
``HistoricalIngestionOptions`` / ``BackfillOptions`` object or a dict of the same fields.

``trigger_*`` validate the request, write a job record and start the job (in a detached worker
process by default, or in this process with ``wait=True``), returning a handle at once. Every run
of a job is a real Dagster run on the instance, tagged ``platform/job_id``, so the UI and the API
show the same runs. Statuses answer from the instance's run records: PENDING (no run started yet)
-> RUNNING -> SUCCEEDED or FAILED, with ``start_ts``/``end_ts`` as UTC datetimes. Worker logs go to
``{LOGS_PATH}/jobs/<job_id>.log``; workers get ``TMPDIR=TEMP_PATH`` when it is set.

Runs are ranged (a contiguous date range of every requested symbol per run, see README
"Partitioning"); ``max_parallel_jobs`` / ``max_parallel_requests`` set how many run at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from platform_api import job_store
from platform_api.backfill import materialized_partitions, plan_backfill, require_stock_symbols, run_backfill
from platform_api.errors import InvalidDateRangeError, InvalidOptionError, UnknownDatasetError, UnknownJobError
from platform_api.inputs import parse_time_range
from platform_api.job_slots import REFRESH_GROUP, hold_slot
from platform_api.job_store import JOB_ID_TAG, JOB_KIND_TAG, JobRecord
from platform_assets.automation.jobs import OFFLINE_PIPELINE_JOB
from platform_assets.ingestion.sources import DERIVED_GROUPS, SOURCE_INGESTION_ASSETS, downstream_selection, ingestion_assets, pipeline_job_of
from platform_assets.automation.run_reaper import process_start_time, reap_dead_runs
from platform_assets.calendars import CRYPTO, STOCKS, Market, is_session, session_under_way, sessions_in_range
from platform_assets.partitions import last_partition_date
from platform_assets.run_options import KEEP_EXISTING_TAG
from platform_assets.universe import asset_types, market_of, require_tracked, tracked_symbols
from resources import clock
from resources.settings import PlatformSettings, get_settings, settings_env
from resources.validation import parse_half_open_dates

States = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
from platform_assets.run_options import INGESTION_OPTIONS_TAG as OPTIONS_TAG  # noqa: E402
SOURCE_ALIASES = {"tws": "ib", "ibkr": "ib"}  # the contract's "tws" is Interactive Brokers
_CHILDREN: dict[str, subprocess.Popen] = {}


class HistoricalIngestionOptions(BaseModel):
    """Options of a historical ingestion (contract 2.1; the IB names: other sources refuse bar options
    other than the defaults, which is all they deliver).

    ``bar_size`` e.g. ``"1 min"``; ``what_to_show`` e.g. ``"TRADES"``; ``use_rth`` regular trading
    hours only; ``max_parallel_requests`` runs at once (1-8).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    bar_size: Literal["1 min", "5 mins", "15 mins", "30 mins", "1 hour", "1 day"] = "1 min"
    what_to_show: Literal["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"] = "TRADES"
    use_rth: bool = True
    max_parallel_requests: int = Field(1, ge=1, le=8)


IngestionOptions = HistoricalIngestionOptions  # the earlier name


class BackfillOptions(BaseModel):
    """Options of a backfill (contract 5.1): overwrite stored curated / feature partitions (else
    only missing ones are computed), and how many runs at once (1-8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    overwrite_curated: bool = True
    overwrite_features: bool = True
    max_parallel_jobs: int = Field(1, ge=1, le=8)

    def __init__(self, **options):
        """Invalid options raise the API's ``InvalidOptionError`` (naming them), like every option
        of the API, not pydantic's ``ValidationError``."""
        try:
            super().__init__(**options)
        except ValidationError as error:
            raise InvalidOptionError(f"invalid backfill options: {option_problems(error)}") from None


def option_problems(error: ValidationError) -> str:
    """Each rejected option and why, on one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors())


@dataclass(frozen=True)
class JobHandle:
    """A job as the HTTP service reports it (``submitted_at`` as ISO text)."""

    job_id: str
    kind: str
    submitted_at: str


@dataclass(frozen=True)
class IngestionJobHandle:
    """What ``trigger_historical_ingestion`` / ``trigger_daily_ingestion`` return: pass ``job_id``
    to ``get_ingestion_job_status``."""

    job_id: str
    kind: str
    submitted_at: dt.datetime


@dataclass(frozen=True)
class BackfillJobHandle:
    """What ``trigger_backfill`` returns: pass ``job_id`` to ``get_backfill_job_status``."""

    job_id: str
    kind: str
    submitted_at: dt.datetime


@dataclass
class IngestionJobStatus:
    """Contract 2.3: ``state`` PENDING | RUNNING | SUCCEEDED | FAILED; ``start_ts`` when the job
    started (while PENDING: when it was submitted), ``end_ts`` when it finished or None (UTC);
    ``params`` echoes the request; ``summary`` counts runs, materializations and errors."""

    job_id: str
    state: States
    start_ts: dt.datetime
    end_ts: dt.datetime | None
    source: str
    params: dict
    summary: dict
    kind: str = "ingestion"
    run_ids: list[str] = field(default_factory=list)


@dataclass
class BackfillJobStatus:
    """Contract 5.2: the fields of ``IngestionJobStatus``; ``source`` names the raw sources the
    recomputation reads; ``dataset_name`` is the dataset backfilled."""

    job_id: str
    state: States
    start_ts: dt.datetime
    end_ts: dt.datetime | None
    source: str
    params: dict
    summary: dict
    kind: str = "backfill"
    dataset_name: str | None = None
    run_ids: list[str] = field(default_factory=list)


@dataclass
class JobStatus:
    """Any job's status as the HTTP service serves it (timestamps as ISO text)."""

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


def _options(model: type[BaseModel], options: BaseModel | dict | None) -> BaseModel:
    """The options as ``model``: an instance of it, a dict of its fields, or None (defaults)."""
    if isinstance(options, model):
        return options
    if options is not None and not isinstance(options, dict):
        raise InvalidOptionError(f"options must be a {model.__name__} or a dict, got {type(options).__name__}")
    try:
        return model(**(options or {}))
    except ValidationError as error:
        raise InvalidOptionError(f"invalid options: {option_problems(error)}") from None


def trading_days_of(start: object, end: object) -> tuple[dt.date, dt.date, str, str]:
    """First and last calendar day touched by the half-open ``[start, end)`` (UTC), and the two
    bounds as ISO text (for the params echo)."""
    start_ts, end_ts = parse_time_range(start, end)
    last = (end_ts - pd.Timedelta(1, "ns")).date()
    return start_ts.date(), last, start_ts.isoformat(), end_ts.isoformat()


BAR_OPTION_SOURCES = ("ib",)
"""Sources whose ingestion honours ``bar_size`` / ``what_to_show`` / ``use_rth``; the others deliver
1-minute TRADES bars of regular trading hours (the options' defaults) only."""


def _require_supported_bar_options(source: str, options: HistoricalIngestionOptions) -> None:
    """Refuse bar options a source cannot honour: a job that succeeded with other bars than asked
    for would report a success that is not one."""
    if source in BAR_OPTION_SOURCES:
        return
    defaults = HistoricalIngestionOptions()
    asked = {name: getattr(options, name) for name in ("bar_size", "what_to_show", "use_rth") if getattr(options, name) != getattr(defaults, name)}
    if asked:
        wanted = ", ".join(f"{name}={value!r}" for name, value in asked.items())
        raise InvalidOptionError(
            f"source {source!r} delivers 1-minute TRADES bars of regular trading hours only (bar_size='1 min', what_to_show='TRADES', "
            f"use_rth=True); {wanted} needs source 'ib' (or 'tws'), or resample the curated bars (get_curated_bars frequency)"
        )


def _source(source: object) -> str:
    name = source.strip().lower() if isinstance(source, str) else source
    name = SOURCE_ALIASES.get(name, name)
    if name not in SOURCE_INGESTION_ASSETS:
        raise InvalidOptionError(f"unknown source {source!r}; known: {', '.join([*SOURCE_INGESTION_ASSETS, *SOURCE_ALIASES])}")
    return name


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


def _downstream(defs: dg.Definitions, names: list[str]) -> list[str]:
    return downstream_selection(defs.resolve_asset_graph(), names)


def _backfill_selection(defs: dg.Definitions, dataset_name: str) -> list[str]:
    """What a backfill of ``dataset_name`` recomputes: it and everything downstream; a backfill of
    ``curated_bars`` (the contract's raw -> curated -> features) recomputes every derived layer,
    L2 features included (they read raw L2 snapshots, not curated bars)."""
    if dataset_name == "curated_bars":
        graph = defs.resolve_asset_graph()
        derived = dg.AssetSelection.groups(*DERIVED_GROUPS).resolve(graph)
        stock = {k.to_user_string() for k in derived if "crypto" not in k.to_user_string()}
        return sorted(stock)
    return _downstream(defs, [dataset_name])


def _worker_env(settings: PlatformSettings, record: JobRecord) -> dict[str, str]:
    env = {**os.environ, **record.settings_env}
    if settings.temp_path:  # TEMP_PATH: the worker's temporary files
        settings.temp_path.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(settings.temp_path)
    return env


def reap_finished_workers() -> int:
    """Collect the exit status of this process's job workers that ended (a long-lived caller, e.g.
    the HTTP service, would otherwise keep them as zombie processes); returns how many. Their jobs'
    state comes from the runs and records, not from these handles."""
    reaped = 0
    for job_id, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[job_id]
            reaped += 1
    return reaped


def _submit(record: JobRecord, instance: dg.DagsterInstance, settings: PlatformSettings, wait: bool, defs, handle_type=JobHandle):
    reap_finished_workers()
    folder = job_store.jobs_dir(instance)
    record.settings_env = settings_env(settings)
    record.instance_ref = dg.serialize_value(instance.get_ref())
    record.created_at = _now()
    record.log_path = str(settings.logs_path / "jobs" / f"{record.job_id}.log")
    job_store.save(folder, record)
    if wait:
        _update(folder, record.job_id, runner_pid=os.getpid(), runner_start=process_start_time(os.getpid()), runner_host=socket.gethostname())
        slot = hold_slot(folder, REFRESH_GROUP, settings.api_max_concurrent_refreshes) if record.kind == REFRESH_GROUP else contextlib.nullcontext()
        with slot:  # a refresh beyond API_MAX_CONCURRENT_REFRESHES waits for a slot (the worker does the same)
            execute_job(instance, record.job_id, defs=defs)
    else:
        log_path = Path(record.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:  # the child keeps its own copy of the handle
            child = subprocess.Popen(
                [sys.executable, "-m", "platform_api.job_worker", str(folder), record.job_id],
                env=_worker_env(settings, record),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        _CHILDREN[record.job_id] = child
        record.worker_pid = child.pid
        _update(folder, record.job_id, worker_pid=child.pid)
    submitted = record.created_at if handle_type is JobHandle else pd.Timestamp(record.created_at).to_pydatetime()
    return handle_type(record.job_id, record.kind, submitted)


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
        _update(folder, job_id, planned_runs=sum(len(plan.runs) for plan, _ in plans))
        runs = []
        for plan, selection in plans:
            report = run_backfill(
                instance, plan, defs=defs, add_missing_symbols=record.add_missing_symbols, workers=record.workers,
                launched_by=f"api-{record.kind}", asset_selection=selection, extra_tags=record.tags, worker_env=record.settings_env,
            )
            runs += report.runs
        errors = "; ".join([r.error for r in runs if not r.success] + [
            f"{asset}: {line}" for r in runs for asset, line in sorted(r.failed_symbol_days.items())  # landed partly: not a success
        ]) or None
        return _update(folder, job_id, finished_at=_now(), materializations=materialized_partitions(runs), error=errors)
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
        start, end = dt.date.fromisoformat(record.start), dt.date.fromisoformat(record.end)
        if record.kind == "refresh":  # "the last N days" up to the newest partition (today's New York session may not be open yet)
            end = min(end, last_partition_date(market))
        if not sessions_in_range(market, start, end):
            continue  # e.g. a 1-day stock refresh on a Sunday: only crypto has a session
        plan = plan_backfill(symbols, start, end, min_chunks=record.workers, market=market)
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
    source: str, symbols: list[str], start: dt.datetime, end: dt.datetime, options: HistoricalIngestionOptions | dict | None = None, *,
    add_missing_symbols: bool = False, wait: bool = False, derived_layers: bool = True,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> IngestionJobHandle:
    """Ingest ``source`` raw data for ``symbols`` over ``[start, end)`` and, by default
    (``derived_layers=True``), every derived layer that data feeds (curated, aligned, feature groups,
    labels) in the same ranged runs, so a training pull right after finds its data. With
    ``derived_layers=False`` only the raw layer is written; ``trigger_backfill("curated_bars", ...)``
    then builds the rest.

    ``source``: ``sim``, ``databento``, ``ib`` (``tws`` and ``ibkr`` are the same source).
    ``start``/``end``: half-open UTC range (datetimes, dates or ISO strings; naive = UTC); every
    trading day it touches is ingested. ``options``: ``HistoricalIngestionOptions`` or a dict
    (defaults when None). Returns at once unless ``wait``; ``get_ingestion_job_status`` follows it.
    ``add_missing_symbols`` adds untracked symbols to the universe instead of refusing them.
    """
    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    canonical = _source(source)
    assets = ingestion_assets(defs.resolve_asset_graph(), [canonical])
    if not assets:
        raise InvalidOptionError(f"source {source!r} has no ingestion assets in this deployment (INGESTION_SOURCES={','.join(settings.ingestion_sources)})")
    parsed = _options(HistoricalIngestionOptions, options)
    _require_supported_bar_options(canonical, parsed)
    first, last, start_text, end_text = trading_days_of(start, end)
    plan = plan_backfill(symbols, first, last, market=STOCKS)  # validates symbols and dates up front
    require_stock_symbols(plan.symbols)
    _check_symbols(instance, plan.symbols, add_missing_symbols)
    record = _new_record(
        "ingestion",
        params={"source": source, "symbols": plan.symbols, "start": start_text, "end": end_text, "options": parsed.model_dump(),
                "trading_days": [str(plan.dates[0]), str(plan.dates[-1])]},
        symbols=plan.symbols, start=str(plan.dates[0]), end=str(plan.dates[-1]),
        job_name=pipeline_job_of([canonical]),
        asset_selection=_downstream(defs, assets) if derived_layers else assets, tags={OPTIONS_TAG: parsed.model_dump_json()}, workers=parsed.max_parallel_requests,
        add_missing_symbols=add_missing_symbols, source=canonical,
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "ingestion"})
    return _submit(record, instance, settings, wait, defs, IngestionJobHandle)


def trigger_daily_ingestion(
    as_of_date: dt.date | None = None, *, sources: list[str] | None = None, wait: bool = False,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> IngestionJobHandle:
    """The day's ingestion plus everything downstream, for every tracked stock symbol.

    ``as_of_date`` (one XNYS session, the whole day) defaults to the newest session that has closed.
    ``sources`` defaults to the ``INGESTION_SOURCES`` setting.
    """
    from resources.validation import parse_date

    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    if as_of_date is None:  # the newest session that has closed (New York time), never one under way or ahead
        complete = last_complete_day(STOCKS, clock.utc_now())
        day = sessions_in_range(STOCKS, complete - dt.timedelta(days=10), complete)[-1]
    else:
        day = parse_date(as_of_date, name="as_of_date")
        if not is_session(STOCKS, day):
            raise InvalidDateRangeError(f"{day} is not an XNYS trading day")
    sources = [_source(s) for s in (sources or settings.ingestion_sources)]
    raw = ingestion_assets(defs.resolve_asset_graph(), sources)
    if not raw:
        raise InvalidOptionError(f"none of the sources {sources} has ingestion assets in this deployment")
    symbols = tracked_symbols(instance, STOCKS)
    if not symbols:
        raise InvalidOptionError("the symbol universe is empty: add symbols first")
    record = _new_record(
        "ingestion", params={"as_of_date": day.isoformat(), "sources": list(sources), "symbols": symbols},
        symbols=symbols, start=day.isoformat(), end=day.isoformat(), job_name=pipeline_job_of(sources),
        asset_selection=_downstream(defs, raw), tags={}, source=",".join(sources),
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "daily_ingestion"})
    return _submit(record, instance, settings, wait, defs, IngestionJobHandle)


def trigger_backfill(
    dataset_name: str, symbols: list[str], start: dt.datetime, end: dt.datetime, options: BackfillOptions | dict | None = None, *,
    add_missing_symbols: bool = False, wait: bool = False,
    instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None, defs: dg.Definitions | None = None,
) -> BackfillJobHandle:
    """Recompute ``dataset_name`` and everything downstream of it from stored raw data, over the
    trading days the half-open UTC range ``[start, end)`` touches.

    ``dataset_name``: curated_bars (-> aligned, features, labels), aligned_bars, bar_features,
    l2_features or labels. ``options``: ``BackfillOptions`` or a dict; ``overwrite_curated=False``
    / ``overwrite_features=False`` leave stored (symbol, date) partitions of that layer untouched
    and compute only the missing ones. ``get_backfill_job_status`` follows the job.
    """
    settings = settings or get_settings()
    instance = _instance(instance)
    defs = defs or _defs(settings)
    graph = defs.resolve_asset_graph()
    derived = {k.to_user_string() for k in dg.AssetSelection.groups(*DERIVED_GROUPS).resolve(graph)}
    if dataset_name not in derived:
        raise UnknownDatasetError(f"cannot backfill dataset {dataset_name!r}; derived datasets: {', '.join(sorted(derived))}")
    parsed = _options(BackfillOptions, options)
    first, last, start_text, end_text = trading_days_of(start, end)
    plan = plan_backfill(symbols, first, last, market=STOCKS)
    require_stock_symbols(plan.symbols)
    _check_symbols(instance, plan.symbols, add_missing_symbols)
    keep = [layer for layer, overwrite in (("curated", parsed.overwrite_curated), ("features", parsed.overwrite_features)) if not overwrite]
    record = _new_record(
        "backfill",
        params={"dataset_name": dataset_name, "symbols": plan.symbols, "start": start_text, "end": end_text, "options": parsed.model_dump(),
                "trading_days": [str(plan.dates[0]), str(plan.dates[-1])]},
        symbols=plan.symbols, start=str(plan.dates[0]), end=str(plan.dates[-1]), job_name=OFFLINE_PIPELINE_JOB,
        asset_selection=_backfill_selection(defs, dataset_name), tags={KEEP_EXISTING_TAG: ",".join(keep)} if keep else {},
        workers=parsed.max_parallel_jobs, add_missing_symbols=add_missing_symbols, dataset=dataset_name,
        source=",".join(settings.ingestion_sources),
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "backfill"})
    return _submit(record, instance, settings, wait, defs, BackfillJobHandle)


REFRESH_ASSET_TYPES = {"stocks": "stocks", "crypto": "crypto", "all": "all"}
REFRESH_INTERVALS = ("1d", "1h")


def last_complete_day(market: Market, now: pd.Timestamp) -> dt.date:
    """The newest day of ``market``'s calendar (its time zone) whose session, if it has one, has
    closed by ``now``: today once its session is over (or when it has none), else yesterday."""
    today = now.tz_convert(market.timezone).date()
    return today - dt.timedelta(days=1) if session_under_way(market, today, now) else today


def refresh_window(days_back: int, today: dt.date | None = None, markets: tuple[Market, ...] = (STOCKS, CRYPTO)) -> tuple[dt.date, dt.date]:
    """[start, end] of a refresh: the last ``days_back`` calendar days ending at the newest day
    complete in every market refreshed (``today``, UTC, by default). A session still under way or
    not yet open is left to the next refresh: its bars do not exist yet (a vendor returns what has
    traded), so refreshing it would store a day of gaps."""
    now = pd.Timestamp.now(tz="UTC")
    end = min([today or now.date(), *(last_complete_day(market, now) for market in markets)])
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
    markets = {"stocks": [STOCKS], "crypto": [CRYPTO], "all": [STOCKS, CRYPTO]}[asset_type]
    start, end = refresh_window(days_back, today, tuple(markets))
    symbols = [s for market in markets for s in tracked_symbols(instance, market) if sessions_in_range(market, start, min(end, last_partition_date(market)))]
    if not symbols:
        raise InvalidOptionError(f"nothing to refresh: no tracked {asset_type} symbols with a session between {start} and {end}")
    sources = settings.ingestion_sources  # stocks from the configured sources (crypto: the offline pipeline)
    raw = ingestion_assets(defs.resolve_asset_graph(), sources)
    if not raw:
        raise InvalidOptionError(f"none of the sources {sources} has ingestion assets in this deployment")
    job_name = pipeline_job_of(sources)
    record = _new_record(
        "refresh", params={"days_back": days_back, "interval": interval, "asset_type": asset_type, "start": start.isoformat(), "end": end.isoformat(), "symbols": symbols},
        symbols=symbols, start=start.isoformat(), end=end.isoformat(), job_name=job_name,
        asset_selection=None if job_name == OFFLINE_PIPELINE_JOB else _downstream(defs, raw), tags={}, market=REFRESH_ASSET_TYPES[asset_type], source=",".join(sources),
    )
    record.tags.update({JOB_ID_TAG: record.job_id, JOB_KIND_TAG: "refresh"})
    return _submit(record, instance, settings, wait, defs)


# ------------------------------------------------------------------------------ status
def _worker_gone(record: JobRecord) -> bool:
    child = _CHILDREN.get(record.job_id)
    if child is not None:
        return child.poll() is not None
    if record.worker_pid is None:  # run by its caller (wait=True): gone when that process is
        if record.runner_pid is None or (record.runner_host is not None and record.runner_host != socket.gethostname()):
            return False  # no runner recorded, or one on another host: its pid means nothing here
        started = process_start_time(record.runner_pid)
        return started is None or (record.runner_start is not None and abs(started - record.runner_start) > 1.0)
    if process_start_time(record.worker_pid) is None:
        return True  # no such process, or a zombie nobody reaped (its parent is another process)
    try:  # a live pid running something else: the worker died and its pid was reused
        return record.job_id.encode() not in Path(f"/proc/{record.worker_pid}/cmdline").read_bytes()
    except OSError:
        return False


def _status_fields(job_id: str, instance: dg.DagsterInstance) -> tuple[JobRecord, dict]:
    """The job's record and its status fields (timestamps as ISO text)."""
    reap_finished_workers()
    folder = job_store.jobs_dir(instance)
    record = job_store.load(folder, job_id)
    if record.finished_at is None and _worker_gone(record):
        reap_dead_runs(instance, tags={JOB_ID_TAG: job_id})  # its runs left STARTED are failed too
    runs = instance.get_run_records(dg.RunsFilter(tags={JOB_ID_TAG: job_id}))
    statuses = [r.dagster_run.status for r in runs]
    failed = [s for s in statuses if s in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]
    succeeded = [s for s in statuses if s == dg.DagsterRunStatus.SUCCESS]
    errors = [record.error] if record.error else []
    end_ts, materializations = record.finished_at, record.materializations
    if record.finished_at is None and _worker_gone(record):
        record = job_store.load(folder, job_id)
        if record.finished_at is None:
            errors.append(f"the job's worker process exited before finishing (see {record.log_path or 'its .log next to the job record'})")
            # nobody will finalize the record: the job ended when its last run did, with what its runs recorded
            ends = [r.end_time for r in runs if r.end_time]
            end_ts = dt.datetime.fromtimestamp(max(ends), tz=dt.timezone.utc).isoformat() if ends else (record.started_at or record.created_at)
            materializations = _materialized_by_runs(instance, runs)
        else:
            end_ts, materializations = record.finished_at, record.materializations
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
        "materializations": materializations,
        "errors": errors,
        "log_path": record.log_path,
    }
    return record, {
        "job_id": record.job_id, "kind": record.kind, "state": state, "start_ts": record.started_at or record.created_at, "end_ts": end_ts,
        "source": record.source, "dataset": record.dataset, "params": record.params, "summary": summary,
        "run_ids": [r.dagster_run.run_id for r in runs],
    }


def _materialized_by_runs(instance: dg.DagsterInstance, runs) -> dict[str, int]:
    """Asset -> distinct partitions the runs recorded as materialized (from their events)."""
    keys: dict[str, set[str]] = {}
    for run in runs:
        for entry in instance.all_logs(run.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            event = entry.dagster_event
            keys.setdefault(event.asset_key.to_user_string(), set()).add(event.partition or "")
    return {name: len(partitions) for name, partitions in keys.items()}


def _utc(text: str | None) -> dt.datetime | None:
    return pd.Timestamp(text).tz_convert("UTC").to_pydatetime() if text else None


def get_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> JobStatus:
    """State and summary of any job (ingestion, backfill or refresh), timestamps as ISO text."""
    _, fields = _status_fields(job_id, _instance(instance))
    return JobStatus(**fields)


INGESTION_KINDS = ("ingestion", "refresh")


def get_ingestion_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> IngestionJobStatus:
    """Contract 2.3: the ``IngestionJobStatus`` of an ingestion job (or an HTTP refresh job)."""
    record, fields = _status_fields(job_id, _instance(instance))
    if record.kind not in INGESTION_KINDS:
        raise UnknownJobError(f"job {job_id} is a {record.kind} job: use get_{record.kind}_job_status")
    return IngestionJobStatus(
        job_id=fields["job_id"], state=fields["state"], start_ts=_utc(fields["start_ts"]), end_ts=_utc(fields["end_ts"]),
        source=record.source or "", params=record.params, summary=fields["summary"], kind=record.kind, run_ids=fields["run_ids"],
    )


def get_backfill_job_status(job_id: str, *, instance: dg.DagsterInstance | None = None) -> BackfillJobStatus:
    """Contract 5.2: the ``BackfillJobStatus`` of a backfill job."""
    record, fields = _status_fields(job_id, _instance(instance))
    if record.kind != "backfill":
        raise UnknownJobError(f"job {job_id} is an {record.kind} job: use get_ingestion_job_status")
    return BackfillJobStatus(
        job_id=fields["job_id"], state=fields["state"], start_ts=_utc(fields["start_ts"]), end_ts=_utc(fields["end_ts"]),
        source=record.source or "", params=record.params, summary=fields["summary"], dataset_name=record.dataset, run_ids=fields["run_ids"],
    )
