"""The Parquet lake: system of record, one folder per table, hive-style partition folders.

Layout under ``{base}/lake``::

    raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-20240103T000102Z-<hash>.parquet  (append-only)
    curated_bars/symbol=AAPL/date=2024-01-02/part.parquet                                 (replaced)
    features/bar_features/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    labels/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    quarantine/raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-....parquet

Derived tables hold one ``part.parquet`` per (symbol, date), replaced atomically on re-run, so a
re-run never duplicates rows. Raw batches are fsynced (the system of record); derived files are
only renamed atomically, since they can always be rebuilt from raw. Raw tables are append-only: a batch is written once under a content
hash (``batch_id``); re-ingesting identical data writes nothing, changed vendor data adds a batch
and readers take the newest batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
        """
        target = self.partition_dir(table, symbol, day) / PART_FILE
        return write_parquet_atomic(_to_arrow(data, schema), target, fsync=self.fsync and durable)

    def has_partition(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Whether the (symbol, date) partition of a derived table is stored."""
        return (self.partition_dir(table, symbol, day) / PART_FILE).exists()

    def delete_partition(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Remove a derived partition's file (used when a re-run produces nothing for it)."""
        path = self.partition_dir(table, symbol, day) / PART_FILE
        if path.exists():
            path.unlink()
            return True
        return False

    def partition_files(self, table: Table, symbols: Iterable[str], days: Iterable[dt.date]) -> list[Path]:
        days = list(days)
        return [
            path
            for symbol in symbols
            for day in days
            if (path := self.partition_dir(table, symbol, day) / PART_FILE).exists()
        ]

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
        return read_parquet_files(files, columns)

    def _glob(self, table: Table, symbols: Iterable[str] | None, days: Iterable[dt.date] | None) -> list[Path]:
        wanted_symbols = {normalize_symbol(s) for s in symbols} if symbols is not None else None
        wanted_days = {d.isoformat() for d in days} if days is not None else None
        files = []
        for path in sorted(self.table_dir(table).glob(f"symbol=*/date=*/{PART_FILE}")):
            symbol = path.parent.parent.name.split("=", 1)[1]
            day = path.parent.name.split("=", 1)[1]
            if (wanted_symbols is None or symbol in wanted_symbols) and (wanted_days is None or day in wanted_days):
                files.append(path)
        return files

    def list_partitions(self, table: Table) -> pd.DataFrame:
        """(symbol, date, path) of every stored partition of a table."""
        rows = []
        for path in sorted(self.table_dir(table).glob("symbol=*/date=*")):
            if path.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in path.iterdir()):
                rows.append(
                    {
                        "symbol": path.parent.name.split("=", 1)[1],
                        "date": dt.date.fromisoformat(path.name.split("=", 1)[1]),
                        "path": str(path),
                    }
                )
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
