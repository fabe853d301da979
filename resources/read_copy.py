"""Read copies: the closed months of one (feature or label table, symbol) as one Arrow IPC file.

A training pull reads millions of feature rows. From Parquet month files (one per symbol and
month) most of its time goes to per-file and per-row-group work and to decoding pages; the same
rows as one uncompressed Arrow IPC file per symbol are memory-mapped and handed to pandas with no
decoding at all (README "Retrieval": 50 symbols x 252 sessions, measured against ArcticDB).

The Parquet files stay the source of truth; a read copy is a cache that proves its own validity.
Its footer lists the month files it was built from with their identity (inode, size, mtime): a
reader uses it only while every one of them is unchanged and no other file holds a date inside
its range (``usable_read_copy``). A rewritten month (a re-run, a repaired day, a deletion)
silently retires the copy for that symbol until the next build; nothing is ever served stale and
no writer has to know read copies exist. Copies are built by the compaction job for closed months
(``build_read_copy``, under the (table, symbol) lock every writer holds, so the month files cannot
change while they are read), written atomically (temp file + rename), and cost about as much disk
as the Parquet files they copy.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from resources.atomic import atomic_write
from resources.lake import MONTH_PREFIX, PART_FILE, ParquetLake, Table

READ_COPY_FILE = "read_copy.arrow"
SOURCES_KEY = b"platform.read_copy.sources"  # {month folder: [inode, size, mtime_ns]} of the files copied
DATES_KEY = b"platform.read_copy.dates"  # the dates those files held (comma-separated ISO dates)
SESSIONS_KEY = b"platform.read_copy.sessions"  # [[day number, first row], ...]: runs of the `date` column


def _identity(path: Path | str) -> list[int]:
    stat = os.stat(path)
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def read_copy_path(symbol_dir: Path) -> Path:
    return symbol_dir / READ_COPY_FILE


def closed_month_files(symbol_dir: Path, before_month: str) -> list[Path]:
    """The month files of a symbol folder for months before ``before_month`` (YYYY-MM), oldest first."""
    if not symbol_dir.exists():
        return []
    folders = sorted(p for p in symbol_dir.iterdir() if p.name.startswith(MONTH_PREFIX) and p.name[len(MONTH_PREFIX):] < before_month)
    return [folder / PART_FILE for folder in folders if (folder / PART_FILE).exists()]


def _open_copy(path: Path) -> tuple[pa.ipc.RecordBatchFileReader, dict] | None:
    """A copy's reader and footer metadata (rows and footer from one open file), or None when
    there is none or it is unreadable."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
    except (OSError, pa.ArrowException):
        return None
    return reader, reader.schema.metadata or {}


def _recorded_sources(path: Path) -> dict[str, list[int]] | None:
    opened = _open_copy(path)
    raw = opened[1].get(SOURCES_KEY) if opened else None
    return json.loads(raw) if raw else None


def _current_sources(files: list[Path]) -> dict[str, list[int]]:
    return {path.parent.name: _identity(path) for path in files}


def _time_ordered(table: pa.Table) -> pa.Table:
    """Rows in ``ts`` order (month files are; a copy is sliced by binary search on ``ts``)."""
    if table.num_rows < 2:
        return table
    ts = table.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
    if bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.sort_by([("ts", "ascending")])


def _session_runs(rows: pa.Table) -> list[list[int]] | None:
    """[day number, first row] of each run of the ``date`` column, or None when the dates are not
    in order (the reader then computes sessions from the rows)."""
    if "date" not in rows.column_names or not rows.num_rows:
        return None
    days = rows.column("date").cast(pa.date32()).combine_chunks().cast(pa.int32()).to_numpy()
    if not bool(np.all(days[1:] >= days[:-1])):
        return None
    starts = np.flatnonzero(np.diff(days, prepend=days[0] - 1))
    return [[int(days[i]), int(i)] for i in starts]


def build_read_copy(lake: ParquetLake, table: Table, symbol: str, before_month: str) -> int | None:
    """(Re)build the read copy of (table, symbol) from its month files before ``before_month``.

    Returns the rows written, 0 when the copy was already up to date, None when there is nothing
    to copy (an outdated copy is then removed). A corrupt month file is quarantined by the lake and
    left out; the copy then records only the files it read.
    """
    symbol_dir = lake.symbol_dir(table, symbol)
    target = read_copy_path(symbol_dir)
    with lake._symbol_lock(table, symbol):  # writers of (table, symbol) hold it for their whole write
        files = closed_month_files(symbol_dir, before_month)
        sources = _current_sources(files)
        if sources and target.exists() and _recorded_sources(target) == sources:
            return 0
        parts, read, dates = [], [], set()
        for path in files:
            month = path.parent.name[len(MONTH_PREFIX):]
            rows, held = lake._month_table(table, symbol, month)  # quarantines a corrupt file
            if rows is not None:
                parts.append(rows)
                read.append(path)
                dates |= held
        if not parts:
            target.unlink(missing_ok=True)
            return None
        rows = _time_ordered(pa.concat_tables(parts, promote_options="default").replace_schema_metadata(None))
        metadata = {
            SOURCES_KEY: json.dumps(_current_sources(read)).encode(),
            DATES_KEY: ",".join(d.isoformat() for d in sorted(dates)).encode(),
        }
        runs = _session_runs(rows)
        if runs is not None:
            metadata[SESSIONS_KEY] = json.dumps(runs).encode()
        rows = rows.replace_schema_metadata(metadata)

        def _write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
                writer.write_table(rows, max_chunksize=max(rows.num_rows, 1))

        atomic_write(target, _write, fsync=lake.fsync)
        return rows.num_rows


