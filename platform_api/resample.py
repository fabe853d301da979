"""Resampling curated 1-minute bars to coarser bars (pure functions).

Buckets are anchored at each session's first minute (09:30 ET for XNYS, 00:00 UTC for 24/7
markets), so ``1h`` bars are 09:30-10:30, ... and a half day ends with a short bucket; ``1d`` is
one bar per session. OHLC take the first non-null open, max high, min low, last non-null close;
volume and trade_count are summed; vwap is volume-weighted. Gap flags are carried: ``minutes``
(1-min bars in the bucket), ``imputed_minutes``, ``has_gap`` (any imputed minute), ``is_imputed``
(every minute imputed) and ``dq_status`` = the worst of the minutes (ok < imputed < missing).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

FREQUENCY_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "1d": None}
DQ_ORDER = {"ok": 0, "imputed": 1, "missing": 2}
RESAMPLED_COLUMNS = [
    "symbol", "date", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count",
    "minutes", "imputed_minutes", "has_gap", "is_imputed", "dq_status",
]  # fmt: skip


_SPELLING = re.compile(r"^(\d*)(min|mins|minute|minutes|m|t|h|hr|hour|hours|d|day|days)$")
_UNIT_MINUTES = {"min": 1, "mins": 1, "minute": 1, "minutes": 1, "m": 1, "t": 1, "h": 60, "hr": 60, "hour": 60, "hours": 60}


def canonical_frequency(frequency: object) -> object:
    """The ``FREQUENCY_MINUTES`` key for a spelling of it: ``"5min"`` as given, and pandas' and
    everyday spellings, any case, spaces ignored (``"5T"``, ``"5m"``, ``"5 minutes"``, ``"60min"`` /
    ``"1H"`` -> ``"1h"``, ``"1D"`` / ``"day"`` -> ``"1d"``). Anything else is returned as given (the
    caller refuses it, listing the canonical names)."""
    if not isinstance(frequency, str) or frequency in FREQUENCY_MINUTES or frequency.rstrip().endswith("M"):
        return frequency  # pandas' "M" is a month, never read as minutes
    match = _SPELLING.match(frequency.replace(" ", "").lower())
    if match is None:
        return frequency
    count, unit = int(match.group(1) or 1), match.group(2)
    if unit in ("d", "day", "days"):
        return "1d" if count == 1 else frequency
    minutes = count * _UNIT_MINUTES[unit]
    return next((name for name, size in FREQUENCY_MINUTES.items() if size == minutes), frequency)


def resample_bars(bars: pd.DataFrame, frequency: str) -> pd.DataFrame:
    """Aggregate curated 1-min bars (all minutes of their sessions) to ``frequency``."""
    if frequency not in FREQUENCY_MINUTES:
        raise ValueError(f"unknown frequency {frequency!r}")
    if bars.empty:
        return pd.DataFrame(columns=RESAMPLED_COLUMNS)
    frame = bars.sort_values(["symbol", "ts"]).reset_index(drop=True)
    ts = pd.DatetimeIndex(frame["ts"])
    session_open = frame.groupby(["symbol", "date"])["ts"].transform("min")
    minutes = FREQUENCY_MINUTES[frequency]
    if minutes is None:
        bucket_start = session_open
    else:
        offset = ((ts - pd.DatetimeIndex(session_open)) // pd.Timedelta(minutes=minutes)).to_numpy()
        bucket_start = pd.DatetimeIndex(session_open) + pd.to_timedelta(offset * minutes, unit="min")
    frame["bucket"] = bucket_start
    volume = frame["volume"].astype(float)
    frame["_pv"] = frame["vwap"].astype(float).fillna(frame["close"].astype(float)) * volume
    frame["_dq"] = frame["dq_status"].map(DQ_ORDER).fillna(DQ_ORDER["missing"]).astype(int)
    frame["_imputed"] = frame["is_imputed"].astype(bool)
    grouped = frame.groupby(["symbol", "date", "bucket"], sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        _pv=("_pv", "sum"),
        trade_count=("trade_count", "sum"),
        minutes=("ts", "size"),
        imputed_minutes=("_imputed", "sum"),
        _worst=("_dq", "max"),
    ).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["vwap"] = np.where(out["volume"] > 0, out["_pv"] / out["volume"], np.nan)
    out["imputed_minutes"] = out["imputed_minutes"].astype(int)
    out["has_gap"] = out["imputed_minutes"] > 0
    out["is_imputed"] = out["imputed_minutes"] == out["minutes"]
    names = {rank: name for name, rank in DQ_ORDER.items()}
    out["dq_status"] = out["_worst"].map(names)
    out = out.rename(columns={"bucket": "ts"})
    return out[RESAMPLED_COLUMNS]
