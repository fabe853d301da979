"""Paging a historical range into IB requests no longer than IB serves per bar size.

Requests are anchored at New York calendar days: each page ends at 23:59:59 New York of its last
day (``endDateTime`` in ``YYYYMMDD HH:MM:SS US/Eastern`` form) and spans whole calendar days, so a
page never crosses into a day outside the request (bars of days between requested days are
dropped by the caller).

Two tables of the longest page per bar size, in calendar days:

* ``MAX_DAYS`` (the strict table, as IB's step-size table reads: 1 D for 1-min bars) — used for bars
  of 30 s and less, where IB's hard pacing rules apply, and by the ``strict`` policy;
* ``MULTI_DAY_MAX_DAYS`` for bars of 1 min and larger, where IB lifted the hard limits: IB's own
  examples request ``"10 D"`` of ``"1 min"`` bars in one call, so 1-min pages span up to 10 calendar
  days (about 7 trading days); larger bars keep the larger of that and the strict table.
  ``max_days`` overrides it (a cautious user can lower it, e.g. 1 for the old behaviour).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Maximum duration of one request per bar size, in days (IB's step-size table, whole days only).
MAX_DAYS = {
    "1 secs": 1, "5 secs": 1, "10 secs": 1, "15 secs": 1, "30 secs": 1,
    "1 min": 1, "2 mins": 2, "3 mins": 7, "5 mins": 7, "10 mins": 7, "15 mins": 14, "20 mins": 14, "30 mins": 30,
    "1 hour": 30, "2 hours": 30, "3 hours": 30, "4 hours": 30, "8 hours": 30, "1 day": 365,
}
SMALL_BARS = {"1 secs", "5 secs", "10 secs", "15 secs", "30 secs"}  # IB's hard pacing rules apply
MULTI_DAY_1_MIN = 10  # IB's example: reqHistoricalData(..., "10 D", "1 min", "TRADES", ...)
MULTI_DAY_MAX_DAYS = {size: days if size in SMALL_BARS else max(days, MULTI_DAY_1_MIN) for size, days in MAX_DAYS.items()}


def is_small_bar(bar_size: str) -> bool:
    """True for bars of 30 seconds or less (IB's strict pacing rules)."""
    _check(bar_size)
    return bar_size in SMALL_BARS


def max_page_days(bar_size: str, multi_day: bool = True, override: int | None = None) -> int:
    """Longest page for ``bar_size``: the strict table for small bars or ``multi_day=False``,
    else ``override`` (when given) or ``MULTI_DAY_MAX_DAYS``."""
    _check(bar_size)
    if bar_size in SMALL_BARS or not multi_day:
        return MAX_DAYS[bar_size]
    if override is not None:
        if not 1 <= override <= 365:
            raise ValueError(f"max page days must be between 1 and 365, got {override}")
        return override
    return MULTI_DAY_MAX_DAYS[bar_size]


@dataclass(frozen=True)
class Page:
    days: tuple[dt.date, ...]  # the trading days the page covers
    end: str                   # endDateTime for reqHistoricalData
    duration: str              # durationStr, e.g. "1 D"


def page_days(days: list[dt.date], bar_size: str, limit: int | None = None) -> list[Page]:
    """Consecutive trading days grouped into pages of at most ``limit`` calendar days
    (default: the strict ``MAX_DAYS[bar_size]``)."""
    _check(bar_size)
    limit = MAX_DAYS[bar_size] if limit is None else limit
    pages, current = [], []
    for day in sorted(set(days)):
        if current and (day - current[0]).days + 1 > limit:
            pages.append(_page(current))
            current = []
        current.append(day)
    if current:
        pages.append(_page(current))
    return pages


def _check(bar_size: str) -> None:
    if bar_size not in MAX_DAYS:
        raise ValueError(f"unsupported bar size {bar_size!r}; supported: {', '.join(MAX_DAYS)}")


def _page(days: list[dt.date]) -> Page:
    span = (days[-1] - days[0]).days + 1
    duration = f"{span} D" if span < 365 else "1 Y"
    return Page(tuple(days), f"{days[-1]:%Y%m%d} 23:59:59 US/Eastern", duration)
