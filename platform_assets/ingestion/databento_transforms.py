"""Pure, vectorised conversions of Databento DBN record arrays (``DBNStore.to_ndarray``).

No Python loop per record: prices are fixed-point 1e-9 integers with ``UNDEF_PRICE`` (2^63-1) for
"no value"; arrays are converted column by column with numpy.

* ``ohlcv_to_bars``: ohlcv-1m records -> raw bars (ts = bar start, UTC), malformed rows split off.
* ``mbp10_to_book``: mbp-10 records -> fixed 10-level snapshots (zeros for missing levels).
* ``trades_to_frame`` / ``tbbo_to_frame``: trades and top-of-book-at-trade records -> frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def ohlcv_to_bars(records: np.ndarray, id_to_symbol: dict[int, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid bars, rejected rows with ``reject_reason``) from ohlcv records.

    Rejected: non-finite or non-positive price, high < low, open/close outside [low, high],
    unknown instrument. Columns: symbol, ts, open, high, low, close, volume, vwap (NaN: ohlcv has
    none), trade_count (0: unknown).
    """
    frame = pd.DataFrame(
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
    o, h, l, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    reason = np.full(len(frame), "", dtype=object)
    with np.errstate(invalid="ignore"):
        reason[(o > h) | (c > h) | (o < l) | (c < l)] = "ohlc_inconsistent"
        reason[h < l] = "high_below_low"
        reason[(o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)] = "non_positive_price"
    reason[~(np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c))] = "non_finite_price"
    reason[frame["symbol"].to_numpy() == ""] = "unknown_instrument"
    bad = reason != ""
    return frame[~bad].reset_index(drop=True), frame[bad].assign(reject_reason=reason[bad]).reset_index(drop=True)


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


def split_by_et_date(frame: pd.DataFrame, tz: str = "America/New_York") -> dict:
    """Rows grouped by (symbol, New York calendar date of ``ts``)."""
    if frame.empty:
        return {}
    dates = frame["ts"].dt.tz_convert(tz).dt.date
    return {key: rows.reset_index(drop=True) for key, rows in frame.groupby([frame["symbol"], dates], sort=True)}
