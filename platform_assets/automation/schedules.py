"""Schedules: daily ingestion after the close, weekly and monthly refreshes of recent history.

All of them are visible (and can be switched on/off) in the Dagster UI under Automation; they
start STOPPED so a fresh checkout never launches runs by itself (turn them on in the UI or with
``dagster schedule start``). Each tick requests ranged runs of the whole graph for every tracked
symbol of its market; ticks on days without a session (weekends, XNYS holidays) request nothing.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from platform_assets.automation.jobs import crypto_pipeline_job, offline_pipeline_job
from platform_assets.calendars import CRYPTO, STOCKS, is_session, sessions_in_range
from platform_assets.partitions import MAX_DATES_PER_RUN
from platform_assets.universe import tracked_symbols

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REFRESH_TAG = "platform/refresh"
WEEKLY_DAYS, MONTHLY_DAYS = 30, 90


def ranged_requests(dates: list[dt.date], kind: str, tick: dt.date) -> list[dg.RunRequest]:
    """Run requests covering ``dates`` in contiguous ranges of at most MAX_DATES_PER_RUN dates."""
    requests = []
    for i in range(0, len(dates), MAX_DATES_PER_RUN):
        chunk = dates[i : i + MAX_DATES_PER_RUN]
        requests.append(
            dg.RunRequest(
                run_key=f"{kind}-{tick.isoformat()}-{chunk[0].isoformat()}",
                tags={RANGE_START_TAG: chunk[0].isoformat(), RANGE_END_TAG: chunk[-1].isoformat(), REFRESH_TAG: kind},
            )
        )
    return requests


def daily_ingestion_requests(instance: dg.DagsterInstance, local_day: dt.date) -> list[dg.RunRequest] | dg.SkipReason:
    """The session of ``local_day`` (exchange time zone) for every tracked stock symbol."""
    if not is_session(STOCKS, local_day):
        return dg.SkipReason(f"{local_day} is not an XNYS trading day")
    if not tracked_symbols(instance, STOCKS):
        return dg.SkipReason("no tracked stock symbols")
    return [dg.RunRequest(run_key=f"daily-{local_day.isoformat()}", partition_key=local_day.isoformat(), tags={REFRESH_TAG: "daily"})]


def refresh_requests(instance: dg.DagsterInstance, local_day: dt.date, days_back: int, kind: str, market=STOCKS) -> list[dg.RunRequest] | dg.SkipReason:
    """Every session of the last ``days_back`` calendar days up to ``local_day``, ranged."""
    if not tracked_symbols(instance, market):
        return dg.SkipReason(f"no tracked {market.name} symbols")
    dates = sessions_in_range(market, local_day - dt.timedelta(days=days_back - 1), local_day)
    if not dates:
        return dg.SkipReason(f"no sessions in the {days_back} days up to {local_day}")
    return ranged_requests(dates, kind, local_day)


@dg.schedule(
    job=offline_pipeline_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=STOCKS.timezone,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="After the XNYS close (17:30 New York): the day's session through the whole graph, every tracked stock symbol.",
)
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext):
    return daily_ingestion_requests(context.instance, context.scheduled_execution_time.date())


def _refresh_schedule(kind: str, cron: str, days_back: int, when: str) -> dg.ScheduleDefinition:
    """A STOPPED schedule re-running the sessions of the last ``days_back`` days, New York time."""

    @dg.schedule(
        name=f"{kind}_refresh_schedule",
        job=offline_pipeline_job,
        cron_schedule=cron,
        execution_timezone=STOCKS.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"{when} New York: re-run the last {days_back} days (late vendor corrections, fixed gaps).",
    )
    def refresh(context: dg.ScheduleEvaluationContext):
        return refresh_requests(context.instance, context.scheduled_execution_time.date(), days_back, kind)

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
    return [dg.RunRequest(run_key=f"crypto-daily-{day.isoformat()}", partition_key=day.isoformat(), tags={REFRESH_TAG: "daily"})]


SCHEDULES = [daily_ingestion_schedule, weekly_refresh_schedule, monthly_refresh_schedule, crypto_daily_schedule]
