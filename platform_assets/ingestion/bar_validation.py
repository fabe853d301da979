"""Vendor bars checked before they enter the raw layer (pure, vectorised, any source).

A bar is malformed when a price is non-finite or non-positive, high < low, open/close lie outside
[low, high], or its symbol is unknown (empty). Malformed rows are split off with a
``reject_reason`` so they can be quarantined and counted, never silently dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def reject_reasons(frame: pd.DataFrame) -> np.ndarray:
    """Per row: "" (fine) or why the bar is malformed (the most basic fault wins)."""
    o, h, l, c = (pd.to_numeric(frame[k], errors="coerce").to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    reason = np.full(len(frame), "", dtype=object)
    with np.errstate(invalid="ignore"):
        reason[(o > h) | (c > h) | (o < l) | (c < l)] = "ohlc_inconsistent"
        reason[h < l] = "high_below_low"
        reason[(o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)] = "non_positive_price"
    reason[~(np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c))] = "non_finite_price"
    reason[frame["symbol"].fillna("").astype(str).to_numpy() == ""] = "unknown_instrument"
    return reason


def split_malformed_bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid bars, malformed rows with ``reject_reason``), both re-indexed from 0."""
    if frame.empty:
        return frame.reset_index(drop=True), frame.assign(reject_reason=pd.Series(dtype=object)).reset_index(drop=True)
    reason = reject_reasons(frame)
    bad = reason != ""
    return frame[~bad].reset_index(drop=True), frame[bad].assign(reject_reason=reason[bad]).reset_index(drop=True)
