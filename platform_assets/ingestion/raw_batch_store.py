"""Storing one raw batch with the rows it rejected for repeating a key (I/O; the batch itself is
built by the pure ``platform_assets.ingestion.raw_batches``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa

from resources.lake import ParquetLake, Table, quarantine_table
from resources.schemas import RAW_BARS_SCHEMA


RAW_STATS = ("batches_written", "batches_unchanged", "duplicate_key_rows_quarantined")
"""The per-date counters of an asset that stores raw batches (``raw_batch_stats``)."""


def raw_batch_stats(new: bool, repeated_rows: int) -> dict[str, int]:
    """``RAW_STATS`` of one stored batch: written or found unchanged, its repeated-key rows quarantined."""
    return {"batches_written": int(new), "batches_unchanged": int(not new), "duplicate_key_rows_quarantined": repeated_rows}


def store_raw_batch(
    lake: ParquetLake, table: Table, symbol: str, day: dt.date, batch: pa.Table | pd.DataFrame, batch_id: str,
    repeated: pa.Table | pd.DataFrame, ingestion_ts: pd.Timestamp,
) -> tuple[Path, bool]:
    """Append ``batch`` to ``table`` (``ParquetLake.append_batch``: (path, written)), its
    ``repeated`` rows to ``quarantine/<table>`` with ``reject_reason="duplicate_key"`` first: the
    repeats exist only there, and a re-run that finds the batch stored (the same batch id) would
    not write them, so a fault between the two writes must not come after the batch."""
    if len(repeated):
        lake.append_batch(quarantine_table(table), symbol, day, with_reject_reason(repeated, "duplicate_key"), batch_id, ingestion_ts)
    return lake.append_batch(table, symbol, day, batch, batch_id, ingestion_ts, RAW_BARS_SCHEMA)


def with_reject_reason(rows: pa.Table | pd.DataFrame, reason: str) -> pa.Table | pd.DataFrame:
    """``rows`` with a ``reject_reason`` column; Arrow stays Arrow (a pandas round trip per batch
    cost ~1.5 ms, for the same stored values)."""
    if isinstance(rows, pa.Table):
        return rows.append_column("reject_reason", pa.array([reason] * rows.num_rows, type=pa.string()))
    return rows.assign(reject_reason=reason)
