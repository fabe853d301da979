"""Interactive Brokers (TWS / IB Gateway) as a Dagster resource over ``ib_async``.

``IBSource.fetch_bars`` qualifies the contracts, pages the range (``resources.ib_paging``) and paces
every request (``resources.ib_pacing``) by bar size (``pacing_policy="auto"``):

* bars of 30 s and less (IB's hard rules): one-day pages, 60 requests per 10 min, no identical
  request within 15 s, 6 per contract within 2 s, at most ``max_parallel_requests`` open;
* bars of 1 min and larger (IB lifted the hard limits): multi-day pages (10 D for 1-min bars, as in
  IB's examples; ``max_page_days`` overrides) and the adaptive limiter: up to
  ``max_concurrent_requests`` open (6; IB allows 50), halved with a back-off on every pacing error,
  grown back by one per window of answers, never an identical request within 15 s.

``pacing_policy="strict"`` applies the hard rules and one-day pages to every bar size (the policy
before multi-day pages). IB answers are mapped:

* 162 "pacing violation" / 366 / 100 "max rate" -> back off and retry the page;
* 162 "HMDS query returned no data" -> an empty page (no error);
* no answer within ``request_timeout_s`` -> retried like a lost page (``max_retries``, exponential
  backoff), then the symbol fails: ib_async swallows its own timeout and returns an empty list, so
  an empty answer counts as "no data" only when IB said so (``HistoricalRequests``);
* 200 (no security definition) -> that symbol fails with a clear error, the others go on;
* a dropped connection -> reconnect with exponential backoff and retry the unfinished pages, so
  a resumed backfill has no duplicate or missing bars (pages are keyed, bars de-duplicated on ts).

It is also the design's ``TwsClient`` (seed 001, 3.2.1): ``connect``, ``disconnect``,
``is_connected``, ``request_historical_bars`` (-> ``BarEvent``s), ``subscribe_market_data`` /
``unsubscribe_market_data`` (5-second real-time bars) on one private event loop.

Ports: TWS live 7496 / paper 7497, IB Gateway live 4001 / paper 4002 (``IB_HOST``, ``IB_PORT``,
``IB_CLIENT_ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from resources.ib_pacing import AdaptiveLimiter, HistoricalRequest, PacingLimiter, is_no_data, is_pacing_error
from resources.ib_paging import is_small_bar, max_page_days, page_days

LOG = logging.getLogger("platform.ib")
NY = "America/New_York"


@dataclass(repr=False)
class BarsResult:
    bars: dict[tuple[str, dt.date], pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)       # symbol -> why it failed
    empty_days: list[tuple[str, dt.date]] = field(default_factory=list)
    requests: int = 0
    pacing_retries: int = 0
    timeouts: int = 0
    reconnects: int = 0
    pages: int = 0
    policy: str = ""
    peak_open: int = 0

    def __repr__(self) -> str:  # asyncio may repr a finished task's result: never print the frames
        return (f"BarsResult({len(self.bars)} symbol-days, {len(self.errors)} errors, {len(self.empty_days)} empty days, requests={self.requests}, "
                f"pacing_retries={self.pacing_retries}, timeouts={self.timeouts}, reconnects={self.reconnects}, policy={self.policy!r})")


class HistoricalRequests:
    """``reqHistoricalDataAsync`` that tells a timeout from "no data" (use as ``with``).

    ib_async 2.1 catches its own ``asyncio.TimeoutError``: it cancels the request and returns an
    empty list, which looks exactly like an answer without bars. IB says "no data" with error 162
    "HMDS query returned no data" for the request's id (``ib.errorEvent``, heard while the ``with``
    block is open; with ``RaiseRequestErrors`` ib_async also raises it as a ``RequestError``). So an
    empty list is "no data" only after that error; otherwise the request timed out and ``bars``
    raises ``asyncio.TimeoutError``, which callers retry like a lost page.
    """

    def __init__(self, ib, timeout_s: float):
        self.ib, self.timeout_s = ib, timeout_s
        self._no_data: set[int] = set()

    def open(self) -> HistoricalRequests:
        """Start listening to ``ib.errorEvent`` (``with`` does it for the block)."""
        self.ib.errorEvent += self._on_error
        return self

    def close(self) -> None:
        self.ib.errorEvent -= self._on_error

    def __enter__(self) -> HistoricalRequests:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_error(self, req_id: int, code: int, message: str, *_) -> None:
        if is_no_data(code, message):
            self._no_data.add(req_id)

    async def bars(self, contract, end, duration: str, bar_size: str, what_to_show: str, use_rth: bool) -> list:
        """The bars IB answered (maybe none, when it said "no data"); raises ``asyncio.TimeoutError``
        when no answer came within ``timeout_s`` (0: wait for ever, so an empty list is an answer)."""
        bars = await self.ib.reqHistoricalDataAsync(contract, end, duration, bar_size, what_to_show, use_rth, formatDate=2, timeout=self.timeout_s)
        said_no_data = bars.reqId in self._no_data
        self._no_data.discard(bars.reqId)
        if bars or said_no_data or not self.timeout_s:
            return bars
        raise asyncio.TimeoutError(f"no answer from IB within {self.timeout_s:g} s (request {bars.reqId} cancelled)")


@dataclass(frozen=True)
class BarEvent:
    """One bar as the design's ``TwsClient`` hands it on (seed 001, 3.2.1)."""

    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    contract_id: str
    source: Literal["TWS"] = "TWS"


