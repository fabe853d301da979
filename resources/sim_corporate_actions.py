"""Corporate actions of the offline source: a fixed, deterministic schedule and its reference records.

The simulated traded price of a scheduled symbol is ``latent * prod(factor)`` over its actions with
``ex_date <= day``: it drops by the factor on the ex date, as a real split or dividend does. The
schedule uses dedicated symbols (``SPLT``, ``RVSP``, ``DIVY``) so the history of every other
symbol is unchanged. Dates are XNYS sessions of November/December 2024:

* ``SPLT``: 10:1 forward split, ex 2024-11-20 (announced 2024-11-06); cash dividend 1% of the
  previous close, ex 2024-12-05 (announced 2024-11-21);
* ``RVSP``: 1:5 reverse split, ex 2024-11-21 (announced 2024-11-07);
* ``DIVY``: cash dividends of 0.8% of the previous close, ex 2024-11-15 and 2024-12-13.

A dividend's amount is ``(1 - yield) * reference close`` rounded to the cent, where the reference
close is the latent open of the previous session times the factors already applied; the factor
recorded is recomputed from the rounded amount, so the record and the price move agree exactly.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

from platform_assets.reference.actions import ACTION_COLUMNS, normalize
from resources.sim_profile import latent_open

SIM_ACTION_SOURCE = "sim"
# symbol -> (event, ex date, announced date, split ratio (new shares per old) or dividend yield)
SIM_SCHEDULE: dict[str, tuple[tuple[str, dt.date, dt.date, float], ...]] = {
    "SPLT": (
        ("split", dt.date(2024, 11, 20), dt.date(2024, 11, 6), 10.0),
        ("cash_dividend", dt.date(2024, 12, 5), dt.date(2024, 11, 21), 0.01),
    ),
    "RVSP": (("reverse_split", dt.date(2024, 11, 21), dt.date(2024, 11, 7), 0.2),),
    "DIVY": (
        ("cash_dividend", dt.date(2024, 11, 15), dt.date(2024, 11, 1), 0.008),
        ("cash_dividend", dt.date(2024, 12, 13), dt.date(2024, 11, 29), 0.008),
    ),
}


def _previous_weekday(day: dt.date) -> dt.date:
    day -= dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


@functools.lru_cache(maxsize=256)
def _records(seed: int, symbol: str) -> tuple[tuple, ...]:
    """(event, ex, announced, factor, split_ratio, dividend) per scheduled action, in ex order."""
    out, applied = [], 1.0
    for event, ex, announced, value in sorted(SIM_SCHEDULE.get(symbol, ()), key=lambda a: a[1]):
        if event == "cash_dividend":
            reference = round(latent_open(seed, symbol, _previous_weekday(ex)) * applied, 2)
            amount = round(reference * value, 2)
            factor, ratio, dividend = (reference - amount) / reference, np.nan, amount
        else:
            factor, ratio, dividend = 1.0 / value, value, np.nan
        applied *= factor
        out.append((event, ex, announced, factor, ratio, dividend))
    return tuple(out)


def sim_price_factor(seed: int, symbol: str, day: dt.date) -> float:
    """Multiplier of the latent price on ``day``: product of the factors of actions ex on or before it."""
    factor = 1.0
    for _, ex, _, value, _, _ in _records(seed, symbol):
        if ex <= day:
            factor *= value
    return factor


def sim_corporate_actions(seed: int, symbols: list[str]) -> pd.DataFrame:
    """The reference records of the schedule for ``symbols`` (normalized, ``source="sim"``)."""
    rows = []
    for symbol in symbols:
        for event, ex, announced, factor, ratio, dividend in _records(seed, symbol):
            rows.append({
                "symbol": symbol, "event_id": f"SIM-{symbol}-{event}-{ex.isoformat()}", "event": event,
                "kind": "dividend" if event == "cash_dividend" else "split", "ex_date": ex, "announced_date": announced,
                "factor": factor, "split_ratio": ratio, "dividend": dividend, "status": "apply", "source": SIM_ACTION_SOURCE,
                "recorded_ts": pd.Timestamp(announced, tz="UTC"),
            })
    return normalize(pd.DataFrame(rows, columns=ACTION_COLUMNS))
