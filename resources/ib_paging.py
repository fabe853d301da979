"""Paging a historical range into IB requests no longer than IB's maximum duration per bar size.

Requests are anchored at New York calendar days: each page ends at 23:59:59 New York of its last
day (``endDateTime`` in ``YYYYMMDD HH:MM:SS US/Eastern`` form) and spans whole days, at most the
bar size's maximum (1 D for 1-min bars), so a page never crosses into a day outside the request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Maximum duration of one request per bar size, in days (IB's table, whole days only).
MAX_DAYS = {
    "1 secs": 1, "5 secs": 1, "10 secs": 1, "15 secs": 1, "30 secs": 1,
    "1 min": 1, "2 mins": 2, "3 mins": 7, "5 mins": 7, "10 mins": 7, "15 mins": 14, "20 mins": 14, "30 mins": 30,
    "1 hour": 30, "2 hours": 30, "3 hours": 30, "4 hours": 30, "8 hours": 30, "1 day": 365,
}


@dataclass(frozen=True)
class Page:
    days: tuple[dt.date, ...]  # the trading days the page covers
    end: str                   # endDateTime for reqHistoricalData
    duration: str              # durationStr, e.g. "1 D"


def page_days(days: list[dt.date], bar_size: str) -> list[Page]:
    """Consecutive trading days grouped into pages of at most ``MAX_DAYS[bar_size]`` calendar days."""
    if bar_size not in MAX_DAYS:
        raise ValueError(f"unsupported bar size {bar_size!r}; supported: {', '.join(MAX_DAYS)}")
    limit = MAX_DAYS[bar_size]
    pages, current = [], []
    for day in sorted(set(days)):
        if current and (day - current[0]).days + 1 > limit:
            pages.append(_page(current))
            current = []
        current.append(day)
    if current:
        pages.append(_page(current))
    return pages


def _page(days: list[dt.date]) -> Page:
    span = (days[-1] - days[0]).days + 1
    duration = f"{span} D" if span < 365 else "1 Y"
    return Page(tuple(days), f"{days[-1]:%Y%m%d} 23:59:59 US/Eastern", duration)
