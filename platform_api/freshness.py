"""How stale a row is at a decision time, in market time (pure functions).

Wall-clock staleness mixes two things: the market being closed (the previous close is the newest
possible bar at 08:00 ET, however many hours ago it was) and data that should exist but does not
(a day not ingested yet, a long halt). ``market_staleness`` counts only the second: the session
time of the exchange calendar between the moment the row became known (``available_ts``) and the
decision time. Before Monday's open, Friday's last bar has market staleness 0; at 17:00 UTC on
Monday, if Monday was never ingested, it has 150 minutes.
"""

from __future__ import annotations

import functools

import pandas as pd

from platform_assets.calendars import STOCKS, Market, session_bounds, sessions_in_range


@functools.lru_cache(maxsize=4096)
def _bounds(market: Market, day) -> tuple[pd.Timestamp, pd.Timestamp]:
    return session_bounds(market, day)


def market_staleness(available_ts: pd.Timestamp, at: pd.Timestamp, market: Market = STOCKS) -> pd.Timedelta:
    """Session time in ``(available_ts, at]`` (0 when ``at <= available_ts``)."""
    if at <= available_ts:
        return pd.Timedelta(0)
    total = pd.Timedelta(0)
    for day in sessions_in_range(market, available_ts.date(), at.date()):
        open_, close = _bounds(market, day)
        overlap = min(close, at) - max(open_, available_ts)
        if overlap > pd.Timedelta(0):
            total += overlap
    return total
