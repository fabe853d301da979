"""Pure, vectorised conversions of Databento DBN record arrays (``DBNStore.to_ndarray``).

No Python loop per record: prices are fixed-point 1e-9 integers with ``UNDEF_PRICE`` (2^63-1) for
"no value"; arrays are converted column by column with numpy.

* ``ohlcv_to_bars``: ohlcv-1m records -> raw bars (ts = bar start, UTC), malformed rows split off.
* ``mbp10_to_book``: mbp-10 records -> fixed 10-level snapshots (zeros for missing levels).
* ``trades_to_frame`` / ``tbbo_to_frame``: trades and top-of-book-at-trade records -> frames.
* ``record_dicts``: any schema with a record model (ohlcv-*, trades, tbbo, statistics) -> the
  fields of the adapters' pydantic records (``resources.adapters.records``).
"""

from __future__ import annotations

import databento_dbn as dbn
import numpy as np
import pandas as pd

from platform_assets.ingestion.bar_validation import split_malformed_bars
from resources.schemas import L2Book

UNDEF_PRICE = np.int64(2**63 - 1)
PRICE_SCALE = 1e-9
LEVELS = 10


def prices(values: np.ndarray) -> np.ndarray:
    """Fixed-point int64 prices -> float64, UNDEF -> NaN."""
    values = np.asarray(values, dtype=np.int64)
    out = values.astype(np.float64) * PRICE_SCALE
    out[values == UNDEF_PRICE] = np.nan
    return out


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype="datetime64[ns]")).tz_localize("UTC")


def _symbols(instrument_ids: np.ndarray, id_to_symbol: dict[int, str]) -> np.ndarray:
    """Map instrument ids to symbols with one lookup per distinct id (not per record)."""
    ids, inverse = np.unique(np.asarray(instrument_ids), return_inverse=True)
    names = np.array([id_to_symbol.get(int(i), "") for i in ids], dtype=object)
    return names[inverse]


def ohlcv_to_frame(records: np.ndarray, id_to_symbol: dict[int, str]) -> pd.DataFrame:
    """Every ohlcv record as a bar row: symbol ("" if the instrument is unknown), ts (bar start,
    UTC), open, high, low, close, volume, vwap (NaN: ohlcv has none), trade_count (0: unknown)."""
    return pd.DataFrame(
        {
            "symbol": _symbols(records["instrument_id"], id_to_symbol),
            "ts": _utc(records["ts_event"]),
            "open": prices(records["open"]),
            "high": prices(records["high"]),
            "low": prices(records["low"]),
            "close": prices(records["close"]),
            "volume": np.asarray(records["volume"], dtype=np.int64),
            "vwap": np.nan,
            "trade_count": np.int64(0),
        }
    )


