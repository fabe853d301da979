"""The per-symbol price profile of the offline source: base price, volume level and daily walk.

Pure functions of ``(seed, symbol)``; shared by the simulator (``resources.sim_market``) and its
corporate-action schedule (``resources.sim_corporate_actions``).
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib

import numpy as np

EPOCH = dt.date(2000, 1, 1)


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode())


@functools.lru_cache(maxsize=1024)
def _symbol_profile(seed: int, symbol: str) -> tuple[float, float, np.ndarray]:
    """(base price, typical volume per minute, cumulative daily log returns since 2000)."""
    rng = np.random.default_rng([seed, _stable_int(symbol), 1])
    base_price = float(np.exp(rng.uniform(np.log(15), np.log(600))))
    volume_per_minute = float(np.exp(rng.uniform(np.log(800), np.log(40_000))))
    daily_log_returns = rng.normal(0.0002, 0.017, size=20_000)
    return base_price, volume_per_minute, np.cumsum(daily_log_returns)


def latent_open(seed: int, symbol: str, day: dt.date) -> float:
    """The session's opening price before corporate actions (the random walk of the profile)."""
    base_price, _, cum_returns = _symbol_profile(seed, symbol)
    return base_price * float(np.exp(cum_returns[(day - EPOCH).days % len(cum_returns)]))