def build_read_copies(lake: ParquetLake, table: Table, before_month: str) -> dict[str, int]:
    """Build every symbol's read copy of ``table``; rows written per symbol (up-to-date ones omitted)."""
    root = lake.table_dir(table)
    out = {}
    for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
        written = build_read_copy(lake, table, symbol_dir.name.split("=", 1)[1], before_month)
        if written:
            out[symbol_dir.name.split("=", 1)[1]] = written
    return out


def remove_read_copies(lake: ParquetLake, table: Table) -> int:
    """Delete every read copy of ``table`` (read copies switched off); returns how many."""
    root = lake.table_dir(table)
    removed = 0
    for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
        with lake._symbol_lock(table, symbol_dir.name.split("=", 1)[1]):
            path = read_copy_path(symbol_dir)
            if path.exists():
                path.unlink()
                removed += 1
    return removed


@functools.lru_cache(maxsize=4096)
def _footer(sources: bytes, dates: bytes, sessions: bytes | None) -> tuple[dict[str, list[int]], frozenset, np.ndarray | None]:
    """A copy's recorded sources, dates and session runs, parsed once per footer seen (pulls repeat them)."""
    runs = np.array(json.loads(sessions), dtype=np.int64).reshape(-1, 2) if sessions else None
    return json.loads(sources), frozenset(dt.date.fromisoformat(d) for d in dates.decode().split(",") if d), runs


@dataclass(frozen=True)
class ReadCopy:
    """A validated read copy: its rows (memory-mapped), the dates it holds and the paths (str) of
    the month files it stands for."""

    rows: pa.Table
    dates: frozenset
    files: frozenset
    session_runs: np.ndarray | None = None  # [[day number, first row], ...] from the footer

    def time_slice(self, start_ns: int, end_ns: int) -> tuple[pa.Table, np.ndarray | None]:
        """Rows with ``start <= ts < end`` (a zero-copy slice: rows are in ``ts`` order) and the
        session day numbers (days since 1970) they hold (None when the footer has no runs)."""
        ts = self.rows.column("ts")
        ts = ts.chunk(0) if ts.num_chunks == 1 else ts.combine_chunks()
        if ts.type.unit != "ns":  # compared with nanosecond bounds
            ts = ts.cast(pa.timestamp("ns", ts.type.tz))
        values = ts.cast(pa.int64()).to_numpy()
        lo, hi = (int(i) for i in np.searchsorted(values, [start_ns, end_ns], side="left"))
        sessions = None
        if self.session_runs is not None:
            firsts = self.session_runs[:, 1]
            lasts = np.append(firsts[1:], self.rows.num_rows)  # runs are never empty
            sessions = self.session_runs[(firsts < hi) & (lasts > lo), 0]
        return self.rows.slice(lo, hi - lo), sessions


def usable_read_copy(symbol_dir: Path, layout: dict[dt.date, Path]) -> ReadCopy | None:
    """The symbol's read copy if it still stands for the stored data, else None.

    Valid when every month file it was built from is unchanged (same inode, size and mtime) and
    no other stored file (a day file, a later-built month) holds a date inside its date range, so
    rows from the copy followed by rows from the other files stay in time order. The footer and
    the rows come from one open file (a rebuild renaming a new copy in place cannot mix them).
    """
    current = _current_copy(symbol_dir)
    if current is None:
        return None
    reader, dates, runs, files = current
    first, last = min(dates), max(dates)
    if {day for day in layout if first <= day <= last} != dates:
        return None  # another file holds a date inside the copy's range (month files win over day files)
    try:
        rows = reader.read_all()
    except (OSError, pa.ArrowException):
        return None
    if runs is not None and (not len(runs) or runs[-1, 1] >= rows.num_rows):
        runs = None  # inconsistent with the rows: sessions are computed from them instead
    return ReadCopy(rows=rows, dates=dates, files=frozenset(files), session_runs=runs)


def _current_copy(symbol_dir: Path) -> tuple[pa.ipc.RecordBatchFileReader, frozenset, np.ndarray | None, list[str]] | None:
    """The symbol's read copy (reader, dates, session runs, paths of its month files) while every
    month file it was built from is unchanged (same inode, size and mtime); else None."""
    opened = _open_copy(read_copy_path(symbol_dir))
    if opened is None:
        return None  # none, or unreadable (the next build replaces it): the Parquet files answer
    reader, metadata = opened
    if SOURCES_KEY not in metadata or DATES_KEY not in metadata:
        return None
    recorded, dates, runs = _footer(metadata[SOURCES_KEY], metadata[DATES_KEY], metadata.get(SESSIONS_KEY))
    if not recorded or not dates:
        return None
    files = {name: os.path.join(str(symbol_dir), name, PART_FILE) for name in recorded}
    try:
        if any(_identity(path) != recorded[name] for name, path in files.items()):
            return None  # a month was rewritten, merged into or removed since the build
    except FileNotFoundError:
        return None
    return reader, dates, runs, list(files.values())


def read_copy_summary(symbol_dir: Path) -> tuple[int, frozenset] | None:
    """Rows and dates of the symbol's read copy while it still stands for the month files it was
    built from; None when there is none or it went stale. Memory-mapped: no row data is read (for
    coverage reports)."""
    try:
        current = _current_copy(symbol_dir)
        if current is None:
            return None
        reader, dates, _, _ = current
        return sum(reader.get_batch(index).num_rows for index in range(reader.num_record_batches)), dates
    except (OSError, pa.ArrowException):
        return None
