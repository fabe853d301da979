"""Level-2 snapshot files in the TF_1 contract layout (DESIGN.md, "Data contracts").

``{base}/{LEVEL2_DIRNAME}/{SYMBOL}/{YYYY-MM-DD}_snapshots_{HHMMSS}.parquet`` (live capture and the
offline source, which mimics a live capture started at the session open) and
``{YYYY-MM-DD}_snapshots_databento.parquet`` (historical backfill). Every file carries a ``source``
column. Reading a day merges that day's files: real sources (live, databento) win over simulated
data, and snapshots are de-duplicated on ``timestamp``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from resources.atomic import atomic_write, sweep_stale_temp_files
from resources.file_memory import MEMORY_TTL_SECONDS, FileMemory, files_identity, write_and_identify
from resources.lake import corrupt_file_name, parquet_file_ok, read_parquet_checked
from resources.parquet_format import compressed_options
from resources.schemas import DEFAULT_LEVELS, L2Book
from resources.validation import normalize_symbol

SIM_SOURCE = "sim"
_DAY_LEN, _MIDDLE, _EXTENSION = len("YYYY-MM-DD"), "_snapshots_", ".parquet"  # {day}_snapshots_{suffix}.parquet
_MIN_NAME = _DAY_LEN + len(_MIDDLE) + len(_EXTENSION)
_SUFFIX_RE = re.compile(r"^(?:[0-2]\d[0-5]\d[0-5]\d|databento)$")
TOP_OF_BOOK_CACHE_BYTES = 512 * 2**20  # ~16k symbol-days of 30-second snapshots (~31 KB each)
WRITTEN_BOOKS_CACHE_BYTES = 384 * 2**20  # ~1.5k symbol-days of 30-second 10-level books (~250 KB each)


class _BookMemory(FileMemory):
    """Books of L2 days by their files as on disk (``resources.file_memory``); ``view`` makes what a
    caller gets (its own copy: callers may write into theirs). Two of them, process-wide:

    * ``TOP_OF_BOOK``: the top of book (level 0) of the days read. Curation and alignment read only
      the top of book of the days the L2 features (or one of them) read in full just before in the
      same run: this saves them reading and decoding the day files again (~1 ms per symbol-day each).
    * ``WRITTEN_BOOKS``: the full book of the days this process wrote (``L2SnapshotStore.write``),
      as reading the file back gives it: the L2 features of the same run read them from memory."""

    def __init__(self, budget: int, ttl_seconds: float = MEMORY_TTL_SECONDS, view=None):
        super().__init__(budget, ttl_seconds)
        self.view = view or top_of_book

    def get(self, key: tuple) -> tuple[L2Book, list[str]] | None:
        entry = super().get(key)
        return None if entry is None else (self.view(entry[0]), list(entry[1]))

    def put(self, key: tuple, book: L2Book, sources: list[str]) -> None:
        super().put(key, (book, list(sources)), sum(getattr(book, name).nbytes for name in _BOOK_ARRAYS))


_BOOK_ARRAYS = ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes")


def set_aside(path: Path) -> Path:
    """Move an unreadable day file to ``<name>.<UTC stamp>.corrupt`` beside it (never deleted;
    readers list only ``*.parquet``); returns where."""
    target = path.with_name(corrupt_file_name(path.name))
    os.replace(path, target)
    return target


def top_of_book(book: L2Book) -> L2Book:
    """Level 0 of ``book`` (own arrays, not views into the full book)."""
    return L2Book(book.timestamp.copy(), *(getattr(book, name)[:, :1].copy() for name in _BOOK_ARRAYS[1:]))


def copy_of_book(book: L2Book) -> L2Book:
    return L2Book(*(getattr(book, name).copy() for name in _BOOK_ARRAYS))


TOP_OF_BOOK = _BookMemory(TOP_OF_BOOK_CACHE_BYTES, view=top_of_book)
WRITTEN_BOOKS = _BookMemory(WRITTEN_BOOKS_CACHE_BYTES, view=copy_of_book)


_ALIASED: set[str] = set()


def ensure_level2_alias(level2_path: str | Path) -> None:
    """Under ``ML_BASE_PATH`` the L2 folder is the guide's ``Level2`` (``LEVEL2_DIRNAME``'s default)
    while its data contract writes ``${DATA_PATH_OVERRIDE or ML_BASE_PATH}/level2/{SYMBOL}/``: a
    ``level2`` symlink to ``Level2`` beside it makes both spellings the same files (nothing when
    ``level2`` exists, e.g. on a case-insensitive disk, or the folder has another name). Once per
    process and folder; a failure (read-only base) only means no alias."""
    folder = Path(level2_path)
    if str(folder) in _ALIASED or folder.name != "Level2":
        return
    alias = folder.parent / "level2"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if not alias.exists() and not alias.is_symlink():
            alias.symlink_to(folder.name, target_is_directory=True)
        _ALIASED.add(str(folder))
    except OSError:
        pass


class L2SnapshotStore(dg.ConfigurableResource):
    """Writes and reads L2 snapshot files under the level2 folder."""

    level2_path: str
    levels: int = DEFAULT_LEVELS
    fsync: bool = True

    def symbol_dir(self, symbol: str) -> Path:
        return Path(self.level2_path) / normalize_symbol(symbol)

    def snapshot_path(self, symbol: str, day: dt.date, suffix: str) -> Path:
        if not _SUFFIX_RE.match(suffix):
            raise ValueError(f"invalid snapshot file suffix {suffix!r}: expected HHMMSS or 'databento'")
        return self.symbol_dir(symbol) / f"{day.isoformat()}{_MIDDLE}{suffix}{_EXTENSION}"

    def day_files(self, symbol: str, day: dt.date) -> list[Path]:
        folder = self.symbol_dir(symbol)
        return sorted(folder.glob(f"{day.isoformat()}{_MIDDLE}*{_EXTENSION}")) if folder.exists() else []

    def day_index(self, symbol: str) -> "L2DayIndex":
        """The symbol's snapshot files by ISO date (each list sorted, as ``day_files`` gives it) from
        one folder listing: a reader of many days lists the folder once instead of once per day
        (a listing costs ~0.7 ms at 5 years of files)."""
        folder = self.symbol_dir(symbol)
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            names = []
        by_day: dict[str, list[str]] = {}
        for name in names:  # the names day_files' glob "{day}_snapshots_*.parquet" matches
            if len(name) >= _MIN_NAME and name.startswith(_MIDDLE, _DAY_LEN) and name.endswith(_EXTENSION):
                by_day.setdefault(name[:_DAY_LEN], []).append(name)
        return L2DayIndex(folder, by_day)

    def write(self, symbol: str, day: dt.date, book: L2Book, *, suffix: str, source: str, sweep: bool = True) -> Path:
        """Atomically write one snapshot file (replacing a file of the same name). ``sweep=False``:
        the caller ran ``sweep_temp_files(symbol)`` before its writes (the folder holds a file per
        day: listing it at every write grows with the history)."""
        if book.levels != self.levels:
            raise ValueError(f"book has {book.levels} levels, the contract needs {self.levels}")
        table = book.to_arrow(extra={"source": source})
        target = self.snapshot_path(symbol, day, suffix)
        ensure_level2_alias(self.level2_path)
        if target.exists() and not parquet_file_ok(target):
            set_aside(target)  # garbage at the target (torn, foreign bytes): kept beside it, not overwritten
        path, identity = write_and_identify(
            atomic_write, target, lambda tmp: pq.write_table(table, tmp, **compressed_options(table.schema, table.num_rows)),
            fsync=self.fsync, sweep=sweep,
        )
        if identity is not None:  # the file at the target is still ours: the L2 features of this run read it from memory
            WRITTEN_BOOKS.put((identity,), *(_as_read_back(book, source) or self._book_of_tables([table])))
        return path

    def sweep_temp_files(self, symbol: str) -> list[Path]:
        """Remove the temp files crashed writers left in the symbol's folder (never a live writer's)."""
        return sweep_stale_temp_files(self.symbol_dir(symbol))

    def write_stream(self, symbol: str, day: dt.date, books, *, suffix: str, source: str, metadata: dict | None = None) -> tuple[Path | None, int]:
        """Atomically write a day's snapshots arriving in pieces (bounded memory). No file for 0 rows.

        ``metadata``: extra key-value pairs for the file's schema metadata (e.g. ``l2_sampling``);
        the columns stay the contract's."""
        target = self.snapshot_path(symbol, day, suffix)
        rows = 0
        books = iter(books)
        first = next((book for book in books if len(book)), None)  # no folder, no temp file before the first snapshot
        if first is None:
            return None, 0

        def write(tmp: Path) -> None:
            nonlocal rows
            writer = None
            try:
                for book in itertools.chain([first], books):
                    if len(book) == 0:
                        continue
                    if book.levels != self.levels:
                        raise ValueError(f"book has {book.levels} levels, the contract needs {self.levels}")
                    table = book.to_arrow(extra={"source": source})
                    if writer is None:
                        schema = table.schema.with_metadata({**(table.schema.metadata or {}), **metadata}) if metadata else table.schema
                        writer = pq.ParquetWriter(tmp, schema, **compressed_options(schema))
                    writer.write_table(table)
                    rows += len(book)
            finally:
                if writer is not None:
                    writer.close()
            if rows == 0:
                raise _NothingToWrite

        ensure_level2_alias(self.level2_path)
        try:
            atomic_write(target, write, fsync=self.fsync)
        except _NothingToWrite:
            return None, 0
        return target, rows

    def read_day(self, symbol: str, day: dt.date, index: Mapping[str, Sequence[Path]] | None = None) -> tuple[L2Book, list[str]]:
        """All snapshots of a (symbol, day), oldest first, and the sources they came from.

        ``index``: the symbol's ``day_index`` when reading many of its days (no listing per day)."""
        return self._read_and_remember(self._files_of(symbol, day, index))

    def read_day_top(self, symbol: str, day: dt.date, index: Mapping[str, Sequence[Path]] | None = None) -> tuple[L2Book, list[str]]:
        """``read_day`` with only the top of book (level 0 of each side): what curation and
        alignment use. Served from memory when this process read the same files lately."""
        files = self._files_of(symbol, day, index)
        if not files:
            return L2Book.empty(1), []
        key = files_identity(files)
        cached = TOP_OF_BOOK.get(key) if key is not None else None
        if cached is not None:
            return cached
        book, sources = self._read_and_remember(files)
        return top_of_book(book), sources  # its own copy, not the one remembered

    def _files_of(self, symbol: str, day: dt.date, index: Mapping[str, Sequence[Path]] | None) -> Sequence[Path]:
        return self.day_files(symbol, day) if index is None else index.get(day.isoformat(), [])

    def _read_and_remember(self, files: Sequence[Path]) -> tuple[L2Book, list[str]]:
        """The day's book read from ``files`` (from memory when this process wrote them: the one
        file of ``write``), its top of book remembered for ``read_day_top`` under the files as they
        were before the read."""
        key = files_identity(files)
        written = WRITTEN_BOOKS.get(key) if key is not None else None
        book, sources = written if written is not None else self._read_files(files)
        if key is not None and files:
            TOP_OF_BOOK.put(key, top_of_book(book), sources)
        return book, sources

    def _read_files(self, files: Sequence[Path]) -> tuple[L2Book, list[str]]:
        return self._book_of_tables([read_parquet_checked(path) for path in files])  # errors name the file

    def _book_of_tables(self, tables: Sequence[pa.Table]) -> tuple[L2Book, list[str]]:
        """The day's book from its files' tables: real sources win over simulated data, snapshots in
        time order, one per timestamp; and the sources it came from."""
        if not tables:
            return L2Book.empty(self.levels), []
        real = [t for t in tables if _source_of(t) != SIM_SOURCE]
        chosen = real or tables
        merged = pa.concat_tables([t.select(["timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"]) for t in chosen])
        book = L2Book.from_arrow(merged, self.levels)
        if len(book) > 1 and np.any(book.timestamp[1:] < book.timestamp[:-1]):
            book = book.take(np.argsort(book.timestamp, kind="stable"))  # files merged, or written out of order
        if len(book) > 1:
            keep = np.concatenate([[True], book.timestamp[1:] != book.timestamp[:-1]])
            if not keep.all():
                book = book.take(np.flatnonzero(keep))
        return book, sorted({_source_of(t) for t in chosen})


