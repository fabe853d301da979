"""Schedules: daily ingestion after the close, weekly and monthly refreshes of recent history.

All of them are visible (and can be switched on/off) in the Dagster UI under Automation; they
start STOPPED so a fresh checkout never launches runs by itself (turn them on in the UI or with
``dagster schedule start``). Each tick requests ranged runs of the whole graph for every tracked
symbol of its market; ticks on days without a session (weekends, XNYS holidays) request nothing.

Stock runs ingest from the sources of ``INGESTION_SOURCES`` (read at each tick; default ``sim``):
the ``stock_pipeline`` job with an asset selection of those sources' raw assets and everything
derived downstream (``platform_assets.ingestion.sources``), as the Python and HTTP jobs do.

Retries: a daily tick also re-runs each of the last ``RETRY_SESSIONS`` sessions (UTC days for
crypto) whose ``symbols_complete`` check last failed at ERROR (a source raised, no data landed, or
the lake audit found data gone), was judged (WARN) while the session was under way, or was left
unjudged by a run that ended; one run per session and tick, of the symbols the checks name, until
the date passes or leaves the window. Dates missing only DQ-blocked symbols (WARN) are not
retried: the vendor's data failed its rules, and the weekly refresh picks up corrections.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from platform_assets.automation.jobs import crypto_pipeline_job, stock_pipeline_job
from platform_assets.calendars import CRYPTO, STOCKS, Market, is_session, sessions_in_range
from platform_assets.ingestion.sources import configured_sources, sources_selection
from platform_assets.partitions import MAX_DATES_PER_RUN, SYMBOLS_TAG
from platform_assets.symbol_days import COMPLETE_CHECK, MISSING_NAMES_KEY, SESSION_UNDER_WAY_KEY
from platform_assets.universe import tracked_symbols

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REFRESH_TAG = "platform/refresh"
WEEKLY_DAYS, MONTHLY_DAYS = 30, 90
RETRY_SESSIONS = 5


def _asset_graph(context: dg.ScheduleEvaluationContext):
    """The code location's asset graph (the whole platform's when evaluated without one)."""
    try:
        repository = context.repository_def
    except dg.DagsterInvariantViolationError:
        repository = None
    return repository.asset_graph if repository is not None else _asset_graph_of_platform()


def configured_stock_selection(asset_graph) -> list[dg.AssetKey]:
    """The configured sources' raw assets and everything derived from them (``INGESTION_SOURCES``)."""
    return [dg.AssetKey(name) for name in sources_selection(asset_graph, configured_sources())]


