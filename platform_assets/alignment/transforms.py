"""As-of join of 1-minute bars with the L2 top of book, never looking ahead.

A bar stamped ``ts`` covers ``[ts, ts + 1 min)`` and is known at its end, ``bar_end``. Each bar is
joined with the **last snapshot taken strictly before** ``bar_end``; a snapshot older than
``max_staleness`` is not used (the L2 columns are null and ``l2_stale`` is true). So no aligned row
ever uses a snapshot taken after the bar closed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from resources.schemas import L2Book

BAR_LENGTH = pd.Timedelta(minutes=1)
DEFAULT_MAX_STALENESS = pd.Timedelta(minutes=5)
TOP_OF_BOOK_COLUMNS = ["l2_ts", "bid_px_0", "bid_sz_0", "ask_px_0", "ask_sz_0"]


def asof_snapshot_index(bar_end: np.ndarray, snapshot_ts: np.ndarray, max_staleness: pd.Timedelta) -> np.ndarray:
    """For each bar end: index of the last snapshot strictly before it within the staleness, else -1."""
    if len(snapshot_ts) == 0:
        return np.full(len(bar_end), -1, dtype=np.int64)
    index = np.searchsorted(snapshot_ts, bar_end, side="left") - 1
    usable = index >= 0
    age = np.where(usable, bar_end - snapshot_ts[np.clip(index, 0, None)], np.timedelta64(0, "ns"))
    usable &= age <= max_staleness.to_timedelta64()
    return np.where(usable, index, -1)


def align_top_of_book(
    bars: pd.DataFrame, book: L2Book, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """Curated bars of one (symbol, session) plus the as-of top of book and derived quotes."""
    aligned = bars.copy()
    bar_end = (pd.DatetimeIndex(bars["ts"]) + BAR_LENGTH).tz_convert("UTC").tz_localize(None).to_numpy()
    index = asof_snapshot_index(bar_end, book.timestamp, max_staleness)
    found = index >= 0
    rows = index[found]

    def pick(values: np.ndarray, empty):
        out = np.full(len(bars), empty, dtype=np.asarray(empty).dtype)
        out[found] = values[rows]
        return out

    aligned["bar_end"] = pd.DatetimeIndex(bar_end).tz_localize("UTC")
    aligned["l2_ts"] = pd.DatetimeIndex(pick(book.timestamp, np.datetime64("NaT", "ns"))).tz_localize("UTC")
    aligned["bid_px_0"] = pick(book.bid_prices[:, 0], np.nan)
    aligned["ask_px_0"] = pick(book.ask_prices[:, 0], np.nan)
    aligned["bid_sz_0"] = pick(book.bid_sizes[:, 0].astype(float), np.nan)
    aligned["ask_sz_0"] = pick(book.ask_sizes[:, 0].astype(float), np.nan)
    aligned["mid_px"] = (aligned["bid_px_0"] + aligned["ask_px_0"]) / 2.0
    aligned["spread"] = aligned["ask_px_0"] - aligned["bid_px_0"]
    aligned["spread_bps"] = aligned["spread"] / aligned["mid_px"] * 1e4
    aligned["l2_age_s"] = (aligned["bar_end"] - aligned["l2_ts"]).dt.total_seconds()
    aligned["l2_stale"] = ~found
    aligned["book_crossed"] = found & (aligned["bid_px_0"] >= aligned["ask_px_0"]).to_numpy()
    return aligned