def ohlcv_to_bars(records: np.ndarray, id_to_symbol: dict[int, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid bars, rejected rows with ``reject_reason``) from ohlcv records.

    Rejected: non-finite or non-positive price, high < low, open/close outside [low, high],
    unknown instrument (``bar_validation.split_malformed_bars``).
    """
    return split_malformed_bars(ohlcv_to_frame(records, id_to_symbol))


def _level_matrix(records: np.ndarray, field: str) -> np.ndarray:
    """(n, 10) matrix of ``{field}_00`` .. ``{field}_09`` read with one strided copy.

    The 10 levels are consecutive BidAskPair structs inside each record, so the fields of all levels
    form a regular (record stride, level stride) grid in memory; a per-level fallback covers any
    other layout.
    """
    fields = records.dtype.fields
    first, second = fields[f"{field}_00"], fields[f"{field}_01"]
    step = second[1] - first[1]
    regular = all(fields[f"{field}_{i:02d}"][1] == first[1] + i * step for i in range(LEVELS))
    if regular and records.flags.c_contiguous:
        view = np.ndarray(
            shape=(len(records), LEVELS), dtype=first[0], buffer=records.data, offset=first[1], strides=(records.dtype.itemsize, step)
        )
        return np.array(view)
    return np.stack([np.asarray(records[f"{field}_{i:02d}"]) for i in range(LEVELS)], axis=1)


def mbp10_to_book(records: np.ndarray, window: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> L2Book:
    """Each mbp-10 record (the book after an event) as one 10-level snapshot stamped ``ts_recv``.

    Missing levels (UNDEF price) become price 0 and size 0, as the L2 file contract requires.
    ``window`` keeps snapshots with ``start <= ts < end``.
    """
    ts = np.asarray(records["ts_recv"], dtype=np.int64)
    if window is not None:
        keep = (ts >= window[0].value) & (ts < window[1].value)
        if not keep.all():
            records, ts = records[keep], ts[keep]
    records = np.ascontiguousarray(records)
    sides = {}
    for side in ("bid", "ask"):
        px = _level_matrix(records, f"{side}_px").astype(np.int64, copy=False)
        sz = _level_matrix(records, f"{side}_sz").astype(np.int64)
        missing = px == UNDEF_PRICE
        price = px * PRICE_SCALE
        price[missing] = 0.0
        sz[missing] = 0
        sides[side] = (price, sz)
    return L2Book(
        timestamp=ts.astype("datetime64[ns]"),
        bid_prices=sides["bid"][0], bid_sizes=sides["bid"][1], ask_prices=sides["ask"][0], ask_sizes=sides["ask"][1],
    )


def mbp10_to_book_loop(records) -> L2Book:
    """The same conversion one record at a time (the benchmark's baseline; do not use)."""
    n = len(records)
    bid_p, ask_p = np.zeros((n, LEVELS)), np.zeros((n, LEVELS))
    bid_s, ask_s = np.zeros((n, LEVELS), dtype=np.int64), np.zeros((n, LEVELS), dtype=np.int64)
    stamps = np.zeros(n, dtype="datetime64[ns]")
    for row, record in enumerate(records):
        stamps[row] = np.datetime64(int(record["ts_recv"]), "ns")
        for level in range(LEVELS):
            bp, ap = int(record[f"bid_px_{level:02d}"]), int(record[f"ask_px_{level:02d}"])
            if bp != UNDEF_PRICE:
                bid_p[row, level], bid_s[row, level] = bp * PRICE_SCALE, int(record[f"bid_sz_{level:02d}"])
            if ap != UNDEF_PRICE:
                ask_p[row, level], ask_s[row, level] = ap * PRICE_SCALE, int(record[f"ask_sz_{level:02d}"])
    return L2Book(stamps, bid_p, bid_s, ask_p, ask_s)


def trades_to_frame(records: np.ndarray, id_to_symbol: dict[int, str]) -> pd.DataFrame:
    """symbol, ts (ts_event), ts_recv, price, size, side, sequence."""
    return pd.DataFrame(
        {
            "symbol": _symbols(records["instrument_id"], id_to_symbol),
            "ts": _utc(records["ts_event"]),
            "ts_recv": _utc(records["ts_recv"]),
            "price": prices(records["price"]),
            "size": np.asarray(records["size"], dtype=np.int64),
            "side": np.asarray(records["side"]).astype("U1"),
            "sequence": np.asarray(records["sequence"], dtype=np.int64),
        }
    )


def tbbo_to_frame(records: np.ndarray, id_to_symbol: dict[int, str]) -> pd.DataFrame:
    """A trade plus the top of book just before it: trade columns + bid/ask price and size."""
    frame = trades_to_frame(records, id_to_symbol)
    frame["bid_px"] = prices(records["bid_px_00"])
    frame["ask_px"] = prices(records["ask_px_00"])
    frame["bid_sz"] = np.asarray(records["bid_sz_00"], dtype=np.int64)
    frame["ask_sz"] = np.asarray(records["ask_sz_00"], dtype=np.int64)
    return frame


UNDEF_TIMESTAMP = np.uint64(2**64 - 1)
UNDEF_QUANTITY = np.int64(2**63 - 1)
UNDEF_CHANNEL = 2**16 - 1
STAT_NAMES = {int(kind.value): kind.name for kind in dbn.StatType.variants()}
UPDATE_ACTIONS = {1: "new", 2: "delete"}


def _datetimes(ns: np.ndarray) -> list:
    """ns since the epoch -> naive ``datetime`` objects holding UTC (microsecond precision; the
    record models attach the UTC zone), converted in C by numpy."""
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[us]").astype(object).tolist()


def _optional(values: np.ndarray, missing: np.ndarray) -> list:
    out = np.asarray(values).astype(object)
    out[missing] = None
    return out.tolist()


def _header(records: np.ndarray, id_to_symbol: dict[int, str]) -> dict[str, list]:
    return {
        "symbol": _symbols(records["instrument_id"], id_to_symbol).tolist(),
        "ts_event": _datetimes(records["ts_event"]),
        "instrument_id": np.asarray(records["instrument_id"], dtype=np.int64).tolist(),
        "publisher_id": np.asarray(records["publisher_id"], dtype=np.int64).tolist(),
    }


def _price_list(values: np.ndarray) -> list:
    """Prices as floats, ``None`` where undefined (NaN)."""
    decoded = prices(values)
    return _optional(decoded, np.isnan(decoded))


def _trade_columns(records: np.ndarray, id_to_symbol: dict[int, str]) -> dict[str, list]:
    return {
        **_header(records, id_to_symbol),
        "ts_recv": _datetimes(records["ts_recv"]),
        "price": prices(records["price"]).tolist(),
        "size": np.asarray(records["size"], dtype=np.int64).tolist(),
        "side": np.asarray(records["side"]).astype("U1").tolist(),
        "action": np.asarray(records["action"]).astype("U1").tolist(),
        "flags": np.asarray(records["flags"], dtype=np.int64).tolist(),
        "depth": np.asarray(records["depth"], dtype=np.int64).tolist(),
        "sequence": np.asarray(records["sequence"], dtype=np.int64).tolist(),
    }


def record_columns(schema: str, records: np.ndarray, id_to_symbol: dict[int, str]) -> dict[str, list]:
    """The fields of the adapters' pydantic record models, column by column (vectorised).

    ohlcv-*: open..close, volume; trades: ts_recv, price, size, side, action, flags, depth,
    sequence; tbbo: trades + bid/ask px, sz, ct (``None`` price: empty side); statistics:
    ts_recv, ts_ref, stat_type, stat_name, price, quantity (``None`` when undefined), sequence,
    update_action ("new"/"delete"), stat_flags, channel_id.
    """
    if schema.startswith("ohlcv-"):
        return {
            **_header(records, id_to_symbol),
            **{k: prices(records[k]).tolist() for k in ("open", "high", "low", "close")},
            "volume": np.asarray(records["volume"], dtype=np.int64).tolist(),
        }
    if schema == "trades":
        return _trade_columns(records, id_to_symbol)
    if schema == "tbbo":
        return {
            **_trade_columns(records, id_to_symbol),
            "bid_px": _price_list(records["bid_px_00"]),
            "ask_px": _price_list(records["ask_px_00"]),
            **{k: np.asarray(records[f"{k}_00"], dtype=np.int64).tolist() for k in ("bid_sz", "ask_sz", "bid_ct", "ask_ct")},
        }
    if schema == "statistics":
        ts_ref = np.asarray(records["ts_ref"], dtype=np.uint64)
        quantity = np.asarray(records["quantity"], dtype=np.int64)
        channel = np.asarray(records["channel_id"], dtype=np.int64)
        stat_type = np.asarray(records["stat_type"], dtype=np.int64)
        no_ref = (ts_ref == UNDEF_TIMESTAMP) | (ts_ref == 0)
        return {
            **_header(records, id_to_symbol),
            "ts_recv": _datetimes(records["ts_recv"]),
            "ts_ref": _optional(np.array(_datetimes(np.where(no_ref, 0, ts_ref).astype(np.int64)), dtype=object), no_ref),
            "stat_type": stat_type.tolist(),
            "stat_name": [STAT_NAMES.get(code, f"STAT_{code}") for code in stat_type.tolist()],
            "price": _price_list(records["price"]),
            "quantity": _optional(quantity, quantity == UNDEF_QUANTITY),
            "sequence": np.asarray(records["sequence"], dtype=np.int64).tolist(),
            "update_action": [UPDATE_ACTIONS.get(a, str(a)) for a in np.asarray(records["update_action"], dtype=np.int64).tolist()],
            "stat_flags": np.asarray(records["stat_flags"], dtype=np.int64).tolist(),
            "channel_id": _optional(channel, channel == UNDEF_CHANNEL),
        }
    raise ValueError(f"no record columns for Databento schema {schema!r}")


def record_dicts(schema: str, records: np.ndarray, id_to_symbol: dict[int, str]) -> list[dict]:
    """One dict per record (``record_columns`` transposed), ready for the pydantic models."""
    columns = record_columns(schema, records, id_to_symbol)
    keys = list(columns)
    return [dict(zip(keys, row)) for row in zip(*columns.values())]


def split_by_et_date(frame: pd.DataFrame, tz: str = "America/New_York") -> dict:
    """Rows grouped by (symbol, New York calendar date of ``ts``)."""
    if frame.empty:
        return {}
    dates = frame["ts"].dt.tz_convert(tz).dt.date
    return {key: rows.reset_index(drop=True) for key, rows in frame.groupby([frame["symbol"], dates], sort=True)}