def sessions_to_retry(instance: dg.DagsterInstance, asset_graph, selection: list[dg.AssetKey], sessions: list[dt.date]) -> dict[dt.date, list[str] | None]:
    """Those of ``sessions`` whose ``symbols_complete`` check, on any asset of ``selection``, last
    failed at ERROR, was judged (WARN) while the session was under way, or was planned by a run that
    ended without judging it; each with the symbols to re-run (None: every tracked symbol, when an
    evaluation does not name them)."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    from platform_assets.lake_status import latest_evaluations

    keys = [key for key in (dg.AssetCheckKey(asset, COMPLETE_CHECK) for asset in selection) if key in asset_graph.asset_check_keys]
    if not keys or not sessions:
        return {}
    infos = instance.event_log_storage.get_asset_check_partition_info(keys, partition_keys=[d.isoformat() for d in sessions])
    failed: dict[dg.AssetCheckKey, set[str]] = {}
    symbols: dict[str, set[str] | None] = {}
    for info in infos:
        if info.partition_key and info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED:
            failed.setdefault(info.check_key, set()).add(info.partition_key)
        elif info.partition_key and info.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED:
            run = instance.get_run_by_id(info.latest_planned_run_id)
            if run is None or run.is_finished:  # the run ended without judging the date (killed, an upstream step failed)
                symbols[info.partition_key] = None
    for key, days in failed.items():
        for day, evaluation in latest_evaluations(instance, key, days).items():
            judged_intraday = SESSION_UNDER_WAY_KEY in evaluation.metadata  # a WARN while the session ran: judge it now it has closed
            if evaluation.severity != dg.AssetCheckSeverity.ERROR and not judged_intraday:
                continue
            names = evaluation.metadata.get(MISSING_NAMES_KEY)
            if names is None or symbols.get(day, set()) is None:
                symbols[day] = None  # not named (the lake audit's, an older evaluation): every symbol
            else:
                symbols.setdefault(day, set()).update(filter(None, str(names.value).split(",")))
    return {d: (sorted(symbols[d.isoformat()]) if symbols[d.isoformat()] is not None else None) for d in sessions if d.isoformat() in symbols}


def retry_requests(
    instance: dg.DagsterInstance, asset_graph, selection: list[dg.AssetKey], market: Market, tick_day: dt.date, kind: str,
    asset_selection: list[dg.AssetKey] | None = None,
) -> list[dg.RunRequest]:
    """One run per recent session before ``tick_day`` whose completeness check failed (ERROR), of
    the symbols its evaluations name as missing (the others' data is there: never re-pulled)."""
    recent = sessions_in_range(market, tick_day - dt.timedelta(days=RETRY_SESSIONS * 3 + 7), tick_day - dt.timedelta(days=1))[-RETRY_SESSIONS:]
    return [
        dg.RunRequest(
            run_key=f"{kind}-{tick_day.isoformat()}-retry-{day.isoformat()}", partition_key=day.isoformat(),
            tags={REFRESH_TAG: f"{kind}-retry", **({SYMBOLS_TAG: ",".join(symbols)} if symbols else {})}, asset_selection=asset_selection,
        )
        for day, symbols in sessions_to_retry(instance, asset_graph, selection, recent).items()
    ]


def ranged_requests(dates: list[dt.date], kind: str, tick: dt.date, asset_selection: list[dg.AssetKey] | None = None) -> list[dg.RunRequest]:
    """Run requests covering ``dates`` in contiguous ranges of at most MAX_DATES_PER_RUN dates."""
    requests = []
    for i in range(0, len(dates), MAX_DATES_PER_RUN):
        chunk = dates[i : i + MAX_DATES_PER_RUN]
        requests.append(
            dg.RunRequest(
                run_key=f"{kind}-{tick.isoformat()}-{chunk[0].isoformat()}",
                tags={RANGE_START_TAG: chunk[0].isoformat(), RANGE_END_TAG: chunk[-1].isoformat(), REFRESH_TAG: kind},
                asset_selection=asset_selection,
            )
        )
    return requests


def daily_ingestion_requests(instance: dg.DagsterInstance, local_day: dt.date, asset_graph=None) -> list[dg.RunRequest] | dg.SkipReason:
    """The session of ``local_day`` (exchange time zone) for every tracked stock symbol, from the
    configured sources, plus retries of the recent sessions whose completeness check failed."""
    if not is_session(STOCKS, local_day):
        return dg.SkipReason(f"{local_day} is not an XNYS trading day")
    if not tracked_symbols(instance, STOCKS):
        return dg.SkipReason("no tracked stock symbols")
    asset_graph = asset_graph if asset_graph is not None else _asset_graph_of_platform()
    selection = configured_stock_selection(asset_graph)
    today = dg.RunRequest(run_key=f"daily-{local_day.isoformat()}", partition_key=local_day.isoformat(), tags={REFRESH_TAG: "daily"}, asset_selection=selection)
    return [*retry_requests(instance, asset_graph, selection, STOCKS, local_day, "daily", selection), today]


def refresh_requests(
    instance: dg.DagsterInstance, local_day: dt.date, days_back: int, kind: str, market=STOCKS, asset_graph=None,
) -> list[dg.RunRequest] | dg.SkipReason:
    """Every session of the last ``days_back`` calendar days up to ``local_day``, ranged (stocks:
    from the configured sources)."""
    if not tracked_symbols(instance, market):
        return dg.SkipReason(f"no tracked {market.name} symbols")
    dates = sessions_in_range(market, local_day - dt.timedelta(days=days_back - 1), local_day)
    if not dates:
        return dg.SkipReason(f"no sessions in the {days_back} days up to {local_day}")
    selection = configured_stock_selection(asset_graph if asset_graph is not None else _asset_graph_of_platform()) if market == STOCKS else None
    return ranged_requests(dates, kind, local_day, selection)


def _asset_graph_of_platform():
    from platform_assets.definitions_parts import ASSET_CHECKS, ASSETS

    return dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS).resolve_asset_graph()


@dg.schedule(
    job=stock_pipeline_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=STOCKS.timezone,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "After the XNYS close (17:30 New York): the day's session through the whole graph, every tracked stock symbol, "
        f"from the INGESTION_SOURCES sources; also re-runs the last {RETRY_SESSIONS} sessions whose symbols_complete check failed (ERROR)."
    ),
)
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext):
    return daily_ingestion_requests(context.instance, context.scheduled_execution_time.date(), _asset_graph(context))


def _refresh_schedule(kind: str, cron: str, days_back: int, when: str) -> dg.ScheduleDefinition:
    """A STOPPED schedule re-running the sessions of the last ``days_back`` days, New York time."""

    @dg.schedule(
        name=f"{kind}_refresh_schedule",
        job=stock_pipeline_job,
        cron_schedule=cron,
        execution_timezone=STOCKS.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"{when} New York: re-run the last {days_back} days (late vendor corrections, fixed gaps).",
    )
    def refresh(context: dg.ScheduleEvaluationContext):
        return refresh_requests(context.instance, context.scheduled_execution_time.date(), days_back, kind, asset_graph=_asset_graph(context))

    return refresh


weekly_refresh_schedule = _refresh_schedule("weekly", "0 6 * * 6", WEEKLY_DAYS, "Saturdays 06:00")
monthly_refresh_schedule = _refresh_schedule("monthly", "0 7 1 * *", MONTHLY_DAYS, "1st of the month 07:00")


@dg.schedule(
    job=crypto_pipeline_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="00:30 UTC every day: the previous UTC day of every tracked crypto pair.",
)
def crypto_daily_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date() - dt.timedelta(days=1)
    if not tracked_symbols(context.instance, CRYPTO):
        return dg.SkipReason("no tracked crypto symbols")
    asset_graph = _asset_graph(context)
    selection = sorted(dg.AssetSelection.groups("crypto").resolve(asset_graph))
    retries = retry_requests(context.instance, asset_graph, selection, CRYPTO, day, "crypto-daily")
    return [*retries, dg.RunRequest(run_key=f"crypto-daily-{day.isoformat()}", partition_key=day.isoformat(), tags={REFRESH_TAG: "daily"})]


SCHEDULES = [daily_ingestion_schedule, weekly_refresh_schedule, monthly_refresh_schedule, crypto_daily_schedule]
