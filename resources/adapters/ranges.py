"""Pure time-range helpers shared by the adapters: instants, date chunks, New York trading days.

Ranges are half-open ``[start, end)`` in UTC everywhere (the platform's convention, and Databento's
own: its ``end`` is exclusive). A date-only string means that date's midnight UTC.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

NY = "America/New_York"


def parse_instant(value, name: str) -> pd.Timestamp:
    """An ISO string (``2024-01-01T00:00:00Z``), date or datetime as a UTC ``Timestamp``.

    Naive values are read as UTC; anything unparseable raises ``ValueError`` naming ``name``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is required (an ISO date-time such as 2024-01-01T00:00:00Z)")
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} {value!r} is not an ISO date-time ({error})") from None
    if pd.isna(stamp):
        raise ValueError(f"{name} {value!r} is not an ISO date-time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def chunk_range(start: pd.Timestamp, end: pd.Timestamp, days: float) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) split into consecutive ranges of at most ``days`` days (the last one shorter)."""
    if end <= start:
        raise ValueError(f"empty range: end {end} <= start {start}")
    if not days or days <= 0:
        raise ValueError(f"date_chunk_interval_days must be positive, got {days!r}")
    step = pd.Timedelta(days=days)
    out, cursor = [], start
    while cursor < end:
        out.append((cursor, min(cursor + step, end)))
        cursor += step
    return out


def et_day_bounds(day: dt.date, window: tuple[dt.time, dt.time] | None = None, tz: str = NY) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) in UTC of a New York calendar day, or of an ET window on it (DST-aware)."""
    first, last = window or (dt.time(0, 0), None)
    start = pd.Timestamp(dt.datetime.combine(day, first), tz=tz)
    end = pd.Timestamp(dt.datetime.combine(day, last), tz=tz) if last else pd.Timestamp(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()), tz=tz)
    return start.tz_convert("UTC"), end.tz_convert("UTC")


def days_range(dates: list[dt.date]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[first day's New York midnight, the day after the last one's) in UTC."""
    return et_day_bounds(min(dates))[0], et_day_bounds(max(dates))[1]


def isoformat_z(stamp: pd.Timestamp) -> str:
    """``2024-01-01T00:00:00Z`` (the seeds' spelling of a UTC instant)."""
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S") + (f".{stamp.microsecond:06d}" if stamp.microsecond else "") + "Z"
