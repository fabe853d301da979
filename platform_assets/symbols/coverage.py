"""Pure helpers for a symbol's history: which sessions each layer holds, and which to fill.

Kept free of Dagster so the per-symbol asset, its tests and the API share one definition of
"a symbol's history is complete over a window".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from platform_assets.calendars import Market, sessions_in_range

# The derived layers a symbol's history must hold for every session of the window.
HISTORY_LAYERS = ("curated_bars", "aligned_bars", "bar_features", "l2_features", "labels")


@dataclass(frozen=True)
class HistoryCoverage:
    """Sessions of the window, and per layer the sessions that are missing."""

    symbol: str
    sessions: list[dt.date]
    missing: dict[str, list[dt.date]]

    @property
    def complete(self) -> bool:
        return not any(self.missing.values())

    @property
    def sessions_to_fill(self) -> list[dt.date]:
        """Sessions where at least one layer is missing, in order."""
        wanted = {day for days in self.missing.values() for day in days}
        return [day for day in self.sessions if day in wanted]

    def present(self, layer: str) -> int:
        return len(self.sessions) - len(self.missing.get(layer, []))


def history_window(market: Market, end: dt.date, sessions: int, earliest: dt.date) -> list[dt.date]:
    """The last ``sessions`` trading sessions of ``market`` ending at ``end`` (inclusive), not before ``earliest``."""
    if sessions < 1:
        raise ValueError(f"history window must hold at least one session, got {sessions}")
    lookback = end - dt.timedelta(days=int(sessions * 7 / 5) + 15)
    days = sessions_in_range(market, max(lookback, earliest), end)
    return days[-sessions:]


def measure_coverage(symbol: str, sessions: list[dt.date], has: Callable[[str, str, dt.date], bool], layers=HISTORY_LAYERS) -> HistoryCoverage:
    """``has(layer, symbol, day)`` tells whether a layer holds a session; the result lists the gaps."""
    return HistoryCoverage(symbol, sessions, {layer: [day for day in sessions if not has(layer, symbol, day)] for layer in layers})


def contiguous_blocks(days: list[dt.date], all_sessions: list[dt.date], max_len: int) -> list[list[dt.date]]:
    """Split ``days`` (a subset of ``all_sessions``) into runs of consecutive sessions, each at most ``max_len``."""
    index = {day: i for i, day in enumerate(all_sessions)}
    blocks: list[list[dt.date]] = []
    for day in days:
        if blocks and index[day] == index[blocks[-1][-1]] + 1 and len(blocks[-1]) < max_len:
            blocks[-1].append(day)
        else:
            blocks.append([day])
    return blocks
