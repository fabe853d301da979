"""Dates a derived table lost when one of its files was quarantined, kept until a step re-computes them.

A corrupt month file holds up to ~23 dates of one (table, symbol). Whoever finds it (a writer
replacing some of its dates, a reader, the completeness check) moves it aside whole
(``ParquetLake.quarantine_file``), so every date it held leaves the lake, including dates the
current run was not asked to compute, which Dagster still shows as materialized. The lake records
each such loss here (per lake root, in this process); the step that owns the table
(``platform_assets.symbol_days.SymbolDayStep`` with ``heals=``) takes the records of its tables and
re-computes those dates in the same run, so a partial-range re-run over a corrupt month does not
leave the month's other dates gone behind a green status.

``dates`` is what the file's footer listed; ``None`` when the footer itself did not read (a torn
file): the step then asks Dagster which of the month's dates were materialized.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass

MAX_RECORDS = 10_000  # per lake root: a long-lived reader (the HTTP service) never grows without bound


@dataclass(frozen=True)
class LostDates:
    """Dates of (table, symbol) that left the lake with the file moved to ``moved_to``."""

    table: str  # str(lake Table), e.g. "curated_bars" or "features/bar_features/version=v1"
    symbol: str
    month: str  # YYYY-MM of the file
    dates: frozenset[dt.date] | None  # None: the file's footer did not say
    moved_to: str


_LOCK = threading.Lock()
_RECORDS: dict[str, collections.deque] = {}


def record(root: str, lost: LostDates) -> None:
    with _LOCK:
        _RECORDS.setdefault(root, collections.deque(maxlen=MAX_RECORDS)).append(lost)


def take(root: str, tables: Iterable[str] | None = None, symbols: Iterable[str] | None = None) -> list[LostDates]:
    """Remove and return the records of ``tables`` and ``symbols`` (all when None) under ``root``."""
    tables = None if tables is None else set(tables)
    symbols = None if symbols is None else set(symbols)

    def wanted(lost: LostDates) -> bool:
        return (tables is None or lost.table in tables) and (symbols is None or lost.symbol in symbols)

    with _LOCK:
        records = _RECORDS.get(root)
        if not records:
            return []
        taken = [r for r in records if wanted(r)]
        if taken:
            kept = [r for r in records if not wanted(r)]
            records.clear()
            records.extend(kept)
        return taken
