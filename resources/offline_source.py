"""The embedded offline source: simulated bars and L2 books, no credentials, no network.

Everything it produces is labelled ``source="sim"`` wherever it lands (raw rows, L2 files,
materialization metadata), so simulated data can never be mistaken for vendor data.
"""

from __future__ import annotations

import datetime as dt
import functools

import dagster as dg

from platform_assets.calendars import STOCKS, Market
from resources.sim_market import FaultRates, SimDay, corrupt_day, simulate_day

SIM_SOURCE = "sim"


@functools.lru_cache(maxsize=4096)
def _cached_day(seed: int, symbol: str, day: dt.date, market: Market, inject_faults: bool, corruption: str | None) -> SimDay:
    rates = FaultRates() if inject_faults else FaultRates.none()
    sim = simulate_day(seed, symbol, day, market=market, rates=rates)
    return corrupt_day(sim, corruption) if corruption else sim


class OfflineSource(dg.ConfigurableResource):
    """Deterministic simulated market data (the default source of the platform)."""

    seed: int = 7
    inject_faults: bool = True
    corrupt_days: dict[str, str] = {}
    """Whole-day vendor failures, ``{"SYMBOL@YYYY-MM-DD": "bad_ticks" | "outage" | "crossed_book"}``."""

    @property
    def source_name(self) -> str:
        return SIM_SOURCE

    def day(self, symbol: str, day: dt.date, market: Market = STOCKS) -> SimDay:
        """Bars, book snapshots and the ground-truth fault list of one (symbol, session)."""
        return _cached_day(self.seed, symbol, day, market, self.inject_faults, self.corrupt_days.get(f"{symbol}@{day.isoformat()}"))
