"""The embedded offline source: simulated bars and L2 books, no credentials, no network.

Everything it produces is labelled ``source="sim"`` wherever it lands (raw rows, L2 files,
materialization metadata), so simulated data can never be mistaken for vendor data.

Like a vendor, it delivers only what has happened: for a session still under way (or not yet open)
the bars whose minute has ended, the book snapshots taken and the faults begun by the wall-clock
time of the request (``as_of``); a later request gets the rest (a new raw batch).
"""

from __future__ import annotations

import datetime as dt
import functools

import dagster as dg
import numpy as np
import pandas as pd

from platform_assets.calendars import STOCKS, Market
from resources import clock
from resources.sim_market import FaultRates, SimDay, corrupt_day, simulate_day

SIM_SOURCE = "sim"
SIMULATED = {"source": SIM_SOURCE, "simulated": True}  # on every date's materialization: simulated data says so where it lands
BAR = pd.Timedelta(minutes=1)


def as_of(sim: SimDay, now: pd.Timestamp) -> SimDay:
    """What a vendor could deliver at ``now`` (UTC): bars whose minute has ended, snapshots taken
    by then, faults begun by then. Days that ended before ``now`` come back as they are."""
    now = now.tz_convert("UTC")
    if sim.day < (now - pd.Timedelta(days=2)).date():
        return sim  # a past session (any market's day ends within a day of its date)
    bars, book, faults = sim.bars, sim.book, sim.faults
    ended = (bars["ts"] + BAR <= now).to_numpy()
    taken = book.timestamp <= np.datetime64(now.tz_localize(None).to_datetime64())
    begun = (pd.to_datetime(faults["start_ts"], utc=True) < now).to_numpy() if len(faults) else np.zeros(0, dtype=bool)
    if ended.all() and taken.all() and begun.all():
        return sim
    return SimDay(
        symbol=sim.symbol, day=sim.day, bars=bars[ended].reset_index(drop=True), book=book.take(np.flatnonzero(taken)),
        faults=faults[begun].reset_index(drop=True),
    )


def _now() -> pd.Timestamp:
    return clock.utc_now()


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
        """Bars, book snapshots and the ground-truth fault list of one (symbol, session), as of now."""
        return as_of(_cached_day(self.seed, symbol, day, market, self.inject_faults, self.corrupt_days.get(f"{symbol}@{day.isoformat()}")), _now())
