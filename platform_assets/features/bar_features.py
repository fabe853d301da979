"""Bar feature group, version v1: returns, rolling means/volatilities and lags of 1-min returns.

Computed per (symbol, session) from curated bars; every window resets at the session open, so a
partition depends on its own session only and the overnight jump never enters a 1-min return.
No look-ahead: each value at ``ts`` uses bars stamped ``<= ts`` only (rolling windows are
trailing, lags shift forward in time), and the row is known once its bar closed
(``available_ts = ts + 1 min``). Windows need a full window of bars (``min_periods = window``);
earlier values are NaN.
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


def compute_bar_features_v1(curated: pd.DataFrame) -> pd.DataFrame:
    """Features for the curated bars of one (symbol, session), sorted by ts."""
    bars = curated.sort_values("ts").reset_index(drop=True)
    out = pd.DataFrame({"date": bars["date"], "symbol": bars["symbol"], "ts": bars["ts"]})
    out["available_ts"] = pd.DatetimeIndex(bars["ts"]) + pd.Timedelta(minutes=1)
    log_close = np.log(bars["close"].astype(float))
    ret = log_close.diff()
    out["ret_1"] = ret
    out["log_volume"] = np.log1p(bars["volume"].astype(float))
    for window in WINDOWS:
        rolling = ret.rolling(window, min_periods=window)
        out[f"ret_mean_{window}"] = rolling.mean()
        out[f"ret_vol_{window}"] = rolling.std(ddof=1)
    for lag in LAGS:
        out[f"ret_lag_{lag}"] = ret.shift(lag)
    mean_volume = bars["volume"].astype(float).rolling(20, min_periods=20).mean()
    out["volume_ratio_20"] = bars["volume"].astype(float) / mean_volume.replace(0.0, np.nan)
    out["is_imputed"] = bars["is_imputed"].astype(bool)
    return out[KEY_COLUMNS + VALUE_COLUMNS]
