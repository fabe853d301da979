"""Seed 001 section 3.6: the gap engine as a function over any bars DataFrame.

    from src.data_quality.gaps import GapConfig, fill_gaps

    filled, gap_mask = fill_gaps(bars, GapConfig(frequency="1min", entity_key="symbol", time_field="ts",
                                                 imputation_strategies={"close": "ffill", "volume": "zero"}))

* The expected timeline is built per entity from the trading calendar (``calendar``: ``XNYS``
  sessions, early closes included; ``24/7``: whole UTC days) for every session (New York date;
  UTC date for 24/7) the input touches, at ``frequency`` from each session's open.
* ``filled`` is time-indexed (``time_field`` as a UTC DatetimeIndex) with one row per expected
  timestamp and entity, sorted by (entity, time); input rows off the grid (outside the session or
  between grid points) are not in it, and a repeated (entity, time) keeps its first row.
* ``gap_mask`` has the same index: ``is_gap`` (no input row at that timestamp) and one
  ``<column>_imputed`` per column with a strategy (True where the value was filled).
* Strategies, per column, applied inside one (entity, session): ``ffill`` (the last real value),
  ``previous_close`` (the last real ``close``: a gap minute's open/high/low as the platform's curated
  bars fill them), ``zero``, ``none`` (left missing), and the two that look ahead, for research
  only: ``bfill`` and ``interpolate`` (linear). The default fills prices with the previous close
  and volume / trade count with zero, as ``curated_bars`` does.

The platform's ``curated_bars`` asset goes further (each gap classified as no_trade / halt /
feed_gap / invalid from the L2 book, bad ticks rejected, ``dq_status``): see ``platform_assets.curation``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from platform_assets.calendars import CRYPTO, STOCKS, session_bounds

ImputationStrategy = Literal["ffill", "previous_close", "zero", "none", "bfill", "interpolate"]
STRATEGIES = ("ffill", "previous_close", "zero", "none", "bfill", "interpolate")
GapMask = pd.DataFrame
"""Boolean frame aligned with the filled frame: ``is_gap`` and ``<column>_imputed`` columns."""

DEFAULT_STRATEGIES: dict[str, ImputationStrategy] = {
    "open": "previous_close", "high": "previous_close", "low": "previous_close", "close": "ffill", "vwap": "previous_close",
    "volume": "zero", "trade_count": "zero",
}
CALENDARS = {"XNYS": STOCKS, "24/7": CRYPTO}


@dataclass(frozen=True)
class GapConfig:
    """How ``fill_gaps`` builds the timeline and fills it."""

    frequency: str = "1min"
    entity_key: str = "symbol"
    time_field: str = "ts"
    imputation_strategies: dict[str, ImputationStrategy] = field(default_factory=lambda: dict(DEFAULT_STRATEGIES))
    calendar: str = "XNYS"  # extra: the trading calendar of the timeline ("XNYS" or "24/7")

    def __post_init__(self) -> None:
        if self.calendar not in CALENDARS:
            raise ValueError(f"unknown calendar {self.calendar!r}; expected one of {', '.join(CALENDARS)}")
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.frequency))
        if step <= pd.Timedelta(0):
            raise ValueError(f"frequency must be positive, got {self.frequency!r}")
        bad = {column: strategy for column, strategy in self.imputation_strategies.items() if strategy not in STRATEGIES}
        if bad:
            raise ValueError(f"unknown imputation strategies {bad}; expected one of {', '.join(STRATEGIES)}")


def _session_days(times: pd.Series, calendar: str) -> pd.Series:
    zone = "UTC" if calendar == "24/7" else CALENDARS[calendar].timezone
    return times.dt.tz_convert(zone).dt.date


def _timeline(day: dt.date, cfg: GapConfig) -> pd.DatetimeIndex:
    market = CALENDARS[cfg.calendar]
    try:
        start, end = session_bounds(market, day)
    except (KeyError, ValueError):  # not a session of the calendar
        return pd.DatetimeIndex([], tz="UTC")
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq=cfg.frequency, inclusive="left")


def fill_gaps(df: pd.DataFrame, cfg: GapConfig | None = None) -> tuple[pd.DataFrame, GapMask]:
    """(bars on the full expected timeline with gaps filled, the gap mask): see the module docstring.
    ``df`` is not modified."""
    cfg = cfg or GapConfig()
    for column in (cfg.entity_key, cfg.time_field):
        if column not in df.columns:
            raise ValueError(f"fill_gaps needs the column {column!r} (GapConfig.entity_key / time_field)")
    missing = sorted(c for c, s in cfg.imputation_strategies.items() if c not in df.columns and s != "none")
    if "previous_close" in cfg.imputation_strategies.values() and "close" not in df.columns:
        missing.append("close (for previous_close)")
    if missing:
        raise ValueError(f"columns with an imputation strategy are missing: {', '.join(missing)}")
    data = df.copy()
    data[cfg.time_field] = pd.to_datetime(data[cfg.time_field], utc=True)
    data = data.sort_values([cfg.entity_key, cfg.time_field], kind="stable").drop_duplicates([cfg.entity_key, cfg.time_field], keep="first")
    data["_session"] = _session_days(data[cfg.time_field], cfg.calendar)
    frames, masks = [], []
    for (entity, day), rows in data.groupby([cfg.entity_key, "_session"], sort=True):
        timeline = _timeline(day, cfg)
        if not len(timeline):
            continue
        real = rows.drop(columns="_session").set_index(cfg.time_field)
        on_grid = real.reindex(timeline)
        is_gap = ~timeline.isin(real.index)
        on_grid[cfg.entity_key] = entity
        mask = pd.DataFrame({"is_gap": is_gap}, index=timeline)
        last_close = on_grid["close"].ffill() if "close" in on_grid.columns else None
        for column, strategy in cfg.imputation_strategies.items():
            if column not in on_grid.columns:
                continue
            values = on_grid[column]
            empty = values.isna().to_numpy()
            if strategy == "ffill":
                filled = values.ffill()
            elif strategy == "previous_close":
                filled = values.where(~values.isna(), last_close)
            elif strategy == "zero":
                filled = values.fillna(0)
            elif strategy == "bfill":
                filled = values.bfill()
            elif strategy == "interpolate":
                filled = values.astype(float).interpolate(limit_area="inside")
            else:
                filled = values
            on_grid[column] = filled
            mask[f"{column}_imputed"] = empty & ~filled.isna().to_numpy()
        frames.append(on_grid)
        masks.append(mask)
    if not frames:
        columns = [c for c in df.columns if c != cfg.time_field]
        empty_index = pd.DatetimeIndex([], tz="UTC", name=cfg.time_field)
        mask_columns = ["is_gap", *(f"{c}_imputed" for c in cfg.imputation_strategies if c in df.columns)]
        return pd.DataFrame(columns=columns, index=empty_index), pd.DataFrame(columns=mask_columns, index=empty_index, dtype=bool)
    filled = pd.concat(frames)
    for column, dtype in df.dtypes.items():  # integer columns back to their type where nothing is left missing
        if column in filled.columns and pd.api.types.is_integer_dtype(dtype) and not filled[column].isna().any():
            filled[column] = filled[column].astype(dtype)
    gap_mask = pd.concat(masks).fillna(False).astype(bool)
    filled.index.name = gap_mask.index.name = cfg.time_field
    ordered = [c for c in df.columns if c != cfg.time_field]
    return filled[ordered], gap_mask
