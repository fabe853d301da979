"""Throttling of refresh requests (the HTTP guide: "rate limiting: prevent abuse through request
throttling"; "concurrent downloads: limited to 5 parallel downloads").

* ``RateLimiter``: at most ``limit`` refresh requests per client address in any sliding window of
  ``window_s`` seconds (``API_REFRESH_RATE_LIMIT``, default 10, 0 = off;
  ``API_REFRESH_RATE_WINDOW_SECONDS``, default 60). Only requests that passed validation count.
* at most ``API_MAX_CONCURRENT_REFRESHES`` (default 5) refresh jobs download at once: a refresh
  beyond them is accepted and waits for a slot (PENDING; ``platform_api.job_slots``), as work
  queued in a thread pool would, never a 429.

The rate limit answers 429 with a ``detail`` and a ``Retry-After`` header (seconds). Pure logic with
an injectable clock; state lives in the service process (one uvicorn worker).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class Throttled(Exception):
    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.detail, self.retry_after = detail, max(1, retry_after)


class RateLimiter:
    """Sliding-window request counter per key."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one request of ``key``, or raise ``Throttled`` (the request is not counted)."""
        if self.limit <= 0:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                wait = math.ceil(hits[0] + self.window_s - now)
                raise Throttled(f"Rate limit exceeded: at most {self.limit} refresh requests per {self.window_s:g} seconds; retry in {max(1, wait)} seconds", wait)
            hits.append(now)
            for other in [k for k, v in self._hits.items() if not v]:  # forget idle clients
                del self._hits[other]
