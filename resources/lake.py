"""The Parquet lake: system of record, one folder per table, hive-style partition folders.

Layout under ``{base}/lake``::

    raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-20240103T000102Z-<hash>.parquet  (append-only)
    curated_bars/symbol=AAPL/date=2024-01-02/part.parquet                                 (replaced)
    features/bar_features/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    labels/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    quarantine/raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-....parquet

Derived tables hold one ``part.parquet`` per (symbol, date), replaced atomically on re-run, so a
re-run never duplicates rows. Closed months of a derived table can be *compacted* into one file per
(symbol, month), ``symbol=S/month=YYYY-MM/part.parquet``, whose footer lists the dates it holds
(``platform.dates``): readers open 1 file instead of ~21. Every method here understands both
layouts; writing or deleting a date of a compacted month rewrites the month file, so a date lives
in exactly one file (after a crash mid-compaction the month file wins over leftover day files). Raw batches are fsynced (the system of record); derived files are
only renamed atomically, since they can always be rebuilt from raw. Raw tables are append-only: a batch is written once under a content
hash (``batch_id``); re-ingesting identical data writes nothing, changed vendor data adds a batch
and readers take the newest batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from resources.atomic import TMP_PREFIX, write_parquet_atomic
from resources.validation import normalize_symbol

PART_FILE = "part.parquet"
BATCH_PREFIX = "batch-"


@dataclass(frozen=True)
class Table:
    """A lake table: a name (may contain ``/``) plus fixed hive dimensions such as source/version."""

    name: str
    dims: tuple[tuple[str, str], ...] = ()

    def relative_dir(self) -> Path:
        path = Path(*self.name.split("/"))
        for key, value in self.dims:
            path = path / f"{key}={value}"
        return path

    def __str__(self) -> str:
        return "/".join([self.name, *(f"{k}={v}" for k, v in self.dims)])


def raw_bars_table(source: str) -> Table:
    return Table("raw_bars", (("source", source),))


def quarantine_table(table: Table) -> Table:
    return Table(f"quarantine/{table.name}", table.dims)


def feature_table(group: str, version: str) -> Table:
    return Table(f"features/{group}", (("version", version),))


def labels_table(version: str) -> Table:
    return Table("labels", (("version", version),))


MONTH_PREFIX = "month="
DATES_KEY = b"platform.dates"
LOCK_FILE = ".lock"


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@functools.lru_cache(maxsize=65536)
def _month_dates_cached(path: str, mtime_ns: int) -> frozenset:
    metadata = pq.read_schema(path).metadata or {}
    text = metadata.get(DATES_KEY, b"").decode()
    return frozenset(dt.date.fromisoformat(d) for d in text.split(",") if d)


def month_file_dates(path: Path) -> frozenset:
    """The dates a compacted month file holds (from its footer; cached per file version)."""
    try:
        return _month_dates_cached(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return frozenset()


def symbol_layout(symbol_dir: Path) -> dict[dt.date, Path]:
    """Every stored date of one symbol's folder and the file holding it (month file wins)."""
    layout: dict[dt.date, Path] = {}
    months = []
    try:
        entries = list(os.scandir(symbol_dir))
    except FileNotFoundError:
        return layout
    for entry in entries:
        if entry.name.startswith("date=") and os.path.exists(os.path.join(entry.path, PART_FILE)):
            layout[dt.date.fromisoformat(entry.name[5:])] = Path(entry.path) / PART_FILE
        elif entry.name.startswith(MONTH_PREFIX) and os.path.exists(os.path.join(entry.path, PART_FILE)):
            months.append(Path(entry.path) / PART_FILE)
    for path in months:
        for day in month_file_dates(path):
            layout[day] = path
    return layout


def layout_files(layout: dict[dt.date, Path], days: set | None = None) -> list[Path]:
    """The files of a ``symbol_layout`` holding ``days`` (all when None), in date order, each once."""
    return list(dict.fromkeys(layout[day] for day in sorted(layout) if days is None or day in days))


CURATED_BARS = Table("curated_bars")
ALIGNED_BARS = Table("aligned_bars")


def content_hash(frame: pd.DataFrame, *identity: str) -> str:
    """Deterministic 16-hex-digit hash of a frame's values (and identity strings)."""
    digest = hashlib.sha256("|".join(identity).encode())
    if len(frame):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


