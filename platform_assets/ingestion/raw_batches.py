"""Pure helpers that turn vendor bars into an append-only raw batch.

A batch is one (source, symbol, date) delivery. Its ``batch_id`` is a hash of its content, so
re-ingesting identical data yields the same id (and the lake skips the write), while a corrected
delivery gets a new id and is appended next to the old one. The primary key
(source, symbol, ts, batch_id) is enforced: repeated rows for a ts are split off (first kept) so
they can be quarantined, not silently dropped.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from resources.lake import content_hash
from resources.schemas import RAW_BAR_COLUMNS, RAW_BARS_SCHEMA


def build_raw_batch(
    bars: pd.DataFrame, *, source: str, symbol: str, day: dt.date, ingestion_ts: pd.Timestamp
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Return (batch_id, batch rows keyed by the primary key, rows that repeated a key)."""
    ts = _utc(bars["ts"])
    repeated = ts.duplicated(keep="first").to_numpy()
    rows = pd.DataFrame({"ts": ts.array, **{c: bars[c].to_numpy() for c in RAW_BAR_COLUMNS[1:]}})
    batch_id = content_hash(rows[~repeated] if repeated.any() else rows, source, symbol, day.isoformat())
    out = pd.DataFrame(
        {
            "source": source,
            "symbol": symbol,
            "date": _dates(day, len(rows)),
            "ts": rows["ts"].array,
            **{c: rows[c].to_numpy() for c in ("open", "high", "low", "close")},
            "volume": rows["volume"].to_numpy(dtype="int64"),
            "vwap": rows["vwap"].to_numpy(),
            "trade_count": rows["trade_count"].to_numpy(dtype="int64"),
            "batch_id": batch_id,
            "ingestion_ts": ingestion_ts,
        },
        columns=RAW_BARS_SCHEMA.names,
    )
    if not repeated.any():
        return batch_id, out, out.iloc[:0]
    return batch_id, out[~repeated].reset_index(drop=True), out[repeated].reset_index(drop=True)


def as_delivered(bars: pd.DataFrame, *, source: str, symbol: str, day: dt.date) -> pd.DataFrame:
    """The vendor rows in delivery order, repeated keys included: what the raw DQ rules check."""
    return pd.DataFrame(
        {"ts": _utc(bars["ts"]).array, **{c: bars[c].to_numpy() for c in RAW_BAR_COLUMNS[1:]}, "source": source, "symbol": symbol, "date": _dates(day, len(bars))}
    )


def _utc(ts: pd.Series) -> pd.Series:
    """Bar times as ``datetime64[ns, UTC]`` (as they come from our sources: no conversion)."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype) and ts.dtype == _UTC_NS:
        return ts
    return pd.to_datetime(ts, utc=True)


def _dates(day: dt.date, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = day
    return out


_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")
