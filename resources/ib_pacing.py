"""Interactive Brokers historical-data pacing, enforced before a request is sent.

Two policies, chosen by bar size (``resources.ib_source.IBSource.pacing_policy``):

``PacingLimiter`` — IB's hard rules, for bars of 30 s and less (and everything under the
``strict`` policy), exactly as IB documents them ("Pacing Violations for Small Bars"):

* at most ``max_requests`` (60) historical requests in any rolling ``window`` (600 s);
* no identical request (same contract, end, duration, bar size, what-to-show) within 15 s;
* at most 6 requests for the same contract / exchange / tick type within 2 s.

``PacingLimiter.acquire(request)`` blocks (through the injected ``sleep``) until the request may go
and records it; ``delay_for`` computes the wait without recording. The clock is injectable so the
rules are tested with a fake clock; it is thread-safe.

``AdaptiveLimiter`` — for bars of 1 min and larger, where IB lifted the hard limits and soft-throttles
instead (IB: "the maximum number of simultaneous open historical data requests from the API is 50";
"it will probably be more efficient to have a much smaller number of requests pending"). AIMD on the
number of open requests: it starts at ``start_concurrent`` (2), adds one open request per window of
successful answers up to ``max_concurrent`` (6 by default, at most 50), halves it on a pacing
error (162 pacing violation, 366, 100/"max rate", see ``is_pacing_error``) and pauses every new
request for a back-off (2 s doubling per consecutive error, capped at 60 s). The rules that cost
nothing are kept: no identical request within 15 s, at most 6 per contract within 2 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

IB_MAX_OPEN_HISTORICAL = 50  # IB: maximum simultaneous open historical data requests


@dataclass(frozen=True)
class HistoricalRequest:
    symbol: str
    exchange: str
    what_to_show: str
    end: str
    duration: str
    bar_size: str

    @property
    def contract_key(self) -> tuple[str, str, str]:
        return (self.symbol, self.exchange, self.what_to_show)


class PacingLimiter:
    def __init__(
        self,
        max_requests: int = 60,
        window: float = 600.0,
        identical_gap: float = 15.0,
        per_contract: int = 6,
        per_contract_window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.max_requests, self.window = max_requests, window
        self.identical_gap = identical_gap
        self.per_contract, self.per_contract_window = per_contract, per_contract_window
        self.clock, self.sleep = clock, sleep
        self._all: deque[float] = deque()
        self._by_contract: dict[tuple, deque[float]] = {}
        self._last_identical: dict[HistoricalRequest, float] = {}
        self._lock = threading.Lock()
        self.sent: list[tuple[float, HistoricalRequest]] = []

    def delay_for(self, request: HistoricalRequest, now: float | None = None) -> float:
        """Seconds to wait before ``request`` may be sent (0 when it may go now)."""
        now = self.clock() if now is None else now
        waits = [0.0]
        while self._all and self._all[0] <= now - self.window:
            self._all.popleft()
        if len(self._all) >= self.max_requests:
            waits.append(self._all[len(self._all) - self.max_requests] + self.window - now)
        same = self._by_contract.get(request.contract_key)
        if same:
            while same and same[0] <= now - self.per_contract_window:
                same.popleft()
            if len(same) >= self.per_contract:
                waits.append(same[len(same) - self.per_contract] + self.per_contract_window - now)
        last = self._last_identical.get(request)
        if last is not None and now - last < self.identical_gap:
            waits.append(last + self.identical_gap - now)
        return max(waits)

    def acquire(self, request: HistoricalRequest) -> float:
        """Wait until ``request`` may be sent, record it, and return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                delay = self.delay_for(request)
                if delay <= 0:
                    break
                self.sleep(delay)
                waited += delay
            self._record(request)
        return waited

    def _record(self, request: HistoricalRequest) -> None:
        now = self.clock()
        self._all.append(now)
        self._by_contract.setdefault(request.contract_key, deque()).append(now)
        self._last_identical[request] = now
        self.sent.append((now, request))

    async def acquire_async(self, request: HistoricalRequest) -> float:
        """``acquire`` for asyncio callers: waits with ``asyncio.sleep`` instead of blocking."""
        waited = 0.0
        while True:
            with self._lock:
                delay = self.delay_for(request)
                if delay <= 0:
                    self._record(request)
                    return waited
            await asyncio.sleep(delay)
            waited += delay

    def penalize(self, seconds: float) -> None:
        """After a pacing violation from IB: block every request for ``seconds``."""
        with self._lock:
            self.sleep(seconds)


def is_no_data(code: int, message: str) -> bool:
    """True for IB's 162 "HMDS query returned no data": the request was answered, there are no bars."""
    return code == 162 and "no data" in (message or "").lower()


