"""Interactive Brokers historical-data pacing, enforced before a request is sent.

IB's documented rules (strict for bars of 30 s and less, soft for 1 min and up; enforced always):

* at most ``max_requests`` (60) historical requests in any rolling ``window`` (600 s);
* no identical request (same contract, end, duration, bar size, what-to-show) within 15 s;
* at most 6 requests for the same contract / exchange / tick type within 2 s.

``PacingLimiter.acquire(request)`` blocks (through the injected ``sleep``) until the request may go
and records it; ``delay_for`` computes the wait without recording. The clock is injectable so the
rules are tested with a fake clock; it is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


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
        import asyncio

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
