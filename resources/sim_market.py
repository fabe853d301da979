"""Deterministic simulated market data: 1-min OHLCV bars and 10-level L2 books with known faults.

Everything is a pure function of ``(seed, symbol, session)``: a partition generated alone equals
the same partition generated inside a range. The data is realistic enough to exercise the
pipeline: random-walk prices with a U-shaped intraday volatility and volume profile, consistent
OHLC (high >= max(open, close), low <= min(open, close)), a book whose mid follows the trade
price, and faults injected at places reported in ``SimDay.faults``:

* ``no_trade``: minutes with no trades. The vendor sends no bar, the book is alive.
* ``halt``: a run of minutes with no bars and a frozen book (identical snapshots).
* ``feed_gap``: a run of minutes where both bars and book snapshots are missing.
* ``bad_tick``: a bar with a zero/negative price or high < low (replaces the true bar).
* ``duplicate``: an exact copy of a bar (same ts) sent twice.
* ``crossed_book``: one snapshot with best bid above best ask.
* ``missing_levels``: snapshots whose deepest levels are empty (zeros).

Corporate actions (``resources.sim_corporate_actions``): the traded price of the scheduled symbols
drops by the action's factor on its ex date (10:1 split, 1:5 reverse split, cash dividends).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.calendars import STOCKS, Market, session_minutes
from resources.schemas import DEFAULT_LEVELS, L2Book
from resources.sim_corporate_actions import sim_price_factor
from resources.sim_profile import EPOCH, _stable_int, _symbol_profile, latent_open  # noqa: F401  (EPOCH re-exported)

TICK = 0.01
SNAPSHOT_OFFSETS_S = (0, 30)
FAULT_COLUMNS = ["kind", "start_ts", "end_ts", "minutes", "detail"]


@dataclass(frozen=True)
class FaultRates:
    """Probabilities of each injected fault per (symbol, session)."""

    no_trade_minute_rate: float = 0.012
    halt_prob: float = 0.15
    halt_minutes: tuple[int, int] = (8, 16)
    feed_gap_prob: float = 0.35
    feed_gap_minutes: tuple[int, int] = (3, 9)
    bad_tick_prob: float = 0.35
    duplicate_prob: float = 0.35
    crossed_book_prob: float = 0.2
    missing_levels_prob: float = 0.5

    @classmethod
    def none(cls) -> "FaultRates":
        return cls(0.0, 0.0, (8, 16), 0.0, (3, 9), 0.0, 0.0, 0.0, 0.0)


class SimDay:
    """One simulated (symbol, session): vendor-like bars, the book, and the injected faults.

    ``faults`` is a frame (``FAULT_COLUMNS``); given as a list of fault records it is framed when
    first read (the pipeline never reads the faults of a past session; framing them took ~0.4 ms,
    a fifth of a simulated day). Likewise ``bars``, given as columns (``bar_columns``, what the raw
    ingestion reads: ~0.15 ms per day less)."""

    def __init__(self, symbol: str, day: dt.date, bars: pd.DataFrame | dict[str, object], book: L2Book, faults: pd.DataFrame | list[dict] | None = None):
        self.symbol, self.day, self.book = symbol, day, book
        self._bars = bars
        self._faults = [] if faults is None else faults

    @property
    def bars(self) -> pd.DataFrame:
        if not isinstance(self._bars, pd.DataFrame):
            self._bars = pd.DataFrame(self._bars)
        return self._bars

    @property
    def bar_columns(self) -> pd.DataFrame | dict[str, object]:
        """The bars as simulated (their columns until ``bars`` framed them): for readers that take
        either (``platform_assets.ingestion.raw_batches``); not to be written into."""
        return self._bars

    @property
    def faults(self) -> pd.DataFrame:
        if not isinstance(self._faults, pd.DataFrame):
            records = self._faults
            self._faults = (pd.DataFrame({column: [fault[column] for fault in records] for column in FAULT_COLUMNS}, columns=FAULT_COLUMNS)
                            if records else pd.DataFrame(columns=FAULT_COLUMNS))
        return self._faults

    def __repr__(self) -> str:
        return f"SimDay({self.symbol!r}, {self.day}, {len(self.bars)} bars, {len(self.book)} snapshots)"


def _u_shape(n: int) -> np.ndarray:
    u = np.linspace(0.0, 1.0, n)
    return 1.0 + 4.0 * (u - 0.5) ** 2


def _pick_run(rng: np.random.Generator, n: int, length_range: tuple[int, int], lo: float, hi: float, taken: np.ndarray) -> tuple[int, int] | None:
    """A run of free minutes inside the [lo, hi) fraction of the session, or None if none fits."""
    length = int(rng.integers(length_range[0], length_range[1] + 1))
    first, last = int(n * lo), int(n * hi) - length
    for _ in range(20):
        if last <= first:
            return None
        start = int(rng.integers(first, last))
        if not taken[max(0, start - 2) : start + length + 2].any():
            return start, start + length
    return None


def simulate_day(
    seed: int,
    symbol: str,
    day: dt.date,
    market: Market = STOCKS,
    rates: FaultRates = FaultRates(),
    levels: int = DEFAULT_LEVELS,
) -> SimDay:
    """Generate one (symbol, session) of bars and book snapshots. Deterministic for the inputs."""
    minutes = session_minutes(market, day)
    n = len(minutes)
    rng = np.random.default_rng([seed, _stable_int(symbol), day.toordinal()])
    _, volume_per_minute, _ = _symbol_profile(seed, symbol)
    # Corporate actions of the schedule (resources.sim_corporate_actions) scale the traded price
    # from their ex date on; symbols without a scheduled action keep factor 1.0 (unchanged history).
    day_open = round(latent_open(seed, symbol, day) * sim_price_factor(seed, symbol, day), 2)

    faults: list[dict] = []
    taken = np.zeros(n, dtype=bool)
    halted = np.zeros(n, dtype=bool)
    feed_down = np.zeros(n, dtype=bool)

    if rng.random() < rates.halt_prob and (run := _pick_run(rng, n, rates.halt_minutes, 0.2, 0.5, taken)):
        halted[run[0] : run[1]] = taken[run[0] : run[1]] = True
        faults.append(_fault("halt", minutes, run))
    if rng.random() < rates.feed_gap_prob and (run := _pick_run(rng, n, rates.feed_gap_minutes, 0.55, 0.9, taken)):
        feed_down[run[0] : run[1]] = taken[run[0] : run[1]] = True
        faults.append(_fault("feed_gap", minutes, run))
    quiet = (rng.random(n) < rates.no_trade_minute_rate * 2 * (1.5 - _u_shape(n) / 2)) & ~taken
    quiet[0] = False
    for index in np.flatnonzero(quiet):
        faults.append(_fault("no_trade", minutes, (index, index + 1)))
    taken |= quiet
    no_bar = halted | feed_down | quiet  # the vendor sends no bar for these minutes

    # Prices: a random walk of log returns with U-shaped volatility, frozen while nothing trades.
    sigma = 0.017 / np.sqrt(n) * _u_shape(n) * 0.8
    log_returns = rng.normal(0.0, sigma)
    log_returns[halted | quiet] = 0.0
    close = np.round(day_open * np.exp(np.cumsum(log_returns)), 2)
    close = np.maximum(close, TICK)
    open_ = np.concatenate([[day_open], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, sigma * 0.6, size=(2, n)))
    high = np.ceil(np.maximum(open_, close) * (1 + wiggle[0]) / TICK) * TICK
    low = np.floor(np.minimum(open_, close) * (1 - wiggle[1]) / TICK) * TICK
    high, low = np.round(high, 2), np.round(np.maximum(low, TICK), 2)
    volume = np.maximum(1, np.round(volume_per_minute * _u_shape(n) * rng.lognormal(0.0, 0.5, n))).astype(np.int64)
    trade_count = np.maximum(1, volume // int(rng.integers(40, 160))).astype(np.int64)
    vwap = np.round((open_ + high + low + close) / 4.0, 4)

    sent = ~no_bar
    columns = {"ts": minutes[sent], "open": open_[sent], "high": high[sent], "low": low[sent], "close": close[sent],
               "volume": volume[sent], "vwap": vwap[sent], "trade_count": trade_count[sent]}
    columns = _inject_bad_ticks(rng, columns, rates, faults)
    bars = _inject_duplicates(rng, columns, rates, faults)  # framed when first read (SimDay.bars)
    book = _simulate_book(rng, minutes, open_, close, halted, feed_down, rates, faults, levels)
    faults = sorted(faults, key=lambda fault: fault["start_ts"])  # stable, like the frame sort it replaces
    return SimDay(symbol=symbol, day=day, bars=bars, book=book, faults=faults)


def _fault(kind: str, minutes: pd.DatetimeIndex, run: tuple[int, int], detail: str = "") -> dict:
    start, end = run
    return {
        "kind": kind,
        "start_ts": minutes[start],
        "end_ts": minutes[start] + pd.Timedelta(minutes=end - start),
        "minutes": end - start,
        "detail": detail,
    }


def _inject_bad_ticks(rng: np.random.Generator, columns: dict, rates: FaultRates, faults: list[dict]) -> dict:
    """Corrupt 1-2 bars (zero close, negative open/low, or high below low); ``columns`` are the
    bar arrays (copied before any change)."""
    n = len(columns["ts"])
    if n < 20 or rng.random() >= rates.bad_tick_prob:
        return columns
    columns = {name: values.copy() for name, values in columns.items()}
    open_, high, low, close = columns["open"], columns["high"], columns["low"], columns["close"]
    for row in rng.choice(np.arange(5, n - 5), size=int(rng.integers(1, 3)), replace=False):
        kind = ("zero_price", "negative_price", "high_below_low")[int(rng.integers(0, 3))]
        if kind == "zero_price":
            close[row] = 0.0
        elif kind == "negative_price":
            open_[row], low[row] = -open_[row], -open_[row]
        else:
            high[row], low[row] = low[row], high[row]
            if high[row] == low[row]:
                low[row] = high[row] + TICK
        ts = columns["ts"][row]
        faults.append({"kind": "bad_tick", "start_ts": ts, "end_ts": ts + pd.Timedelta(minutes=1), "minutes": 1, "detail": kind})
    return columns


def _inject_duplicates(rng: np.random.Generator, columns: dict, rates: FaultRates, faults: list[dict]) -> dict:
    """Send 1-3 bars twice (each copy right after its original); ``columns`` are the bar arrays."""
    n = len(columns["ts"])
    if n < 20 or rng.random() >= rates.duplicate_prob:
        return columns
    rows = np.sort(rng.choice(np.arange(1, n - 1), size=int(rng.integers(1, 4)), replace=False))
    for row in rows:
        ts = columns["ts"][row]
        faults.append({"kind": "duplicate", "start_ts": ts, "end_ts": ts + pd.Timedelta(minutes=1), "minutes": 1, "detail": ""})
    order = np.concatenate([np.arange(n), rows])
    order = order[np.argsort(np.asarray(columns["ts"].asi8)[order], kind="stable")]  # as a stable sort of the doubled frame by ts
    return {name: values[order] for name, values in columns.items()}


def _simulate_book(
    rng: np.random.Generator,
    minutes: pd.DatetimeIndex,
    open_: np.ndarray,
    close: np.ndarray,
    halted: np.ndarray,
    feed_down: np.ndarray,
    rates: FaultRates,
    faults: list[dict],
    levels: int,
) -> L2Book:
    n, per_minute = len(minutes), len(SNAPSHOT_OFFSETS_S)
    minute_index = np.repeat(np.arange(n), per_minute)
    offsets = np.tile(np.array(SNAPSHOT_OFFSETS_S, dtype="timedelta64[s]"), n)
    timestamps = minutes.tz_convert("UTC").tz_localize(None).to_numpy()[minute_index] + offsets
    # Mid at :00 is the last trade before the minute, at :30 half way through the minute's move.
    mid = np.where(offsets == np.timedelta64(0, "s"), open_[minute_index], (open_ + close)[minute_index] / 2.0)
    spread_ticks = rng.integers(1, 4, size=len(mid))
    bid0 = np.floor((mid - spread_ticks * TICK / 2) / TICK) * TICK
    bid0 = np.maximum(bid0, TICK)
    ask0 = bid0 + spread_ticks * TICK
    depth = np.arange(levels)
    bid_prices = np.round(bid0[:, None] - depth[None, :] * TICK, 2)
    ask_prices = np.round(ask0[:, None] + depth[None, :] * TICK, 2)
    scale = (1.0 + 0.35 * depth)[None, :]
    bid_sizes = (100 * rng.integers(1, 40, size=bid_prices.shape) * scale).astype(np.int64)
    ask_sizes = (100 * rng.integers(1, 40, size=ask_prices.shape) * scale).astype(np.int64)
    bid_prices[bid_prices <= 0] = 0.0
    bid_sizes[bid_prices <= 0] = 0

    # A halt freezes the book: every snapshot repeats the last one before the halt.
    halt_rows = np.flatnonzero(halted[minute_index])
    if len(halt_rows):
        frozen = max(halt_rows[0] - 1, 0)
        for matrix in (bid_prices, bid_sizes, ask_prices, ask_sizes):
            matrix[halt_rows] = matrix[frozen]

    keep = ~feed_down[minute_index]
    untouched = keep & ~halted[minute_index]
    if len(halt_rows):
        untouched[frozen] = False  # the book a halt freezes must stay as the halt repeats it
    candidates = np.flatnonzero(untouched)
    if len(candidates) > 10 and rng.random() < rates.missing_levels_prob:
        rows = rng.choice(candidates, size=min(len(candidates) // 20 + 1, 30), replace=False)
        empty_from = levels - int(rng.integers(1, 4))
        side_prices, side_sizes = (bid_prices, bid_sizes) if rng.random() < 0.5 else (ask_prices, ask_sizes)
        side_prices[rows[:, None], np.arange(empty_from, levels)[None, :]] = 0.0
        side_sizes[rows[:, None], np.arange(empty_from, levels)[None, :]] = 0
        first = pd.Timestamp(timestamps[rows.min()], tz="UTC")
        faults.append({"kind": "missing_levels", "start_ts": first, "end_ts": first, "minutes": 0, "detail": f"{len(rows)} snapshots from level {empty_from}"})
    if len(candidates) > 10 and rng.random() < rates.crossed_book_prob:
        row = int(rng.choice(candidates))
        bid_prices[row, 0] = round(ask_prices[row, 0] + 2 * TICK, 2)
        ts = pd.Timestamp(timestamps[row], tz="UTC")
        faults.append({"kind": "crossed_book", "start_ts": ts, "end_ts": ts, "minutes": 0, "detail": "bid0 > ask0"})

    book = L2Book(timestamps, bid_prices, bid_sizes, ask_prices, ask_sizes)
    return book.take(np.flatnonzero(keep))


CORRUPTIONS = ("bad_ticks", "outage", "crossed_book")


def corrupt_day(sim: SimDay, kind: str) -> SimDay:
    """A whole-day vendor failure on top of a simulated day (for DQ tests and drills).

    * ``bad_ticks``: every 10th bar has a zero close (tens of bad rows: an error, not a warning);
    * ``outage``: no bars and no snapshots from 30% to 80% of the session (a long feed gap);
    * ``crossed_book``: every 20th snapshot has its best bid above its best ask.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {CORRUPTIONS}")
    bars, book = sim.bars.copy(), sim.book
    extra = {"kind": f"corrupt_{kind}", "start_ts": pd.NaT, "end_ts": pd.NaT, "minutes": 0, "detail": kind}
    if kind == "bad_ticks":
        bars.loc[bars.index[::10], "close"] = 0.0
    elif kind == "outage" and len(bars):
        start, end = sim_outage_window(bars["ts"])
        bars = bars[(bars["ts"] < start) | (bars["ts"] >= end)].reset_index(drop=True)
        keep = (book.timestamp < start.to_datetime64()) | (book.timestamp >= end.to_datetime64())
        book = L2Book(book.timestamp[keep], book.bid_prices[keep], book.bid_sizes[keep], book.ask_prices[keep], book.ask_sizes[keep])
        extra.update(start_ts=start, end_ts=end, minutes=int((end - start) / pd.Timedelta(minutes=1)))
    elif kind == "crossed_book":
        bid, ask = book.bid_prices.copy(), book.ask_prices.copy()
        rows = np.arange(0, len(bid), 20)
        bid[rows, 0] = ask[rows, 0] + 0.05
        book = L2Book(book.timestamp, bid, book.bid_sizes, ask, book.ask_sizes)
    faults = pd.concat([sim.faults, pd.DataFrame([extra], columns=FAULT_COLUMNS)], ignore_index=True)
    return SimDay(symbol=sim.symbol, day=sim.day, bars=bars, book=book, faults=faults)


def sim_outage_window(ts: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    first, last = pd.Timestamp(ts.min()), pd.Timestamp(ts.max())
    span = last - first
    return (first + 0.3 * span).floor("min"), (first + 0.8 * span).floor("min")
