"""Corporate-action adjustment of retrieved prices (``adjustment=`` / ``adjustment_as_of=``).

* ``adjustment="none"`` (default everywhere): prices as traded, nothing added.
* ``"split"``: splits and reverse splits; ``"split_dividend"``: cash dividends too.

Curated bars (1 min and resampled) are *back-adjusted*: every price before an ex date is
multiplied by the action's factor (volume divided by the split factor), so the series is
continuous and the newest prices are the traded ones. ``adjustment_as_of`` picks the date whose
knowledge is applied: by default the last session of the request (only actions announced by then
count: point in time for the query); a later date gives the research series "as of" that date,
labelled ``adjustment_view="research"`` (``"point_in_time"`` otherwise) in the frame's columns.

Training and inference rows gain ``close_adj`` and ``adj_factor_pit``: the row's close times the
forward factor known on its own session (``platform_assets.reference.actions.pit_index``), so a
row at ``t`` never reflects an action announced after ``t``; with ``adjustment_as_of`` the
research back-adjustment is used instead and the metadata says ``point_in_time: False``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from platform_api.errors import InvalidOptionError
from platform_assets.calendars import STOCKS
from platform_assets.reference.actions import ADJUSTMENTS, adjust_bars, back_factors, pit_index
from resources.reference_store import read_actions

ADJUSTMENT_COLUMNS = ["adjustment", "adjusted_as_of", "adjustment_view", "adj_back_factor"]


def parse_adjustment(adjustment: str, adjustment_as_of) -> tuple[str, dt.date | None]:
    """Validated ``(adjustment, as_of date or None)``; ``InvalidOptionError`` naming the problem."""
    if adjustment not in ADJUSTMENTS:
        raise InvalidOptionError(f"invalid adjustment {adjustment!r}; allowed: {', '.join(ADJUSTMENTS)}")
    if adjustment_as_of is None:
        return adjustment, None
    if adjustment == "none":
        raise InvalidOptionError("adjustment_as_of needs adjustment='split' or 'split_dividend'")
    if isinstance(adjustment_as_of, (int, float)) and not isinstance(adjustment_as_of, bool):
        raise InvalidOptionError(f"adjustment_as_of must be a date, got the number {adjustment_as_of!r}")
    try:
        stamp = pd.Timestamp(adjustment_as_of)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(f"adjustment_as_of {adjustment_as_of!r} is not a date: {error}") from None
    if pd.isna(stamp):
        raise InvalidOptionError("adjustment_as_of must be a date, got NaT")
    return adjustment, stamp.date()


def _session_dates(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).tz_convert(STOCKS.timezone).date


def adjust_curated(bars: pd.DataFrame, lake_root, adjustment: str, as_of: dt.date | None) -> pd.DataFrame:
    """Back-adjusted 1-min curated bars with the labelling columns (``ADJUSTMENT_COLUMNS``)."""
    if adjustment == "none" or bars.empty:
        return bars
    actions = read_actions(lake_root, sorted(bars["symbol"].unique()))
    last = max(pd.to_datetime(bars["date"]).dt.date)
    effective = as_of or last
    out = []
    for symbol, frame in bars.groupby("symbol", sort=True):
        adjusted = adjust_bars(frame, actions[actions["symbol"] == symbol], adjustment, effective)
        out.append(adjusted)
    result = pd.concat(out).sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    result["adjustment"] = adjustment
    result["adjusted_as_of"] = effective.isoformat()
    result["adjustment_view"] = "research" if effective > last else "point_in_time"
    return result


def add_adjusted_close(rows: pd.DataFrame, closes: pd.DataFrame, lake_root, adjustment: str, as_of: dt.date | None) -> tuple[pd.DataFrame, dict]:
    """``rows`` (symbol, ts, ...) plus ``close_adj`` and ``adj_factor_pit`` from ``closes`` (symbol, ts, close)."""
    out = rows.merge(closes[["symbol", "ts", "close"]].rename(columns={"close": "_close"}), on=["symbol", "ts"], how="left")
    actions = read_actions(lake_root, sorted(out["symbol"].unique()))
    days = _session_dates(out["ts"])
    factor = np.ones(len(out))
    for symbol in out["symbol"].unique():
        mask = (out["symbol"] == symbol).to_numpy()
        mine = actions[actions["symbol"] == symbol]
        unique = sorted(set(days[mask]))
        values = pit_index(mine, unique, adjustment) if as_of is None else back_factors(mine, unique, as_of, adjustment)
        lookup = dict(zip(unique, values))
        factor[mask] = [lookup[d] for d in days[mask]]
    out["adj_factor_pit" if as_of is None else "adj_back_factor"] = factor
    out["close_adj"] = out.pop("_close").astype(float) * factor
    info = {"adjustment": adjustment, "adjustment_as_of": as_of.isoformat() if as_of else None, "point_in_time": as_of is None,
            "how": "close_adj = close x forward factor known on the row's session" if as_of is None
            else f"close_adj = close back-adjusted with the actions known on {as_of.isoformat()} (research view, not point in time)"}
    return out, info
