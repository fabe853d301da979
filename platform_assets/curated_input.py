"""The input every layer derived from curated bars starts from: one (symbol, day) of curated bars,
or the outcome saying why there is none (DQ-blocked, or no curated bars stored)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from platform_assets.quality.checks import is_blocked
from platform_assets.symbol_days import Outcome, blocked, no_input
from resources.lake import CURATED_BARS, ParquetLake


def curated_day(lake: ParquetLake, symbol: str, day: dt.date) -> pd.DataFrame | Outcome:
    """The day's curated bars, or a ``blocked`` / ``no_input`` outcome for the step to return."""
    if is_blocked(lake, "curated_bars", symbol, day):
        return blocked("curated bars failed an error DQ rule")
    bars = lake.read(CURATED_BARS, [symbol], [day])
    return no_input("no curated bars") if bars.empty else bars