class L2DayIndex(Mapping[str, list[Path]]):
    """ISO date -> that day's snapshot files of one symbol folder (paths built when asked for)."""

    def __init__(self, folder: Path, names_by_day: dict[str, list[str]]):
        self._folder, self._names = folder, names_by_day

    def __getitem__(self, day: str) -> list[Path]:
        return [self._folder / name for name in self._names[day]]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _NothingToWrite(Exception):
    pass


def _as_read_back(book: L2Book, source: str) -> tuple[L2Book, list[str]] | None:
    """What reading back the file ``write`` made of ``book`` gives (``_book_of_tables`` of its
    table), straight from the arrays (copies, in the file's types): ~0.3 ms per day less than
    decoding the Arrow table again. None when that read would reorder or drop snapshots (stamps not
    strictly increasing) or the book is empty: the caller decodes the table then."""
    stamps = book.timestamp
    if len(book) == 0 or (len(book) > 1 and not bool(np.all(stamps[1:] > stamps[:-1]))):
        return None
    copied = L2Book(
        stamps.astype("datetime64[ns]", copy=True),
        book.bid_prices.astype(np.float64, copy=True),
        book.bid_sizes.astype(np.int64, copy=True),
        book.ask_prices.astype(np.float64, copy=True),
        book.ask_sizes.astype(np.int64, copy=True),
    )
    return copied, [source]


def _source_of(table: pa.Table) -> str:
    if "source" in table.column_names and table.num_rows:
        return str(table.column("source")[0].as_py())
    return "unknown"