class ParquetLake(dg.ConfigurableResource):
    """Reads and writes lake tables as Parquet files (atomic temp file + rename)."""

    base_path: str
    fsync: bool = True

    @property
    def root(self) -> Path:
        return Path(self.base_path) / "lake"

    # ----------------------------------------------------------------- paths
    def table_dir(self, table: Table) -> Path:
        return self.root / table.relative_dir()

    def partition_dir(self, table: Table, symbol: str, day: dt.date) -> Path:
        return self.table_dir(table) / f"symbol={normalize_symbol(symbol)}" / f"date={day.isoformat()}"

    # ------------------------------------------------------ replaced partitions
    def symbol_dir(self, table: Table, symbol: str) -> Path:
        return self.table_dir(table) / f"symbol={normalize_symbol(symbol)}"

    def month_file(self, table: Table, symbol: str, month: str) -> Path:
        return self.symbol_dir(table, symbol) / f"{MONTH_PREFIX}{month}" / PART_FILE

    @contextlib.contextmanager
    def _symbol_lock(self, table: Table, symbol: str):
        """Serialises writers of one (table, symbol) folder across processes (compaction vs writes)."""
        folder = self.symbol_dir(table, symbol)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def day_source(self, table: Table, symbol: str, day: dt.date) -> Path | None:
        """The file holding (symbol, day): its compacted month file, its day file, or None."""
        month = self.month_file(table, symbol, month_of(day))
        if month.exists() and day in month_file_dates(month):
            return month
        path = self.partition_dir(table, symbol, day) / PART_FILE
        return path if path.exists() else None

    def write_partition(
        self,
        table: Table,
        symbol: str,
        day: dt.date,
        data: pd.DataFrame | pa.Table,
        schema: pa.Schema | None = None,
        *,
        durable: bool = False,
    ) -> Path:
        """Replace the (symbol, date) partition of a derived table with ``data``.

        Always atomic (readers see the old or the new file). Derived tables can be rebuilt from
        raw, so they are fsynced only when ``durable``; raw batches always are (when ``fsync``).
        In a compacted month the month file is rewritten with the date's rows replaced.
        """
        fsync = self.fsync and durable
        month = self.month_file(table, symbol, month_of(day))
        if not month.exists():
            target = self.partition_dir(table, symbol, day) / PART_FILE
            return write_parquet_atomic(_to_arrow(data, schema), target, fsync=fsync)
        with self._symbol_lock(table, symbol):
            kept = _without_date(pq.read_table(month), day)
            new = _to_arrow(data, schema)
            merged = pa.concat_tables([kept, new], promote_options="default") if kept.num_rows else new
            _write_month(merged, month, month_file_dates(month) | {day}, fsync)
            (self.partition_dir(table, symbol, day) / PART_FILE).unlink(missing_ok=True)
        return month

    def has_partition(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Whether the (symbol, date) partition of a derived table is stored (either layout)."""
        return self.day_source(table, symbol, day) is not None

    def delete_partition(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Remove a derived partition (used when a re-run produces nothing for it)."""
        deleted = False
        path = self.partition_dir(table, symbol, day) / PART_FILE
        if path.exists():
            path.unlink()
            deleted = True
        month = self.month_file(table, symbol, month_of(day))
        if month.exists() and day in month_file_dates(month):
            with self._symbol_lock(table, symbol):
                dates = month_file_dates(month) - {day}
                if dates:
                    _write_month(_without_date(pq.read_table(month), day), month, dates, self.fsync)
                else:
                    month.unlink()
            deleted = True
        return deleted

    def compact_month(self, table: Table, symbol: str, month: str) -> int:
        """Merge the day files of (symbol, month) into its month file; returns the dates merged.

        Day rows replace month rows of the same date. The month file is written atomically before
        the day files are removed, so a crash leaves the data readable (the month file wins).
        """
        with self._symbol_lock(table, symbol):
            folder = self.symbol_dir(table, symbol)
            day_files = sorted(folder.glob(f"date={month}-*/{PART_FILE}"))
            if not day_files:
                return 0
            target = self.month_file(table, symbol, month)
            dates = set(month_file_dates(target))
            tables = []
            if target.exists():
                existing = pq.read_table(target)
                for path in day_files:
                    existing = _without_date(existing, dt.date.fromisoformat(path.parent.name[5:]))
                tables.append(existing)
            for path in day_files:
                tables.append(pq.read_table(path))
                dates.add(dt.date.fromisoformat(path.parent.name[5:]))
            merged = pa.concat_tables([t for t in tables if t.num_rows] or tables[:1], promote_options="default")
            if "date" in merged.column_names and "ts" in merged.column_names:
                merged = merged.sort_by([("date", "ascending"), ("ts", "ascending")])
            _write_month(merged, target, dates, self.fsync)
            for path in day_files:
                path.unlink()
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            return len(day_files)

    def compact_table(self, table: Table, before_month: str) -> dict[str, int]:
        """Compact every month earlier than ``before_month`` (YYYY-MM) of every symbol; dates merged per symbol."""
        out = {}
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            symbol = symbol_dir.name.split("=", 1)[1]
            months = sorted({p.name[5:12] for p in symbol_dir.glob("date=*")} - {""})
            merged = sum(self.compact_month(table, symbol, m) for m in months if m < before_month)
            if merged:
                out[symbol] = merged
        return out

    def partition_files(self, table: Table, symbols: Iterable[str], days: Iterable[dt.date]) -> list[Path]:
        """The files holding the (symbol, date) partitions (a month file once; may hold other dates)."""
        days = list(days)
        files: list[Path] = []
        for symbol in symbols:
            seen = set()
            for day in days:
                path = self.day_source(table, symbol, day)
                if path is not None and path not in seen:
                    seen.add(path)
                    files.append(path)
        return files

    def read(
        self,
        table: Table,
        symbols: Iterable[str] | None = None,
        days: Iterable[dt.date] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of the given (symbol, date) partitions (all partitions when omitted)."""
        if symbols is None or days is None:
            files = self._glob(table, symbols, days)
        else:
            files = self.partition_files(table, symbols, days)
        frame = read_parquet_files(files, columns)
        if days is not None and any(f.parent.name.startswith(MONTH_PREFIX) for f in files) and "date" in frame.columns:
            wanted = set(days)
            frame = frame[pd.to_datetime(frame["date"]).dt.date.isin(wanted)].reset_index(drop=True)
        return frame

    def _glob(self, table: Table, symbols: Iterable[str] | None, days: Iterable[dt.date] | None) -> list[Path]:
        wanted_symbols = {normalize_symbol(s) for s in symbols} if symbols is not None else None
        wanted_days = set(days) if days is not None else None
        files: list[Path] = []
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            if wanted_symbols is not None and symbol_dir.name.split("=", 1)[1] not in wanted_symbols:
                continue
            files += layout_files(symbol_layout(symbol_dir), wanted_days)
        return files

    def list_partitions(self, table: Table) -> pd.DataFrame:
        """(symbol, date, path) of every stored partition of a table (either layout)."""
        rows = []
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            symbol = symbol_dir.name.split("=", 1)[1]
            layout = symbol_layout(symbol_dir)
            if not layout:  # raw tables: batch files, no part.parquet
                for path in sorted(symbol_dir.glob("date=*")):
                    if path.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in path.iterdir()):
                        rows.append({"symbol": symbol, "date": dt.date.fromisoformat(path.name[5:]), "path": str(path)})
                continue
            rows += [{"symbol": symbol, "date": day, "path": str(path.parent)} for day, path in sorted(layout.items())]
        return pd.DataFrame(rows, columns=["symbol", "date", "path"])

    # ------------------------------------------------------- append-only batches
    def batch_files(self, table: Table, symbol: str, day: dt.date) -> list[Path]:
        """Batches of a raw partition, oldest first (names sort by ingestion time)."""
        folder = self.partition_dir(table, symbol, day)
        return sorted(folder.glob(f"{BATCH_PREFIX}*.parquet")) if folder.exists() else []

    def append_batch(
        self,
        table: Table,
        symbol: str,
        day: dt.date,
        data: pd.DataFrame,
        batch_id: str,
        ingestion_ts: pd.Timestamp,
        schema: pa.Schema | None = None,
    ) -> tuple[Path, bool]:
        """Write a raw batch unless a batch with the same ``batch_id`` exists. Returns (path, written)."""
        for existing in self.batch_files(table, symbol, day):
            if existing.stem.endswith(f"-{batch_id}"):
                return existing, False
        stamp = ingestion_ts.tz_convert("UTC").strftime("%Y%m%dT%H%M%S%fZ")
        target = self.partition_dir(table, symbol, day) / f"{BATCH_PREFIX}{stamp}-{batch_id}.parquet"
        return write_parquet_atomic(_to_arrow(data, schema), target, fsync=self.fsync), True

    def read_latest_batch(self, table: Table, symbol: str, day: dt.date) -> pd.DataFrame | None:
        files = self.batch_files(table, symbol, day)
        return pq.read_table(files[-1]).to_pandas() if files else None


def _to_arrow(data: pd.DataFrame | pa.Table, schema: pa.Schema | None) -> pa.Table:
    if isinstance(data, pa.Table):
        return data if schema is None else data.select(schema.names).cast(schema)
    if schema is not None:
        return pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
    return pa.Table.from_pandas(data, preserve_index=False)


def read_parquet_files(files: Sequence[Path], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read many Parquet files of one schema into one DataFrame (multi-threaded)."""
    if not files:
        return pd.DataFrame(columns=list(columns) if columns else None)
    if len(files) == 1:
        return pq.read_table(files[0], columns=list(columns) if columns else None).to_pandas()
    dataset = pads.dataset([str(f) for f in files], format="parquet")
    return dataset.to_table(columns=list(columns) if columns else None).to_pandas()


def _without_date(table: pa.Table, day: dt.date) -> pa.Table:
    if "date" not in table.column_names or table.num_rows == 0:
        return table
    import pyarrow.compute as pc

    column = table.column("date")
    if not pa.types.is_date32(column.type):
        column = column.cast(pa.date32())
    return table.filter(pc.not_equal(column, pa.scalar(day, pa.date32())))


def _write_month(table: pa.Table, target: Path, dates, fsync: bool) -> Path:
    metadata = dict(table.schema.metadata or {})
    metadata[DATES_KEY] = ",".join(sorted(d.isoformat() for d in dates)).encode()
    return write_parquet_atomic(table.replace_schema_metadata(metadata), target, fsync=fsync)
