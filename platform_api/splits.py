"""Time-based train/test splits that cannot leak labels: purging and an embargo (pure functions).

A label at ``ts`` is only known at its ``label_available_ts`` (``ts + (max horizon + 1) min``), so a
training row whose label window ``[ts, label_available_ts)`` overlaps the test period has seen
test-period prices: it is **purged**. Rows just after the test period share its information through
serially correlated features; an **embargo** drops training rows stamped within ``embargo`` after
the test period. Folds are contiguous blocks of the sorted unique timestamps; ``walk_forward``
(default) trains only on blocks before the test block, otherwise on blocks on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


def purged_time_splits(
    frame: pd.DataFrame,
    n_splits: int = 5,
    *,
    embargo: pd.Timedelta | str = "0min",
    walk_forward: bool = True,
    ts_column: str = "ts",
    available_column: str = "label_available_ts",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_positions, test_positions)`` (integer positions into ``frame``) per fold.

    ``frame`` needs ``ts_column`` and ``available_column`` (``TrainingDataset.model_frame()`` has
    both). With ``walk_forward`` the first block is never a test block (nothing to train on).
    """
    if n_splits < 2:
        raise ValueError("n_splits must be at least 2")
    missing = {ts_column, available_column} - set(frame.columns)
    if missing:
        raise ValueError(f"purged_time_splits needs columns {sorted(missing)}")
    embargo = pd.Timedelta(embargo)
    ts = pd.DatetimeIndex(frame[ts_column])
    available = pd.DatetimeIndex(frame[available_column])
    available = available.where(~available.isna(), ts)  # a row without a label blocks nothing after ts
    blocks = np.array_split(np.unique(ts.asi8), n_splits)
    for index, block in enumerate(blocks):
        if walk_forward and index == 0 or not len(block):
            continue
        test_start, test_end = pd.Timestamp(block[0], tz="UTC"), pd.Timestamp(block[-1], tz="UTC")
        in_test = (ts >= test_start) & (ts <= test_end)
        test_known = available[in_test].max()
        candidate = ~in_test & ((ts < test_start) if walk_forward else True)
        overlaps = (ts <= test_known) & (available > test_start)  # label window meets the test period
        embargoed = (ts > test_end) & (ts <= test_end + embargo)
        train = candidate & ~overlaps & ~embargoed
        yield np.flatnonzero(train), np.flatnonzero(in_test)
