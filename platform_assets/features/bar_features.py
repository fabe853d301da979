"""Bar feature group, version v1: returns, rolling means/volatilities and lags of 1-min returns.

Computed per (symbol, session) from curated bars; every window resets at the session open, so a
partition depends on its own session only and the overnight jump never enters a 1-min return.
No look-ahead: each value at ``ts`` uses bars stamped ``<= ts`` only (rolling windows are
trailing, lags shift forward in time), and the row is known once its bar closed
(``available_ts = ts + 1 min``). Windows need a full window of bars (``min_periods = window``);
earlier values are NaN.

Version v2 = v1's columns unchanged plus what a model needs to know about gaps, all point in
time: ``imputed_in_window_{5,20,60}`` is true when any bar the window's returns read (the
``w + 1`` bars ending at ``ts``) was imputed or missing (a forward-filled zero return pulls
``ret_vol_*`` down; v1 gives no sign of it), and ``gap_run_minutes`` / ``gap_type`` are the
curated as-of gap columns (the gap run so far, a halt only once known as one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_GROUP = "bar_features"
WINDOWS = (5, 20, 60)
LAGS = (1, 5, 10)
KEY_COLUMNS = ["date", "symbol", "ts", "available_ts"]
VALUE_COLUMNS = (
    ["ret_1", "log_volume"]
    + [f"ret_mean_{w}" for w in WINDOWS]
    + [f"ret_vol_{w}" for w in WINDOWS]
    + [f"ret_lag_{k}" for k in LAGS]
    + ["volume_ratio_20", "is_imputed"]
)


VALUE_COLUMNS_V2 = VALUE_COLUMNS + [f"imputed_in_window_{w}" for w in WINDOWS] + ["gap_run_minutes", "gap_type"]
# The curated-bar columns each version reads (a backfill reads only these from the lake).
INPUT_COLUMNS = ("date", "symbol", "ts", "close", "volume", "is_imputed")
INPUT_COLUMNS_V2 = INPUT_COLUMNS + ("dq_status", "gap_run_minutes", "gap_type")


def _trailing(values: np.ndarray, window: int, reducer) -> np.ndarray:
    """``reducer`` over each full trailing window ending at i (NaN before a full window or with a NaN)."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(values, window)
        out[window - 1 :] = reducer(windows)
    return out


