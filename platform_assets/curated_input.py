"""The input every layer derived from curated bars starts from: one (symbol, day) of curated bars,
or the outcome saying why there is none (DQ-blocked, or no curated bars stored)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from platform_assets.quality.checks import blocked_dates, is_blocked
from platform_assets.symbol_days import Outcome, blocked, kept, no_input
from resources.lake import CURATED_BARS, ParquetLake


def curated_day(lake: ParquetLake, symbol: str, day: dt.date) -> pd.DataFrame | Outcome:
    """The day's curated bars, or a ``blocked`` / ``no_input`` outcome for the step to return."""
    if is_blocked(lake, "curated_bars", symbol, day):
        return blocked("curated bars failed an error DQ rule")
    bars = lake.read(CURATED_BARS, [symbol], [day])
    return no_input("no curated bars") if bars.empty else bars


def curated_days(
    lake: ParquetLake, symbol: str, days: list[dt.date], is_kept=None, columns: list[str] | None = None
) -> tuple[pd.DataFrame, dict[dt.date, Outcome]]:
    """Curated bars of a symbol's dates in one read, and the outcome of each date that gets none:
    kept (``is_kept(day)``: its output is stored and must stay), DQ-blocked, or no curated bars
    stored. ``curated_day`` for many dates at once; ``columns``: only these (``date`` always)."""
    outcomes = {day: kept() for day in days if is_kept is not None and is_kept(day)}
    blocked_days = blocked_dates(lake, "curated_bars", symbol) if len(outcomes) < len(days) else set()  # no scan when all are kept
    outcomes.update({day: blocked("curated bars failed an error DQ rule") for day in days if day not in outcomes and day in blocked_days})
    wanted = [day for day in days if day not in outcomes]
    if columns is not None and "date" not in columns:
        columns = ["date", *columns]
    bars = lake.read(CURATED_BARS, [symbol], wanted, columns=columns) if wanted else pd.DataFrame()
    if len(bars) and not bars["date"].is_monotonic_increasing:  # files come back file by file: order by date, keep each day's rows
        bars = bars.sort_values("date", kind="stable", ignore_index=True)
    present = set(pd.to_datetime(bars["date"].unique()).date) if len(bars) else set()
    outcomes.update({day: no_input("no curated bars") for day in wanted if day not in present})
    return bars, outcomes


def date_slices(frame: pd.DataFrame) -> list[tuple[dt.date, int, int]]:
    """(date, start, stop) row ranges of a frame sorted by date (one symbol)."""
    if frame.empty:
        return []
    dates = frame["date"].to_numpy()
    starts = [0, *(int(i) + 1 for i in np.flatnonzero(dates[1:] != dates[:-1])), len(frame)]
    return [(pd.Timestamp(dates[a]).date(), a, b) for a, b in zip(starts, starts[1:])]


def rows_of_dates(frame: pd.DataFrame, days) -> pd.DataFrame:
    """The rows of ``days`` from a frame sorted by date (all of it when it holds no other date)."""
    wanted = set(days)
    slices = date_slices(frame)
    if all(day in wanted for day, _, _ in slices):
        return frame
    keep = [np.arange(start, stop) for day, start, stop in slices if day in wanted]
    return frame.iloc[np.concatenate(keep)].reset_index(drop=True) if keep else frame.iloc[:0]


def write_by_date(lake: ParquetLake, table, symbol: str, frame: pd.DataFrame, quality=None) -> dict[dt.date, int]:
    """Write a symbol's many-date frame (sorted by date) as its date partitions: converted to Arrow
    once and sliced per date (zero-copy); ``quality`` (a DQ recorder) checks every date's rows.
    Returns rows per date."""
    import pyarrow as pa

    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    slices = date_slices(frame)
    for day, start, stop in slices:
        lake.write_partition(table, symbol, day, arrow.slice(start, stop - start))
    if quality is not None and slices:
        quality.add_dates(symbol, frame, slices)
    return {day: stop - start for day, start, stop in slices}
