"""L2 feature group, version v1: order-book shape on the 1-minute bar grid.

For each minute of the session the last snapshot strictly before the bar end is used (the same
as-of rule as ``aligned_bars``), so no value looks ahead. Features: spread in bps, level-0 and
10-level size imbalance, microprice offset from the mid in bps, depth on each side, number of
non-empty levels, and the snapshot's age. Missing levels (zeros) add nothing to depth.

Version v2 = v1's columns computed from the last *sound* snapshot strictly before the bar end: a
crossed or locked book (best bid at or above best ask, both present: a vendor fault the
``l2_crossed_book`` DQ rule warns about) is passed over, so no negative spread or microprice
outside the book reaches a model; ``l2_age_s`` is the age of the snapshot used, and the same
staleness limit applies (NaN when no sound snapshot is fresh enough). ``crossed_book_skipped``
is true where the newest snapshot before the bar end (within the staleness limit) was crossed,
i.e. where v1 would have read the crossed book.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from platform_assets.alignment.transforms import BAR_LENGTH, DEFAULT_MAX_STALENESS, asof_snapshot_index_sessions
from resources.schemas import L2Book

FEATURE_GROUP = "l2_features"
KEY_COLUMNS = ["date", "symbol", "ts", "available_ts"]
VALUE_COLUMNS = [
    "spread_bps",
    "imbalance_1",
    "imbalance_10",
    "microprice_offset_bps",
    "bid_depth_10",
    "ask_depth_10",
    "bid_levels",
    "ask_levels",
    "l2_age_s",
]
VALUE_COLUMNS_V2 = [*VALUE_COLUMNS, "crossed_book_skipped"]


def crossed_snapshots(book: L2Book) -> np.ndarray:
    """Snapshots whose best bid is at or above the best ask, both present (the DQ rule's test)."""
    bid0, ask0 = book.bid_prices[:, 0], book.ask_prices[:, 0]
    return (bid0 > 0) & (ask0 > 0) & (bid0 >= ask0)


def snapshot_features(book: L2Book) -> pd.DataFrame:
    """Vectorised per-snapshot book features."""
    bid0, ask0 = book.bid_prices[:, 0], book.ask_prices[:, 0]
    bsz0, asz0 = book.bid_sizes[:, 0].astype(float), book.ask_sizes[:, 0].astype(float)
    valid = (bid0 > 0) & (ask0 > 0)
    mid = np.where(valid, (bid0 + ask0) / 2.0, np.nan)
    bid_depth = book.bid_sizes.sum(axis=1).astype(float)
    ask_depth = book.ask_sizes.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        micro = (bid0 * asz0 + ask0 * bsz0) / (bsz0 + asz0)
        return pd.DataFrame(
            {
                "spread_bps": (ask0 - bid0) / mid * 1e4,
                "imbalance_1": (bsz0 - asz0) / (bsz0 + asz0),
                "imbalance_10": (bid_depth - ask_depth) / (bid_depth + ask_depth),
                "microprice_offset_bps": (micro - mid) / mid * 1e4,
                "bid_depth_10": bid_depth,
                "ask_depth_10": ask_depth,
                "bid_levels": (book.bid_prices > 0).sum(axis=1),
                "ask_levels": (book.ask_prices > 0).sum(axis=1),
            }
        )


def compute_l2_features_v1(
    timeline: pd.DatetimeIndex, book: L2Book, *, symbol: str, day, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """One row per session minute of one (symbol, session)."""
    return compute_l2_features_v1_many([(day, timeline, book)], symbol=symbol, max_staleness=max_staleness)


def compute_l2_features_v1_many(
    sessions: Sequence[tuple[object, pd.DatetimeIndex, L2Book]], *, symbol: str, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """``compute_l2_features_v1`` of many ``(day, timeline, book)`` sessions of one symbol (in time
    order) in one vectorised pass; equal, row for row, to each session alone concatenated."""
    timeline, lengths, book, bar_end, index = _asof_join(sessions, max_staleness)
    found = index >= 0
    per_snapshot = snapshot_features(book)
    days = np.empty(len(sessions), dtype=object)
    days[:] = [day for day, _, _ in sessions]
    columns = {"date": np.repeat(days, lengths), "symbol": symbol, "ts": timeline, "available_ts": timeline + BAR_LENGTH}
    for column in VALUE_COLUMNS[:-1]:
        values = np.full(len(timeline), np.nan)
        values[found] = per_snapshot[column].to_numpy(dtype=float)[index[found]]
        columns[column] = values
    age = np.full(len(timeline), np.nan)
    age[found] = (bar_end[found] - book.timestamp[index[found]]) / np.timedelta64(1, "s")
    columns["l2_age_s"] = age
    return pd.DataFrame(columns)[KEY_COLUMNS + VALUE_COLUMNS]


def compute_l2_features_v2(
    timeline: pd.DatetimeIndex, book: L2Book, *, symbol: str, day, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """Version v2 of one (symbol, session): v1 over sound snapshots plus ``crossed_book_skipped``."""
    return compute_l2_features_v2_many([(day, timeline, book)], symbol=symbol, max_staleness=max_staleness)


def compute_l2_features_v2_many(
    sessions: Sequence[tuple[object, pd.DatetimeIndex, L2Book]], *, symbol: str, max_staleness: pd.Timedelta = DEFAULT_MAX_STALENESS
) -> pd.DataFrame:
    """``compute_l2_features_v2`` of many sessions of one symbol in one pass (rows in session order)."""
    sound = [(day, timeline, book.take(np.flatnonzero(~crossed_snapshots(book)))) for day, timeline, book in sessions]
    features = compute_l2_features_v1_many(sound, symbol=symbol, max_staleness=max_staleness)
    timeline, _, book, _, newest = _asof_join(sessions, max_staleness)
    skipped = np.zeros(len(timeline), dtype=bool)
    skipped[newest >= 0] = crossed_snapshots(book)[newest[newest >= 0]]
    return features.assign(crossed_book_skipped=skipped)[KEY_COLUMNS + VALUE_COLUMNS_V2]


def _asof_join(sessions: Sequence[tuple[object, pd.DatetimeIndex, L2Book]], max_staleness: pd.Timedelta):
    """The sessions' minutes and snapshots laid end to end, and for each minute the index of the
    last snapshot of its own session strictly before the bar end (-1: none fresh enough):
    ``(timeline, minutes per session, book, bar ends, index)``."""
    timeline = _concat_timelines([t for _, t, _ in sessions])
    lengths = [len(t) for _, t, _ in sessions]
    book = L2Book.concat([b for _, _, b in sessions])
    offsets = np.cumsum([0, *(len(b) for _, _, b in sessions)])
    bar_end = (timeline + BAR_LENGTH).tz_convert("UTC").tz_localize(None).to_numpy()
    index = asof_snapshot_index_sessions(bar_end, np.repeat(np.arange(len(sessions)), lengths), book.timestamp, offsets, max_staleness)
    return timeline, lengths, book, bar_end, index


def _concat_timelines(timelines: Sequence[pd.DatetimeIndex]) -> pd.DatetimeIndex:
    if not timelines:
        return pd.DatetimeIndex([], tz="UTC")
    return timelines[0].append(list(timelines[1:])) if len(timelines) > 1 else timelines[0]
