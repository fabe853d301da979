"""Batched writes of derived lake partitions: one file per (symbol, month) instead of one per day.

A ranged run writes hundreds of (symbol, date) partitions per table; written one by one, each is a
Parquet file of ~390 rows whose open / footer / rename cost far exceeds its data. Inside
``ParquetLake.batched_writes()`` the lake keeps each ``write_partition`` in memory (this buffer)
and writes it at the end of the scope, or when ``flush`` is asked for (the symbol-day step flushes
after each symbol), grouped per (table, symbol, month): a month with several new dates becomes one
month file (the compacted layout, footer listing its dates) in one locked read-modify-write; a
month with a single new date and no month file stays a day file, as before.

The buffer is per thread and per lake root, so the HTTP service's threads and other lakes never see
another scope's pending writes. Inside the scope the lake answers ``has_partition`` from the buffer
(read-your-writes), drops a pending write on ``delete_partition``, and flushes a (table, symbol)
before any read of it. Nothing is visible to other processes before the flush; a step reports its
partitions materialized only after flushing them (``platform_assets.symbol_days``), so a crash
mid-step loses only work that was never reported.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

MAX_PENDING_ROWS = 2_000_000  # a scope flushes everything once this many rows wait (bounded memory)
MAX_CACHED_FILES = 16  # month files a scope keeps read (a symbol-major step reads each once)

_STATE = threading.local()


@dataclass
class WriteBuffer:
    """Pending (table, symbol, date) -> rows of one batched-writes scope."""

    pending: dict = field(default_factory=lambda: defaultdict(dict))  # (table, symbol) -> {date: pa.Table}
    rows: int = 0
    depth: int = 0
    cache: OrderedDict = field(default_factory=OrderedDict)  # (path, identity, columns) -> pa.Table

    def cached_read(self, path, columns, read) -> pa.Table:
        """``read([path], columns)`` once per file version in this scope (a month file serves ~21
        per-day reads of a symbol-major step)."""
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size, tuple(columns) if columns else None)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        table = self.cache[key] = read([path], columns)
        while len(self.cache) > MAX_CACHED_FILES:
            self.cache.popitem(last=False)
        return table

    def put(self, table, symbol: str, day: dt.date, data: pa.Table) -> None:
        days = self.pending[(table, symbol)]
        if day in days:
            self.rows -= days[day].num_rows
        days[day] = data
        self.rows += data.num_rows

    def has(self, table, symbol: str, day: dt.date) -> bool:
        return day in self.pending.get((table, symbol), {})

    def drop(self, table, symbol: str, day: dt.date) -> bool:
        days = self.pending.get((table, symbol), {})
        if day not in days:
            return False
        self.rows -= days.pop(day).num_rows
        return True

    def take(self, table=None, symbol: str | None = None, days=None) -> list[tuple]:
        """Remove and return pending ((table, symbol), {date: rows}) groups matching the filters
        (``days``: only groups holding one of these dates)."""
        if table is not None and symbol is not None:  # the hot case (a read of one symbol): no scan
            keys = [(table, symbol)] if (table, symbol) in self.pending else []
        else:
            keys = [key for key in self.pending if (table is None or key[0] == table) and (symbol is None or key[1] == symbol)]
        wanted = [key for key in keys if self.pending[key] and (days is None or not self.pending[key].keys().isdisjoint(days))]
        out = [(key, self.pending.pop(key)) for key in wanted]
        self.rows -= sum(t.num_rows for _, group in out for t in group.values())
        return out


def current(root: str) -> WriteBuffer | None:
    """The open buffer of this thread for the lake at ``root`` (None outside a scope)."""
    return getattr(_STATE, "buffers", {}).get(root)


def open_scope(root: str) -> WriteBuffer:
    buffers = _STATE.__dict__.setdefault("buffers", {})
    buffer = buffers.setdefault(root, WriteBuffer())
    buffer.depth += 1
    return buffer


def close_scope(root: str) -> bool:
    """Leave one scope level; True when this was the outermost (the caller flushes then)."""
    buffer = _STATE.buffers[root]
    buffer.depth -= 1
    if buffer.depth == 0:
        del _STATE.buffers[root]
        return True
    return False


def by_month(days: dict) -> dict[str, dict]:
    """{date: rows} grouped per YYYY-MM, dates ascending."""
    months: dict[str, dict] = defaultdict(dict)
    for day in sorted(days):
        months[f"{day.year:04d}-{day.month:02d}"][day] = days[day]
    return months


class FlushError(RuntimeError):
    """Some pending partitions could not be written: ``failures`` maps (table, symbol, date) -> error."""

    def __init__(self, failures: dict[tuple, Exception]):
        self.failures = failures
        (table, symbol, day), first = next(iter(failures.items()))
        super().__init__(f"{len(failures)} partition(s) not written, first {table} {symbol}@{day}: {type(first).__name__}: {first}")


def concat_by_date(tables: list[pa.Table]) -> pa.Table:
    """Concatenate month-file parts and order rows by date (stable: a day keeps its own row order)."""
    tables = [t for t in tables if t.num_rows] or tables[:1]
    merged = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    if "date" in merged.column_names and merged.num_rows and not _dates_ascending(merged.column("date")):
        merged = merged.take(pc.sort_indices(merged, sort_keys=[("date", "ascending")]))
    return merged


def _dates_ascending(column: pa.ChunkedArray) -> bool:
    """Whether a date column is already in order (parts usually come date by date): no sort then."""
    days = column.cast(pa.date32()).cast(pa.int32()).to_numpy()
    return bool(len(days) < 2 or (days[1:] >= days[:-1]).all())