@dataclass
class SubscriptionHandle:
    """A live 5-second real-time-bars subscription (``subscribe_market_data``)."""

    contract: object
    contract_id: str
    bars: object  # ib_async RealTimeBarList, filled while the client's event loop runs

    def events(self) -> list[BarEvent]:
        """The 5-second bars received so far."""
        return [_event(b.time, b, self.contract_id) for b in list(self.bars)]


class IBSource(dg.ConfigurableResource):
    """Historical bars from TWS / IB Gateway through ib_async, paced by bar size and retried."""

    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 1
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    readonly: bool = True
    max_parallel_requests: int = 2
    max_retries: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 60.0
    exchange: str = "SMART"
    currency: str = "USD"
    pacing_max_requests: int = 60
    pacing_window_s: float = 600.0
    identical_gap_s: float = 15.0
    per_contract_requests: int = 6
    per_contract_window_s: float = 2.0
    pacing_policy: Literal["auto", "strict"] = "auto"
    max_concurrent_requests: int = 6
    start_concurrent_requests: int = 2
    max_page_days: int = 0  # 0: IB's table (10 D for 1-min bars); only for bars of 1 min and larger
    pacing_backoff_s: float = 2.0
    pacing_max_backoff_s: float = 60.0
    max_pacing_retries: int = 30

    _ib: object = PrivateAttr(default=None)
    _loop: object = PrivateAttr(default=None)
    _limiters: dict = PrivateAttr(default_factory=dict)

    def limiter(self) -> PacingLimiter:
        """IB's hard pacing rules (the defaults are IB's documented limits)."""
        return PacingLimiter(self.pacing_max_requests, self.pacing_window_s, self.identical_gap_s, self.per_contract_requests, self.per_contract_window_s)

    def adaptive_limiter(self) -> AdaptiveLimiter:
        """The limiter for bars of 1 min and larger (concurrency window, back-off on pacing errors)."""
        return AdaptiveLimiter(self.max_concurrent_requests, self.start_concurrent_requests, self.identical_gap_s, self.per_contract_requests,
                               self.per_contract_window_s, self.pacing_backoff_s, self.pacing_max_backoff_s)

    def adaptive(self, bar_size: str) -> bool:
        """True when ``bar_size`` is paced by the adaptive limiter with multi-day pages."""
        return self.pacing_policy == "auto" and not is_small_bar(bar_size)

    def page_limit(self, bar_size: str) -> int:
        """Calendar days per request for ``bar_size`` under this resource's policy."""
        return max_page_days(bar_size, self.adaptive(bar_size), self.max_page_days or None)

    @contextlib.asynccontextmanager
    async def session(self):
        """``async with ib_source.session() as ib:`` a connected ``ib_async.IB`` (retried with
        exponential backoff), disconnected on exit whatever happens."""
        from ib_async import IB

        ib = IB()
        ib.RaiseRequestErrors = True
        await self._connect(ib)
        try:
            yield ib
        finally:
            ib.disconnect()

    def fetch_bars(
        self, symbols: list[str], days: list[dt.date], bar_size: str = "1 min", what_to_show: str = "TRADES",
        use_rth: bool = True, limiter: PacingLimiter | AdaptiveLimiter | None = None,
    ) -> BarsResult:
        """Bars per (symbol, New York date) for ``days``; failures per symbol in ``errors``."""
        return asyncio.run(self._fetch(symbols, days, bar_size, what_to_show, use_rth, limiter))

    # ------------------------------------------------------------------ TwsClient (seed 001, 3.2.1)
    def connect(self) -> None:
        """Connect (retried with exponential backoff); a no-op when already connected."""
        from ib_async import IB

        if self.is_connected():
            return
        self._ib = IB()
        self._ib.RaiseRequestErrors = True
        self._run(self._connect(self._ib))

    def disconnect(self) -> None:
        """Disconnect and close the private event loop."""
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
        if self._loop is not None:
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()
            self._loop = None

    def is_connected(self) -> bool:
        return self._ib is not None and self._ib.isConnected()

    def request_historical_bars(
        self, contract, start, end, bar_size: str = "1 min", what_to_show: str = "TRADES", use_rth: bool = True,
    ) -> Iterable[BarEvent]:
        """Bars of ``contract`` (a symbol or an ib_async contract) in ``[start, end)`` UTC, paged
        and paced like ``fetch_bars``; raises when IB fails the request."""
        start_ts, end_ts = _utc(start), _utc(end)
        if end_ts <= start_ts:
            raise ValueError(f"end {end_ts} must be after start {start_ts}")
        self._require_connected()
        first, last = start_ts.tz_convert(NY).date(), (end_ts - pd.Timedelta(1)).tz_convert(NY).date()
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        qualified = self._run(self._qualify(self._ib, contract))
        symbol = qualified.symbol
        limiter = self._limiters.setdefault(self.adaptive(bar_size), self._new_limiter(bar_size))
        result = BarsResult()
        self._run(self._fetch_pages(self._ib, {symbol: qualified}, days, bar_size, what_to_show, use_rth, limiter, result))
        if symbol in result.errors:
            raise RuntimeError(f"IB historical bars for {symbol}: {result.errors[symbol]}")
        frames = [f for (_, _), f in sorted(result.bars.items())]
        if not frames:
            return []
        bars = pd.concat(frames)
        bars = bars[(bars["ts"] >= start_ts) & (bars["ts"] < end_ts)]
        return [_event(ts, row, str(qualified.conId)) for ts, row in zip(bars["ts"], bars.itertuples())]

    def subscribe_market_data(self, contract, what_to_show: str = "TRADES", use_rth: bool = False) -> SubscriptionHandle:
        """Subscribe to 5-second real-time bars (``reqRealTimeBars``); they arrive while ``wait`` runs."""
        self._require_connected()
        qualified = self._run(self._qualify(self._ib, contract))
        bars = self._ib.reqRealTimeBars(qualified, 5, what_to_show, use_rth)
        return SubscriptionHandle(qualified, str(qualified.conId), bars)

    def unsubscribe_market_data(self, handle: SubscriptionHandle) -> None:
        if self.is_connected():
            self._ib.cancelRealTimeBars(handle.bars)

    def wait(self, seconds: float) -> None:
        """Let the connection deliver live data for ``seconds``."""
        self._run(asyncio.sleep(seconds))

    # ------------------------------------------------------------------ internals
    def _run(self, coro):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _require_connected(self) -> None:
        if not self.is_connected():
            raise ConnectionError(f"not connected to TWS/IB Gateway at {self.host}:{self.port}: call connect() first")

    def _new_limiter(self, bar_size: str) -> PacingLimiter | AdaptiveLimiter:
        return self.adaptive_limiter() if self.adaptive(bar_size) else self.limiter()

    async def _qualify(self, ib, contract):
        from ib_async import RequestError, Stock

        if isinstance(contract, str):
            contract = Stock(contract, self.exchange, self.currency)
        try:
            qualified = await ib.qualifyContractsAsync(contract)
        except RequestError as error:
            if error.code != 200:
                raise
            qualified = []
        if not qualified or qualified[0] is None:
            raise LookupError(f"IB has no security definition for {contract.symbol} ({contract.exchange}/{contract.currency}, error 200)")
        return qualified[0]

    async def _connect(self, ib, result: BarsResult | None = None) -> None:
        for attempt in range(self.max_retries + 1):
            try:
                await ib.connectAsync(self.host, self.port, clientId=self.client_id, timeout=self.connect_timeout_s, readonly=self.readonly)
                return
            except (ConnectionError, OSError, asyncio.TimeoutError) as error:
                if attempt == self.max_retries:
                    raise ConnectionError(f"cannot connect to TWS/IB Gateway at {self.host}:{self.port} after {attempt + 1} attempts: {error}") from None
                delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
                LOG.warning("IB connection failed (%s); retry in %.1fs", error, delay)
                await asyncio.sleep(delay)

    async def _fetch(self, symbols, days, bar_size, what_to_show, use_rth, limiter) -> BarsResult:
        from ib_async import IB

        result = BarsResult()
        ib = IB()
        ib.RaiseRequestErrors = True
        await self._connect(ib)
        try:
            contracts = {}
            for symbol in symbols:
                try:
                    contracts[symbol] = await self._qualify(ib, symbol)
                except LookupError as error:
                    result.errors[symbol] = str(error)
            await self._fetch_pages(ib, contracts, days, bar_size, what_to_show, use_rth, limiter or self._new_limiter(bar_size), result)
        finally:
            ib.disconnect()
        return result

    async def _fetch_pages(self, ib, contracts: dict, days, bar_size, what_to_show, use_rth, limiter, result: BarsResult) -> None:
        from ib_async import RequestError

        adaptive = isinstance(limiter, AdaptiveLimiter)
        result.policy = "adaptive" if adaptive else "strict"
        pages = page_days(days, bar_size, self.page_limit(bar_size) if adaptive else None)
        semaphore = asyncio.Semaphore(self.max_parallel_requests)
        lock = asyncio.Lock()

        async def ensure_connected() -> None:
            if not ib.isConnected():
                async with lock:
                    if not ib.isConnected():
                        LOG.warning("IB connection lost; reconnecting to %s:%s", self.host, self.port)
                        await self._connect(ib, result)
                        result.reconnects += 1

        async def request_once(contract, request, page):
            """One request under the limiter: (frame, None) or (None, "pacing" | "timeout" | "lost")."""
            if adaptive:
                await ensure_connected()
                await limiter.acquire(request)
                outcome = "lost"
                try:
                    frame, outcome = await send(contract, page)
                    return frame, outcome
                finally:
                    limiter.release(ok=outcome is None, pacing=outcome == "pacing")
            async with semaphore:
                await ensure_connected()
                await limiter.acquire_async(request)
                return await send(contract, page)

        async def send(contract, page):
            result.requests += 1
            try:
                return _bars_frame(await history.bars(contract, page.end, page.duration, bar_size, what_to_show, use_rth)), None
            except RequestError as error:
                if is_no_data(error.code, error.message):
                    return pd.DataFrame(), None
                if not is_pacing_error(error.code, error.message):
                    raise
                result.pacing_retries += 1
                return None, "pacing"
            except asyncio.TimeoutError:
                result.timeouts += 1
                return None, "timeout"  # no answer in time (the request was cancelled): retry the page
            except ConnectionError:
                return None, "lost"  # a dropped connection: reconnect and retry the page

        async def one(symbol, contract, page):
            request = HistoricalRequest(symbol, self.exchange, what_to_show, page.end, page.duration, bar_size)
            failures = pacing = 0
            while True:
                frame, outcome = await request_once(contract, request, page)
                if outcome is None:
                    return frame
                if outcome == "pacing":
                    pacing += 1
                else:
                    failures += 1
                if failures > self.max_retries or pacing > (self.max_pacing_retries if adaptive else self.max_retries):
                    raise RuntimeError(f"IB request for {symbol} ending {page.end} failed after {failures + pacing} retries (last: {_OUTCOMES[outcome]})")
                if adaptive and outcome == "pacing":
                    continue  # the limiter's back-off spaces the retry
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (failures + pacing - 1))
                LOG.warning("IB page %s %s failed (%s); retry in %.1fs", symbol, page.end, outcome, delay)
                await asyncio.sleep(delay)

        result.pages += len(pages) * len(contracts)
        with HistoricalRequests(ib, self.request_timeout_s) as history:
            tasks = {(symbol, page): asyncio.create_task(one(symbol, contract, page)) for symbol, contract in contracts.items() for page in pages}
            for (symbol, page), task in tasks.items():
                try:
                    frame = await task
                except Exception as error:  # one symbol failing never fails the others
                    result.errors[symbol] = f"{type(error).__name__}: {error}"
                    continue
                by_day = {}
                if len(frame):  # one pass per page: de-duplicated, sorted, split by New York date
                    frame = frame.drop_duplicates("ts").sort_values("ts").assign(symbol=symbol)
                    by_day = {day: rows.reset_index(drop=True) for day, rows in frame.groupby(frame["ts"].dt.tz_convert(NY).dt.date, sort=False)}
                for day in page.days:
                    if day in by_day:
                        result.bars[(symbol, day)] = by_day[day]
                    else:
                        result.empty_days.append((symbol, day))
        _drop_failed_symbols(result)
        if adaptive:
            result.peak_open = max(result.peak_open, limiter.stats.peak_open)


_OUTCOMES = {"pacing": "pacing violation", "timeout": "no answer in time", "lost": "connection lost"}


def _drop_failed_symbols(result: BarsResult) -> None:
    """A failed symbol keeps no bars and no "no data" days: its days are errors, never empty."""
    failed = set(result.errors)
    result.bars = {k: v for k, v in result.bars.items() if k[0] not in failed}
    result.empty_days = [k for k in result.empty_days if k[0] not in failed]


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _event(ts, bar, contract_id: str) -> BarEvent:
    opening = bar.open_ if hasattr(bar, "open_") else bar.open  # ib_async's RealTimeBar says open_
    return BarEvent(_utc(ts).to_pydatetime(), float(opening), float(bar.high), float(bar.low), float(bar.close), float(bar.volume), contract_id)


def _bars_frame(bars) -> pd.DataFrame:
    if not bars:
        return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
    return pd.DataFrame(
        {
            "ts": pd.to_datetime([b.date for b in bars], utc=True),
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [int(b.volume) for b in bars],
            "vwap": [b.average for b in bars],
            "trade_count": [int(b.barCount) for b in bars],
        }
    )
