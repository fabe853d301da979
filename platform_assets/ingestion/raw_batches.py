"""Pure helpers that turn vendor bars into an append-only raw batch.

A batch is one (source, symbol, date) delivery. Its ``batch_id`` is a hash of its content, so
re-ingesting identical data yields the same id (and the lake skips the write), while a corrected
delivery gets a new id and is appended next to the old one. The primary key
(source, symbol, ts, batch_id) is enforced: repeated rows for a ts are split off (first kept) so
they can be quarantined, not silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from resources.lake import content_hash_of_columns
from resources.schemas import RAW_BAR_COLUMNS, RAW_BARS_SCHEMA


def build_raw_batch(
    bars: pd.DataFrame, *, source: str, symbol: str, day: dt.date, ingestion_ts: pd.Timestamp
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Return (batch_id, batch rows keyed by the primary key, rows that repeated a key)."""
    batch_id, batch, repeated = raw_batch_table(bars, source=source, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
    return batch_id, batch.to_pandas(), repeated.to_pandas()


def raw_batch_table(
    bars: BarColumns, *, source: str, symbol: str, day: dt.date, ingestion_ts: pd.Timestamp
) -> tuple[str, pa.Table, pa.Table]:
    """``build_raw_batch`` as Arrow tables of ``RAW_BARS_SCHEMA`` (what the lake writes): no pandas
    frame built per batch (the content hash is taken of the columns, as of their frame). ``bars``:
    a frame or its columns (``BarColumns``)."""
    values = _bar_values(bars)
    repeated = pd.Index(values["ts"]).duplicated(keep="first")
    unique = ~repeated if repeated.any() else None
    kept = values if unique is None else {c: v[unique] for c, v in values.items()}
    batch_id = content_hash_of_columns(kept, source, symbol, day.isoformat())
    stamp = pd.Timestamp(ingestion_ts)
    stamp = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).value

    def table(columns: dict) -> pa.Table:
        n = len(columns["ts"])
        arrays = {
            "source": pa.array([source] * n, pa.string()),
            "symbol": pa.array([symbol] * n, pa.string()),
            "date": pa.array([day] * n, pa.date32()),
            "ts": pa.array(pd.DatetimeIndex(columns["ts"]).as_unit("ns").asi8, pa.int64()).cast(RAW_BARS_SCHEMA.field("ts").type),  # any unit the vendor used
            **{c: pa.array(np.asarray(columns[c]), pa.float64(), from_pandas=True) for c in ("open", "high", "low", "close", "vwap")},
            **{c: pa.array(np.asarray(columns[c]).astype("int64", copy=False)) for c in ("volume", "trade_count")},  # as the frame path cast them
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "ingestion_ts": pa.array(np.full(n, stamp, dtype=np.int64), pa.int64()).cast(RAW_BARS_SCHEMA.field("ingestion_ts").type),
        }
        return pa.Table.from_arrays([arrays[name] for name in RAW_BARS_SCHEMA.names], schema=RAW_BARS_SCHEMA)

    if unique is None:
        out = table(values)
        return batch_id, out, out.slice(0, 0)
    return batch_id, table(kept), table({c: v[repeated] for c, v in values.items()})


def as_delivered(bars: BarColumns, *, source: str, symbol: str, day: dt.date) -> dict[str, object]:
    """The vendor rows in delivery order, repeated keys included: what the raw DQ rules check, as
    columns (the DQ batch frames many partitions' columns at once; ``pd.DataFrame`` of it is the frame)."""
    values = _bar_values(bars)
    return {**values, "source": source, "symbol": symbol, "date": _dates(day, len(values["ts"]))}


BarColumns = pd.DataFrame | Mapping[str, object]
"""Vendor bars: a frame, or its columns (``RAW_BAR_COLUMNS`` -> 1-D arrays; ``ts`` any datetimes,
e.g. the simulator's ``SimDay.bar_columns``, which builds no frame)."""


def _bar_values(bars: BarColumns) -> dict[str, object]:
    """The bar columns as arrays: ``ts`` as ``datetime64[ns, UTC]`` values, the others as numpy."""
    return {"ts": _utc(bars["ts"]).array, **{c: np.asarray(bars[c]) for c in RAW_BAR_COLUMNS[1:]}}


def _utc(ts: pd.Series | pd.Index | object) -> pd.Series | pd.Index:
    """Bar times as ``datetime64[ns, UTC]`` (as they come from our sources: no conversion)."""
    if isinstance(getattr(ts, "dtype", None), pd.DatetimeTZDtype) and ts.dtype == _UTC_NS and isinstance(ts, (pd.Series, pd.Index)):
        return ts
    return pd.to_datetime(ts, utc=True)


def _dates(day: dt.date, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = day
    return out


_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")
