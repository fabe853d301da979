"""Seed 001 section 2: ``file_ingestor.py``, CSV / Parquet file ingestion into the raw store.

    ingestor = FileIngestor("vendor/bars_2024-12.csv")              # a file, a folder or a glob
    ingestor.ingest_historical_range(["AAPL", "MSFT"], start, end)   # [start, end) UTC
    FileIngestor("dump/*.parquet", columns={"timestamp": "ts"}, timezone="America/New_York")

Files hold one bar per row: ``symbol``, ``ts`` (the bar's start), ``open``, ``high``, ``low``,
``close``, ``volume`` and optionally ``vwap`` / ``trade_count`` (``columns`` renames others; naive
times are in ``timezone``, default UTC). The format comes from the suffix (``.csv``, ``.csv.gz``,
``.parquet``, ``.pq``) or ``file_format``. The rows of the instruments in the range go to
``RawStore`` as append-only batches per (symbol, trading date) under
``lake/raw_bars/source=<source>`` (default ``files``), the batch id a hash of the bars (a re-run
writes nothing new). Rows are stored as delivered (curation filters invalid prices); a file that
does not read, a missing column or a value that is not a time or a number is a ``ValueError``
naming the file; no file at the path is ``FileNotFoundError``. ``curated_bars`` takes the source
when it is in its ``source_priority`` (run config); ``source="ib"`` files TWS exports as IB bars.
"""

from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path

import pandas as pd

from src.data_sources.base_ingestor import BaseIngestor, bars_frame, in_range, write_symbol_batches
from src.storage.raw_store import RawStore

FORMATS = {".csv": "csv", ".gz": "csv", ".parquet": "parquet", ".pq": "parquet"}


class FileIngestor(BaseIngestor):
    kind = "files"

    def __init__(self, path: str | Path, raw_store: RawStore | None = None, *, source: str = "files", file_format: str | None = None,
                 columns: dict[str, str] | None = None, timezone: str = "UTC"):
        if file_format not in (None, "csv", "parquet"):
            raise ValueError(f"file_format must be 'csv' or 'parquet', got {file_format!r}")
        self.path, self.file_format, self.columns, self.timezone = str(path), file_format, dict(columns or {}), timezone
        self.raw_store = raw_store or RawStore(source=source)
        self.rows_ingested = 0

    def files(self) -> list[Path]:
        """The files the path names (a file, every csv/parquet file of a folder, or a glob's matches)."""
        path = Path(self.path).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and (self.file_format or FORMATS.get(p.suffix.lower())))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(f"no bar files at {self.path}")
        return found

    def read(self, path: Path) -> pd.DataFrame:
        kind = self.file_format or FORMATS.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path}: unknown file type {path.suffix!r} (csv or parquet; or give file_format)")
        try:
            rows = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
        except Exception as error:  # pandas/pyarrow raise many types for a file that does not read
            raise ValueError(f"{path}: does not read as {kind}: {error}") from None
        return bars_frame(rows, columns=self.columns, timezone=self.timezone, what=str(path))

    def ingest_historical_range(self, instruments: list, start: dt.datetime, end: dt.datetime) -> None:
        frames = [in_range(self.read(path), instruments, start, end) for path in self.files()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if frame.empty:
            return
        self.rows_ingested += write_symbol_batches(self.raw_store, frame, "file")
