"""Pure helpers that turn vendor bars into an append-only raw batch.

A batch is one (source, symbol, date) delivery. Its ``batch_id`` is a hash of its content, so
re-ingesting identical data yields the same id (and the lake skips the write), while a corrected
delivery gets a new id and is appended next to the old one. The primary key
(source, symbol, ts, batch_id) is enforced: repeated rows for a ts are split off (first kept) so
they can be quarantined, not silently dropped.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from resources.lake import content_hash
from resources.schemas import RAW_BAR_COLUMNS, RAW_BARS_SCHEMA


def build_raw_batch(
    bars: pd.DataFrame, *, source: str, symbol: str, day: dt.date, ingestion_ts: pd.Timestamp
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Return (batch_id, batch rows keyed by the primary key, rows that repeated a key)."""
    rows = bars[RAW_BAR_COLUMNS].copy()
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    repeated = rows["ts"].duplicated(keep="first")
    kept, dupes = rows[~repeated].reset_index(drop=True), rows[repeated].reset_index(drop=True)
    batch_id = content_hash(kept, source, symbol, day.isoformat())

    def frame(part: pd.DataFrame) -> pd.DataFrame:
        out = part.assign(source=source, symbol=symbol, date=day, batch_id=batch_id, ingestion_ts=ingestion_ts)
        out["volume"] = out["volume"].astype("int64")
        out["trade_count"] = out["trade_count"].astype("int64")
        return out[RAW_BARS_SCHEMA.names]

    return batch_id, frame(kept), frame(dupes)


def as_delivered(bars: pd.DataFrame, *, source: str, symbol: str, day: dt.date) -> pd.DataFrame:
    """The vendor rows in delivery order, repeated keys included: what the raw DQ rules check."""
    rows = bars[RAW_BAR_COLUMNS].reset_index(drop=True)
    rows = rows.assign(ts=pd.to_datetime(rows["ts"], utc=True), source=source, symbol=symbol, date=day)
    return rows
