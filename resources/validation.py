"""Boundary validation of user input: symbols, dates, date ranges and versions.

Everything that can end up in a file path or a query passes through here first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

# Upper-case ticker roots with optional class/pair suffixes: AAPL, BRK.B, BTC-USD, ESH5.
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,12}(?:[.\-][A-Z0-9]{1,8}){0,2}$")
VERSION_PATTERN = re.compile(r"^v[0-9]{1,4}$")


class InvalidInputError(ValueError):
    """Input rejected at the boundary; the message names the offending value."""


class InvalidSymbolError(InvalidInputError):
    """A symbol does not match the platform's strict symbol pattern."""


class InvalidDateRangeError(InvalidInputError):
    """A date or a date range is malformed, reversed, or holds no trading day."""


def normalize_symbol(symbol: object) -> str:
    """Return the canonical (upper-case) symbol or raise ``InvalidSymbolError``."""
    if not isinstance(symbol, str):
        raise InvalidSymbolError(f"symbol must be a string, got {type(symbol).__name__}")
    candidate = symbol.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(candidate):
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: expected letters/digits with optional '.' or '-' parts "
            "(e.g. AAPL, BRK.B, BTC-USD); no path separators, spaces or punctuation"
        )
    return candidate


def normalize_symbols(symbols: Iterable[object] | str) -> list[str]:
    """Validate a list (or comma-separated string) of symbols; order kept, duplicates dropped."""
    if isinstance(symbols, str):
        symbols = [part for part in symbols.split(",") if part.strip()]
    elif isinstance(symbols, bytes) or not isinstance(symbols, Iterable):
        raise InvalidSymbolError(f"symbols must be a symbol, a comma-separated string or a list of symbols, got {type(symbols).__name__} {symbols!r}")
    seen: dict[str, None] = {}
    for symbol in symbols:
        seen.setdefault(normalize_symbol(symbol), None)
    if not seen:
        raise InvalidSymbolError("no symbols given")
    return list(seen)


def parse_date(value: object, *, name: str = "date") -> dt.date:
    """Parse ``YYYY-MM-DD`` (or accept a date) or raise ``InvalidDateRangeError``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidDateRangeError(f"invalid {name} {value!r}: expected YYYY-MM-DD")


def parse_date_range(start: object, end: object) -> tuple[dt.date, dt.date]:
    """Parse an inclusive ``[start, end]`` date range; end before start is an error."""
    start_date = parse_date(start, name="start date")
    end_date = parse_date(end, name="end date")
    if end_date < start_date:
        raise InvalidDateRangeError(f"end date {end_date} is before start date {start_date}")
    return start_date, end_date


def parse_half_open_dates(start: object, end: object) -> tuple[dt.date, dt.date]:
    """The platform's range convention for date-level entry points: ``[start, end)`` in UTC.

    Returns the first and last date the range touches (both included), for code that walks dates.
    ``start``/``end`` are dates, ``YYYY-MM-DD`` or ISO timestamps (UTC when naive). A date (or a
    midnight timestamp) as ``end`` is exclusive: ``("2024-11-18", "2024-11-19")`` is the one day
    2024-11-18. A timestamp end later in a day includes that day. Numbers are refused (they are
    not dates); ``start >= end`` is an error.
    """
    start_at, end_at = _utc_instant(start, "start"), _utc_instant(end, "end")
    if end_at <= start_at:
        raise InvalidDateRangeError(f"start {start} must be before end {end} (the range is [start, end), end excluded)")
    return start_at.date(), (end_at - dt.timedelta(microseconds=1)).date()


def _utc_instant(value: object, name: str) -> dt.datetime:
    """A naive UTC datetime; a date is its midnight."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0))
    if isinstance(value, str):
        text = value.strip()
        try:
            return _utc_instant(dt.datetime.fromisoformat(text.replace("Z", "+00:00")), name)
        except ValueError:
            pass
    raise InvalidDateRangeError(f"invalid {name} {value!r}: expected YYYY-MM-DD or an ISO timestamp (numbers are not dates)")


def validate_version(version: object) -> str:
    """Feature/label definition versions look like ``v1``, ``v2`` ..."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise InvalidInputError(f"invalid version {version!r}: expected v<number>, e.g. v1")
    return version
