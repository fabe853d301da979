"""Exchange calendars: trading sessions and their canonical 1-minute timelines.

Built on ``exchange_calendars`` (holidays, half days such as 2024-11-29, DST). Bars are stamped
with the UTC start of their minute; a session's timeline is every minute in ``[open, close)``.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import exchange_calendars as xcals
import pandas as pd

from resources import clock

ONE_MINUTE = pd.Timedelta(minutes=1)

CALENDAR_START = "2000-01-03"


@dataclass(frozen=True)
class Market:
    """A family of symbols that share an exchange calendar."""

    name: str
    calendar_name: str
    timezone: str

    @property
    def calendar(self) -> xcals.ExchangeCalendar:
        return _calendar(self.calendar_name)


STOCKS = Market(name="stocks", calendar_name="XNYS", timezone="America/New_York")
CRYPTO = Market(name="crypto", calendar_name="24/7", timezone="UTC")


CALENDAR_HORIZON = dt.timedelta(days=400)  # sessions known this far past today


def _calendar(name: str) -> xcals.ExchangeCalendar:
    return _calendar_until(name, dt.date.today() + CALENDAR_HORIZON)


@functools.lru_cache(maxsize=8)
def _calendar_until(name: str, end: dt.date) -> xcals.ExchangeCalendar:
    """The exchange's calendar up to ``end`` (~0.3 s to build): kept per end day, so a process
    living for days (the UI, a worker forked from the preload server) extends its horizon daily."""
    return xcals.get_calendar(name, start=CALENDAR_START, end=pd.Timestamp(end))


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def is_session(market: Market, day: dt.date | str) -> bool:
    """True if ``day`` is a trading session of the market."""
    return bool(market.calendar.is_session(pd.Timestamp(_as_date(day))))


def sessions_in_range(market: Market, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Trading sessions in the inclusive range, oldest first."""
    sessions = market.calendar.sessions_in_range(pd.Timestamp(_as_date(start)), pd.Timestamp(_as_date(end)))
    return [ts.date() for ts in sessions]


@functools.lru_cache(maxsize=4096)
def session_bounds(market: Market, day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(open, close) of a session as UTC timestamps; raises ``ValueError`` on a non-session."""
    if not is_session(market, day):
        raise ValueError(f"{day} is not a {market.calendar_name} trading session")
    session = pd.Timestamp(day)
    return market.calendar.session_open(session), market.calendar.session_close(session)


def session_minutes(market: Market, day: dt.date | str) -> pd.DatetimeIndex:
    """Canonical timeline: the UTC start of every 1-minute bar of the session.

    A copy of a cached index (the caller may rename or change its copy): ``pd.date_range`` with a
    time zone costs ~0.95 ms, the copy ~8 us, and the simulator, curation and the L2 features ask
    for a session's timeline once per symbol-day."""
    return _session_minutes(market, _as_date(day)).copy(deep=True)


def elapsed_session_minutes(market: Market, day: dt.date | str, now: pd.Timestamp | None = None) -> pd.DatetimeIndex:
    """``session_minutes`` whose bar has ended by ``now`` (default: ``resources.clock.utc_now``): the
    whole session once it has closed, the minutes so far while it is under way, none before its
    open. What the steps that build a session's minute grid use, so a run during the session never
    invents the minutes still to come (as feed gaps)."""
    minutes = session_minutes(market, day)
    now = clock.utc_now() if now is None else pd.Timestamp(now)
    if len(minutes) == 0 or minutes[-1] + ONE_MINUTE <= now:
        return minutes
    return minutes[minutes + ONE_MINUTE <= now]


def session_under_way(market: Market, day: dt.date | str, now: pd.Timestamp | None = None) -> bool:
    """Whether ``day``'s session has not closed yet by ``now`` (default ``resources.clock.utc_now``):
    under way or not yet open. False for a day without a session."""
    day = _as_date(day)
    if not is_session(market, day):
        return False
    return session_bounds(market, day)[1] > (clock.utc_now() if now is None else pd.Timestamp(now))


@functools.lru_cache(maxsize=4096)
def _session_minutes(market: Market, day: dt.date) -> pd.DatetimeIndex:
    open_ts, close_ts = session_bounds(market, day)
    return pd.date_range(open_ts, close_ts, freq="1min", inclusive="left", name="ts")


def holidays_between(market: Market, start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in ``[start, end]`` that are not sessions (holidays and ad-hoc closures)."""
    weekdays = pd.bdate_range(pd.Timestamp(start), pd.Timestamp(end))
    sessions = set(sessions_in_range(market, start, end))
    return [ts.date() for ts in weekdays if ts.date() not in sessions]