def is_pacing_error(code: int, message: str) -> bool:
    """True for IB answers that mean "too much, too fast": back off and retry the same request.

    162 (historical data service error) unless it is "HMDS query returned no data"; 366 (the query
    was cancelled / not found, which IB sends after throttling); 100 ("Max rate of messages per
    second has been exceeded"); 322 about the maximum number of simultaneous requests; and any
    message naming a pacing violation or a max rate.
    """
    text = (message or "").lower()
    if code == 162:
        return not is_no_data(code, message)
    if code in (366, 100):
        return True
    if code == 322 and ("max" in text or "exceed" in text):
        return True
    return "pacing violation" in text or "max rate" in text


@dataclass
class AdaptiveStats:
    sent: list[tuple[float, HistoricalRequest]] = field(default_factory=list)
    pacing_errors: int = 0
    peak_open: int = 0
    limits: list[tuple[float, float]] = field(default_factory=list)  # (time, allowed open requests) after each change


class AdaptiveLimiter:
    """Open historical requests bounded by an AIMD window (asyncio; one event loop).

    ``await acquire(request)`` waits until fewer than ``allowed`` requests are open, no back-off is
    running, the request is not identical to one sent within ``identical_gap`` and its contract had
    fewer than ``per_contract`` requests within ``per_contract_window``; it records the request as
    open. ``release(pacing=...)`` closes it: a success grows the window by ``1 / window`` (one per
    window of answers), a pacing error halves it (once per back-off) and starts the back-off.
    """

    def __init__(
        self,
        max_concurrent: int = 6,
        start_concurrent: int = 2,
        identical_gap: float = 15.0,
        per_contract: int = 6,
        per_contract_window: float = 2.0,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 1 <= max_concurrent <= IB_MAX_OPEN_HISTORICAL:
            raise ValueError(f"max_concurrent must be between 1 and {IB_MAX_OPEN_HISTORICAL} (IB's limit of open historical requests), got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.window = float(min(max(1, start_concurrent), max_concurrent))
        self.identical_gap = identical_gap
        self.per_contract, self.per_contract_window = per_contract, per_contract_window
        self.backoff, self.max_backoff = backoff, max_backoff
        self.clock = clock
        self.open = 0
        self.resume_at = float("-inf")
        self._streak = 0
        self._by_contract: dict[tuple, deque[float]] = {}
        self._last_identical: dict[HistoricalRequest, float] = {}
        self._waiters: list = []
        self.stats = AdaptiveStats()
        self.stats.limits.append((clock(), self.window))

    @property
    def allowed(self) -> int:
        """Requests that may be open now."""
        return max(1, int(self.window))

    def delay_for(self, request: HistoricalRequest, now: float | None = None) -> float:
        """Seconds before ``request`` may go as far as time is concerned (back-off, identical, per contract)."""
        now = self.clock() if now is None else now
        waits = [0.0, self.resume_at - now]
        same = self._by_contract.get(request.contract_key)
        if same:
            while same and same[0] <= now - self.per_contract_window:
                same.popleft()
            if len(same) >= self.per_contract:
                waits.append(same[len(same) - self.per_contract] + self.per_contract_window - now)
        last = self._last_identical.get(request)
        if last is not None and now - last < self.identical_gap:
            waits.append(last + self.identical_gap - now)
        return max(waits)

    async def acquire(self, request: HistoricalRequest) -> float:
        """Wait until ``request`` may be sent and count it as open; returns the seconds waited."""
        started = self.clock()
        while True:
            delay = self.delay_for(request)
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if self.open < self.allowed:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        now = self.clock()
        self.open += 1
        self.stats.peak_open = max(self.stats.peak_open, self.open)
        self._by_contract.setdefault(request.contract_key, deque()).append(now)
        self._last_identical[request] = now
        self.stats.sent.append((now, request))
        return now - started

    def release(self, ok: bool = True, pacing: bool = False) -> None:
        """Close an open request: ``ok`` an answer, ``pacing`` a pacing error, neither a lost one."""
        now = self.clock()
        self.open = max(0, self.open - 1)
        if pacing:
            self.stats.pacing_errors += 1
            if now >= self.resume_at:  # one decrease per back-off: a burst of errors halves once
                self.window = max(1.0, self.window / 2)
                self.resume_at = now + min(self.max_backoff, self.backoff * 2**self._streak)
                self._streak += 1
                self.stats.limits.append((now, self.window))
        elif ok:
            self._streak = 0
            if self.window < self.max_concurrent:
                self.window = min(float(self.max_concurrent), self.window + 1.0 / self.window)
                self.stats.limits.append((now, self.window))
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
