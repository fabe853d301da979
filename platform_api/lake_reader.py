"""Locating the lake files a request needs, and querying exactly those files with DuckDB.

Requests name symbols and a time range, so the file list is computed from the hive layout
(``symbol=X/date=D/part.parquet``) instead of globbing the whole table: a query over 50 symbols x
1 year opens only those 12,600 files, however large the lake grows.

The files a reader resolves stay valid until it has read them: resolving a table's files takes
that table's shared layout lock (``ParquetLake.reading``), held until the reader's ``query`` or
outermost ``connect`` block ends (or the reader is garbage-collected), so compaction never removes
or merges a file between resolution and reading (README "Reliability").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from resources.lake import CorruptLakeFileError, ParquetLake, Table, layout_files, symbol_layout
from resources.read_copy import ReadCopy, usable_read_copy
from resources.settings import PlatformSettings, get_settings


_QUOTED_PATH = re.compile(r'"(/[^"]+)"|\'(/[^\']+)\'')  # paths DuckDB names in its read errors


@dataclass(frozen=True)
class SymbolSources:
    """Where one symbol's rows of a request are: every Parquet file holding its days (oldest
    first) and, when valid, the read copy standing for some of them."""

    all_files: list[Path]
    read_copy: ReadCopy | None

    @property
    def files(self) -> list[Path]:
        """The files to read besides the read copy (all of them without one)."""
        if self.read_copy is None:
            return self.all_files
        return [f for f in self.all_files if str(f) not in self.read_copy.files]

    @property
    def empty(self) -> bool:
        return not self.all_files


class LakeReader:
    """Read-only access to the lake of one settings object."""

    def __init__(self, settings: PlatformSettings | None = None, threads: int = 2):
        self._locks = ExitStack()
        self.settings = settings or get_settings()
        self.lake = ParquetLake(base_path=str(self.settings.base_path), fsync=False)
        self.threads = threads
        self._locked: set[str] = set()
        self._depth = 0

    def _hold(self, table: Table) -> None:
        """Take ``table``'s shared layout lock (once) until ``release``."""
        if str(table) not in self._locked:
            self._locks.enter_context(self.lake.reading(table))
            self._locked.add(str(table))

    def release(self) -> None:
        """Release the layout locks this reader holds (its resolved files may then change)."""
        self._locks.close()
        self._locked.clear()

    def __del__(self) -> None:
        self.release()

    def files(self, table: Table, symbols: Iterable[str], days: Iterable[dt.date]) -> dict[str, list[Path]]:
        """Existing files per symbol holding the days, oldest first: day files, or one compacted
        month file for a whole closed month (it may hold other days: queries filter on ``ts``)."""
        wanted = set(days)
        with self._resolving(table):
            return {symbol: layout_files(symbol_layout(self.lake.table_dir(table) / f"symbol={symbol}"), wanted) for symbol in symbols}

    def sources(self, table: Table, symbols: Iterable[str], days: Iterable[dt.date]) -> dict[str, SymbolSources]:
        """Like ``files``, but a symbol's closed months come from its read copy when it has a valid
        one (``resources.read_copy``): the files listed are then only those the copy does not cover."""
        wanted = set(days)
        out = {}
        with self._resolving(table):
            for symbol in symbols:
                folder = self.lake.table_dir(table) / f"symbol={symbol}"
                layout = symbol_layout(folder)
                files = layout_files(layout, wanted)
                copy = usable_read_copy(folder, layout) if files and self.settings.lake_read_copies else None
                if copy is not None and not wanted & copy.dates:
                    copy = None
                out[symbol] = SymbolSources(files, copy)
        return out

    def stored_dates(self, table: Table, symbol: str) -> list[dt.date]:
        with self._resolving(table):
            return sorted(symbol_layout(self.lake.table_dir(table) / f"symbol={symbol}"))

    def day_file(self, table: Table, symbol: str, day: dt.date) -> Path | None:
        with self._resolving(table):
            return self.lake.day_source(table, symbol, day)

    @contextmanager
    def _resolving(self, table: Table) -> Iterator[None]:
        """Hold ``table``'s layout lock for the files resolved in the block; on an error (e.g. a
        corrupt file, named in the message) release everything, as a traceback may keep the
        reader alive for a long time. A file whose footer does not read (a torn month file met
        while resolving) is quarantined like one DuckDB fails on (``_quarantine_named_files``)."""
        self._hold(table)
        try:
            yield
        except CorruptLakeFileError as error:
            self.release()
            self._quarantine(error.path, error.reason, error)
            raise
        except BaseException:
            self.release()
            raise

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory connection pinned to UTC (timestamps never shift to the machine's zone)."""
        conn = duckdb.connect(":memory:", config={"threads": self.threads})
        conn.execute("SET TimeZone = 'UTC'")  # (a connect-time config setting cannot load ICU first)
        self._depth += 1
        failed = None
        try:
            yield conn
        except duckdb.Error as error:
            failed = error
            raise
        finally:
            conn.close()
            self._depth -= 1
            if self._depth == 0:
                self.release()
                if failed is not None:
                    self._quarantine_named_files(failed)

    def _quarantine_named_files(self, error: duckdb.Error) -> None:
        """A query failed on a corrupt lake file (DuckDB names it): move it aside and record its
        dates as lost (``ParquetLake.quarantine_if_corrupt``), then raise ``CorruptLakeFileError``
        saying so. Called with no layout lock held (quarantining takes the table's exclusive lock)."""
        for name in dict.fromkeys(_QUOTED_PATH.findall(str(error))):
            path = Path(name[0] or name[1])
            if path.suffix == ".parquet":
                self._quarantine(path, str(error).splitlines()[0][:300], error)

    def _quarantine(self, path: Path, reason: str, error: BaseException) -> None:
        """Move ``path`` aside when it is a lake table's file that does not decode (its dates go to
        the lost-dates journal) and raise ``CorruptLakeFileError`` saying so; nothing when it
        reads (or is gone). Needs no layout lock held by this reader."""
        moved = self.lake.quarantine_if_corrupt(path)
        if moved is not None:
            raise CorruptLakeFileError(path, f"{reason}; moved to {moved}: the next run of its asset re-computes the dates it held") from error

    def query(self, sql: str, params: dict) -> pd.DataFrame:
        with self.connect() as conn:
            return frame(conn, sql, params)

    def query_arrow(self, sql: str, params: dict) -> pa.Table:
        """A query result as Arrow, time stamps as UTC (``utc_arrow``)."""
        with self.connect() as conn:
            return utc_arrow(conn, sql, params)


def calendar_days(start: pd.Timestamp, end: pd.Timestamp) -> list[dt.date]:
    """Partition dates that can hold rows of ``[start, end)`` (a day of slack for time zones)."""
    first = (start - pd.Timedelta(days=1)).date()
    last = end.date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def quote_identifier(name: str) -> str:
    """A column name quoted for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def parquet_list(paths: Iterable[Path]) -> list[str]:
    return [str(p) for p in paths]


def utc_arrow(conn: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pa.Table:
    """A query result as Arrow, zoned time stamps in UTC (the connection's zone is UTC already)."""
    table = conn.sql(sql, params=params).to_arrow_table()
    schema = pa.schema(
        [f.with_type(pa.timestamp(f.type.unit, "UTC")) if pa.types.is_timestamp(f.type) and f.type.tz else f for f in table.schema]
    )
    return table.cast(schema)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas without consolidating columns into blocks (no second copy of the data)."""
    return table.to_pandas(split_blocks=True, self_destruct=True)


def frame(conn: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    """A query result as pandas via Arrow, time stamps as UTC (``.df()`` drops the zone of *_NS)."""
    return to_pandas(utc_arrow(conn, sql, params))
