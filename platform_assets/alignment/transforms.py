"""As-of join of 1-minute bars with the L2 top of book, never looking ahead.

A bar stamped ``ts`` covers ``[ts, ts + 1 min)`` and is known at its end, ``bar_end``. Each bar is
joined with the **last snapshot taken strictly before** ``bar_end``; a snapshot older than
``max_staleness`` is not used (the L2 columns are null and ``l2_stale`` is true). So no aligned row
ever uses a snapshot taken after the bar closed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from resources.schemas import L2Book

BAR_LENGTH = pd.Timedelta(minutes=1)
DEFAULT_MAX_STALENESS = pd.Timedelta(minutes=5)
TOP_OF_BOOK_COLUMNS = ["l2_ts", "bid_px_0", "bid_sz_0", "ask_px_0", "ask_sz_0"]


def asof_snapshot_index(bar_end: np.ndarray, snapshot_ts: np.ndarray, max_staleness: pd.Timedelta) -> np.ndarray:
    """For each bar end: index of the last snapshot strictly before it within the staleness, else -1."""
    return _asof_index(bar_end, np.zeros(len(bar_end), np.int64), snapshot_ts, np.array([0, len(snapshot_ts)]), max_staleness)


def asof_snapshot_index_sessions(
    bar_end: np.ndarray, bar_session: np.ndarray, snapshot_ts: np.ndarray, session_offsets: np.ndarray, max_staleness: pd.Timedelta
) -> np.ndarray:
    """``asof_snapshot_index`` of many sessions at once: bar ``i`` sees only the snapshots of its
    session ``bar_session[i]``, rows ``session_offsets[k]:session_offsets[k + 1]`` of ``snapshot_ts``
    (each session sorted). Returns indexes into ``snapshot_ts``, -1 where no snapshot of the bar's
    own session qualifies: exactly what each session alone gives."""
    if not (len(snapshot_ts) and np.any(snapshot_ts[1:] < snapshot_ts[:-1])):
        return _asof_index(bar_end, bar_session, snapshot_ts, session_offsets, max_staleness)
    out = np.full(len(bar_end), -1, dtype=np.int64)  # sessions overlap in time: one at a time
    for k in np.unique(bar_session):
        rows, lo, hi = bar_session == k, session_offsets[k], session_offsets[k + 1]
        local = asof_snapshot_index(bar_end[rows], snapshot_ts[lo:hi], max_staleness)
        out[rows] = np.where(local >= 0, local + lo, -1)
    return out


def _asof_index(bar_end, bar_session, snapshot_ts, session_offsets, max_staleness) -> np.ndarray:
    """The as-of join over snapshots in time order across all sessions: the last snapshot before
    the bar end within the bar's own session is the global one clipped to the session's last row;
    one before the session's first row means none."""
    if len(snapshot_ts) == 0:
        return np.full(len(bar_end), -1, dtype=np.int64)
    first, last = session_offsets[bar_session], session_offsets[bar_session + 1] - 1
    index = np.minimum(np.searchsorted(snapshot_ts, bar_end, side="left") - 1, last)
    usable = index >= first
    age = np.where(usable, bar_end - snapshot_ts[np.clip(index, 0, None)], np.timedelta64(0, "ns"))
    usable &= age <= max_staleness.to_timedelta64()
    return np.where(usable, index, -1)


def align_top_of_book(
    bars: pd.DataFrame, book: L2Book, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """Curated bars of one (symbol, session) plus the as-of top of book and derived quotes."""
    return align_sessions_top_of_book(bars, [(0, len(bars), book)], max_staleness)


def align_sessions_top_of_book(
    bars: pd.DataFrame, sessions: Sequence[tuple[int, int, L2Book]], max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """``align_top_of_book`` of many sessions of a symbol in one vectorised pass: ``sessions`` lists
    each session's bar rows ``start:stop`` of ``bars`` (in time order, covering every row) and its
    book. Equal, row for row, to aligning each session alone and concatenating."""
    book = L2Book.concat([b for _, _, b in sessions])
    offsets = np.cumsum([0, *(len(b) for _, _, b in sessions)])
    bar_session = np.repeat(np.arange(len(sessions)), [stop - start for start, stop, _ in sessions])
    if len(bar_session) != len(bars):
        raise ValueError(f"sessions cover {len(bar_session)} of the {len(bars)} bar rows")
    bar_end = (pd.DatetimeIndex(bars["ts"]) + BAR_LENGTH).tz_convert("UTC").tz_localize(None).to_numpy()
    index = asof_snapshot_index_sessions(bar_end, bar_session, book.timestamp, offsets, max_staleness)
    found = index >= 0
    rows = index[found]

    def pick(values: np.ndarray, empty):
        out = np.full(len(bars), empty, dtype=np.asarray(empty).dtype)
        out[found] = values[rows]
        return out

    bid, ask = pick(book.bid_prices[:, 0], np.nan), pick(book.ask_prices[:, 0], np.nan)
    l2_ts = pick(book.timestamp, np.datetime64("NaT", "ns"))
    mid = (bid + ask) / 2.0
    spread = ask - bid
    age_ns = (bar_end - l2_ts).astype(np.int64)
    aligned = bars.assign(
        bar_end=pd.DatetimeIndex(bar_end).tz_localize("UTC"),
        l2_ts=pd.DatetimeIndex(l2_ts).tz_localize("UTC"),
        bid_px_0=bid,
        ask_px_0=ask,
        bid_sz_0=pick(book.bid_sizes[:, 0].astype(float), np.nan),
        ask_sz_0=pick(book.ask_sizes[:, 0].astype(float), np.nan),
        mid_px=mid,
        spread=spread,
        spread_bps=spread / mid * 1e4,
        l2_age_s=np.where(found, age_ns / 1_000_000_000, np.nan),  # what Series.dt.total_seconds computes
        l2_stale=~found,
        book_crossed=found & (bid >= ask),
    )
    return aligned
