"""Seed 001 section 3.7.2: the feature pipeline entry point and the design's feature functions.

    run_feature_pipeline(date(2024, 12, 2), ["AAPL"], "bar_features", "v1")
    rolling_mean(bars, window=20)          # + close_rolling_mean_20
    rolling_volatility(bars, window=20)    # + close_rolling_volatility_20 (std of 1-bar log returns)
    lag(bars, periods=[1, 5, 10])          # + close_lag_1, close_lag_5, close_lag_10

``run_feature_pipeline`` materializes the platform's feature asset of ``feature_group`` for the
date (every registered version is kept current; ``version`` must be registered). The functions
return a copy of ``df`` with the new column(s); they are trailing (a row sees only itself and
earlier rows of its entity, by ``time_field``: no look-ahead) and need ``window`` rows before
giving a value. ``by_session=True`` restarts them each New York session, as the platform's
``bar_features`` do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from src.pipelines.runs import PipelineRunError, materialize_date

__all__ = ["PipelineRunError", "lag", "rolling_mean", "rolling_volatility", "run_feature_pipeline"]


def run_feature_pipeline(date: dt.date, symbols: list[str], feature_group: str, version: str) -> None:
    """Compute ``feature_group`` (``bar_features`` / ``l2_features``) for ``date`` and ``symbols``;
    ``KeyError`` for an unknown group or version, ``PipelineRunError`` when the run failed."""
    from platform_assets.features.registry import FEATURE_GROUPS

    if feature_group not in FEATURE_GROUPS:
        raise KeyError(f"unknown feature group {feature_group!r}; known: {', '.join(sorted(FEATURE_GROUPS))}")
    if version not in FEATURE_GROUPS[feature_group]:
        raise KeyError(f"{feature_group} has no version {version!r}; registered: {', '.join(sorted(FEATURE_GROUPS[feature_group]))}")
    materialize_date([feature_group], date, symbols)


def _grouped(df: pd.DataFrame, column: str, entity_key: str, time_field: str, by_session: bool):
    """(the frame in (entity, time) order, ``column`` grouped per entity [and session] in that order)."""
    for needed in (column, entity_key, time_field):
        if needed not in df.columns:
            raise ValueError(f"the frame has no column {needed!r}")
    ordered = df.sort_values([entity_key, time_field], kind="stable")
    keys = [ordered[entity_key]]
    if by_session:
        keys.append(pd.to_datetime(ordered[time_field], utc=True).dt.tz_convert("America/New_York").dt.date)
    return ordered, ordered[column].astype(float).groupby(keys, sort=False)


def _assign(df: pd.DataFrame, ordered: pd.DataFrame, columns: dict[str, pd.Series]) -> pd.DataFrame:
    out = df.copy()
    for name, values in columns.items():
        out[name] = values.reindex(ordered.index).reindex(df.index)
    return out


def rolling_mean(df: pd.DataFrame, window: int = 20, *, column: str = "close", entity_key: str = "symbol", time_field: str = "ts",
                 by_session: bool = False) -> pd.DataFrame:
    """``df`` plus ``<column>_rolling_mean_<window>``: the mean of the last ``window`` values."""
    if window < 1:
        raise ValueError("window must be at least 1")
    ordered, groups = _grouped(df, column, entity_key, time_field, by_session)
    values = groups.transform(lambda v: v.rolling(window, min_periods=window).mean())
    return _assign(df, ordered, {f"{column}_rolling_mean_{window}": values})


def rolling_volatility(df: pd.DataFrame, window: int = 20, *, column: str = "close", entity_key: str = "symbol", time_field: str = "ts",
                       by_session: bool = False) -> pd.DataFrame:
    """``df`` plus ``<column>_rolling_volatility_<window>``: the standard deviation (ddof 1) of the
    last ``window`` one-row log returns of ``column``."""
    if window < 2:
        raise ValueError("window must be at least 2")
    ordered, groups = _grouped(df, column, entity_key, time_field, by_session)
    values = groups.transform(lambda v: np.log(v).diff().rolling(window, min_periods=window).std())
    return _assign(df, ordered, {f"{column}_rolling_volatility_{window}": values})


def lag(df: pd.DataFrame, periods: Sequence[int] = (1, 5, 10), *, column: str = "close", entity_key: str = "symbol", time_field: str = "ts",
        by_session: bool = False) -> pd.DataFrame:
    """``df`` plus ``<column>_lag_<p>`` for each period: the value ``p`` rows earlier (never later)."""
    periods = list(periods)
    if not periods or any(int(p) < 1 for p in periods):
        raise ValueError("periods must be positive row counts (a lag never looks ahead)")
    ordered, groups = _grouped(df, column, entity_key, time_field, by_session)
    return _assign(df, ordered, {f"{column}_lag_{int(p)}": groups.shift(int(p)) for p in periods})