def _trailing_mean_std(values: np.ndarray, window: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``_trailing`` mean and sample std (ddof=1) in one pass, bit for bit what ``w.mean(axis=1)`` and
    ``w.std(axis=1, ddof=1)`` give (the same reductions in the same order; the std reuses the mean's
    sum), a block of windows at a time so the temporaries stay in cache."""
    mean, std = np.full(len(values), np.nan), np.full(len(values), np.nan)
    if len(values) < window:
        return mean, std
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    for start in range(0, len(windows), block):
        part = windows[start : start + block]
        part_mean = np.add.reduce(part, axis=1) / window
        deviation = part - part_mean[:, None]
        np.multiply(deviation, deviation, out=deviation)
        rows = slice(window - 1 + start, window - 1 + start + len(part))
        mean[rows], std[rows] = part_mean, np.sqrt(np.add.reduce(deviation, axis=1) / (window - 1))
    return mean, std


def _lag(values: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    out[k:] = values[:-k]
    return out


def compute_bar_features_v1(curated: pd.DataFrame) -> pd.DataFrame:
    """Features for the curated bars of one (symbol, session), sorted by ts."""
    bars = curated.sort_values("ts")
    return _v1_frame(bars, np.arange(len(bars)))


def compute_bar_features_v2(curated: pd.DataFrame) -> pd.DataFrame:
    """v1 plus imputed-window flags and the as-of gap columns, for one (symbol, session)."""
    bars = curated.sort_values("ts")
    return _v2_frame(bars, np.zeros(len(bars), dtype=np.int64), np.arange(len(bars)))


# -- many sessions at once -----------------------------------------------------------------------
# The same features for many (symbol, session)s in one pass over whole arrays: windows, lags and
# returns are computed over the concatenated sessions, then every value whose window or lag reaches
# back into an earlier session is set to NaN, exactly where the per-session functions have it
# (equivalence: platform_assets_tests/test_batched_features.py).


def _one_symbol_in_time_order(curated: pd.DataFrame) -> bool:
    """One symbol, time stamps strictly increasing: then (symbol, date, ts) order is the given order
    (a session's date never decreases while its time stamps increase)."""
    if len(curated) < 2:
        return True
    symbol = curated["symbol"].to_numpy()
    return bool((symbol == symbol[0]).all() and pd.Index(curated["ts"]).is_monotonic_increasing and pd.Index(curated["ts"]).is_unique)


def session_order(curated: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Bars sorted by (symbol, date, ts), each row's session start index and position in it."""
    if _one_symbol_in_time_order(curated):
        bars = curated.reset_index(drop=True)  # the usual input (one symbol's curated days): no sort of object columns
    else:
        bars = curated.sort_values(["symbol", "date", "ts"], kind="stable").reset_index(drop=True)
    n = len(bars)
    symbol, date = bars["symbol"].to_numpy(), bars["date"].to_numpy()
    new = np.ones(n, dtype=bool)
    new[1:] = (symbol[1:] != symbol[:-1]) | (date[1:] != date[:-1])
    starts = np.flatnonzero(new)
    group_start = np.repeat(starts, np.diff(np.append(starts, n)))
    return bars, group_start, np.arange(n) - group_start


def _trailing_in_session(values: np.ndarray, window: int, reducer, position: np.ndarray) -> np.ndarray:
    out = _trailing(values, window, reducer)
    out[position < window - 1] = np.nan
    return out


def _lag_in_session(values: np.ndarray, k: int, position: np.ndarray) -> np.ndarray:
    out = _lag(values, k) if len(values) > k else np.full(len(values), np.nan)
    out[position < k] = np.nan
    return out


def _v1_columns(bars: pd.DataFrame, position: np.ndarray) -> dict:
    ts = pd.DatetimeIndex(bars["ts"])
    close = bars["close"].to_numpy(dtype=float)
    volume = bars["volume"].to_numpy(dtype=float)
    ret = np.full(len(close), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ret[1:] = np.diff(np.log(close))
        ret[position == 0] = np.nan
        columns = {
            "date": bars["date"].to_numpy(),
            "symbol": bars["symbol"].to_numpy(),
            "ts": ts,
            "available_ts": ts + pd.Timedelta(minutes=1),
            "ret_1": ret,
            "log_volume": np.log1p(volume),
        }
        for window in WINDOWS:
            mean, std = _trailing_mean_std(ret, window)
            mean[position < window - 1] = std[position < window - 1] = np.nan  # windows reaching into the previous session
            columns[f"ret_mean_{window}"], columns[f"ret_vol_{window}"] = mean, std
        for lag in LAGS:
            columns[f"ret_lag_{lag}"] = _lag_in_session(ret, lag, position)
        mean_volume = _trailing_in_session(volume, 20, lambda w: w.mean(axis=1), position)
        columns["volume_ratio_20"] = volume / np.where(mean_volume == 0, np.nan, mean_volume)
    columns["is_imputed"] = bars["is_imputed"].to_numpy(dtype=bool)
    return columns


def _v1_frame(bars: pd.DataFrame, position: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(_v1_columns(bars, position))[KEY_COLUMNS + VALUE_COLUMNS]


def compute_bar_features_v1_many(curated: pd.DataFrame) -> pd.DataFrame:
    """``compute_bar_features_v1`` of every (symbol, session) in ``curated``, rows by (symbol, date, ts)."""
    bars, _, position = session_order(curated)
    return _v1_frame(bars, position)


def compute_bar_features_v2_many(curated: pd.DataFrame) -> pd.DataFrame:
    """``compute_bar_features_v2`` of every (symbol, session) in ``curated``, rows by (symbol, date, ts)."""
    return _v2_frame(*session_order(curated))


def _v2_frame(bars: pd.DataFrame, group_start: np.ndarray, position: np.ndarray) -> pd.DataFrame:
    """v2 of bars in session order (``group_start``: each row's session start index)."""
    out = _v1_frame(bars, position)
    not_real = (bars["dq_status"] != "ok").to_numpy()
    index = np.arange(len(bars))
    last = np.maximum.accumulate(np.where(not_real, index, -1)) if len(bars) else index
    last_in_session = np.where(last >= group_start, last - group_start, -1)
    for window in WINDOWS:
        out[f"imputed_in_window_{window}"] = (last_in_session >= 0) & (last_in_session >= position - window)
    out["gap_run_minutes"] = bars["gap_run_minutes"].to_numpy(dtype="int64")
    out["gap_type"] = bars["gap_type"].to_numpy(dtype=object)
    return out[KEY_COLUMNS + VALUE_COLUMNS_V2]
