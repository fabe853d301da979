"""Interactive Brokers (TWS / IB Gateway) as a Dagster resource over ``ib_async``.

``IBSource.fetch_bars`` qualifies the contracts, pages the range (``resources.ib_paging``), paces
every request (``resources.ib_pacing``: 60 per 10 min, no identical request within 15 s, 6 per
contract within 2 s) and sends at most ``max_parallel_requests`` at once. IB answers are mapped:

* 162 "pacing violation" / 366 -> back off (exponential, capped) and retry the page;
* 162 "HMDS query returned no data" -> an empty page (no error);
* 200 (no security definition) -> that symbol fails with a clear error, the others go on;
* a dropped connection -> reconnect with exponential backoff and retry the unfinished pages, so
  a resumed backfill has no duplicate or missing bars (pages are keyed, bars de-duplicated on ts).

Ports: TWS live 7496 / paper 7497, IB Gateway live 4001 / paper 4002 (``IB_HOST``, ``IB_PORT``,
``IB_CLIENT_ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from resources.ib_pacing import HistoricalRequest, PacingLimiter
from resources.ib_paging import page_days

LOG = logging.getLogger("platform.ib")
NY = "America/New_York"


@dataclass
class BarsResult:
    bars: dict[tuple[str, dt.date], pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)       # symbol -> why it failed
    empty_days: list[tuple[str, dt.date]] = field(default_factory=list)
    requests: int = 0
    pacing_retries: int = 0
    reconnects: int = 0


class IBSource(dg.ConfigurableResource):
    """Historical bars from TWS / IB Gateway through ib_async, paced and retried."""

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

    def limiter(self) -> PacingLimiter:
        """IB's pacing rules (the defaults are IB's documented limits)."""
        return PacingLimiter(self.pacing_max_requests, self.pacing_window_s, self.identical_gap_s, self.per_contract_requests, self.per_contract_window_s)

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
        use_rth: bool = True, limiter: PacingLimiter | None = None,
    ) -> BarsResult:
        """Bars per (symbol, New York date) for ``days``; failures per symbol in ``errors``."""
        return asyncio.run(self._fetch(symbols, days, bar_size, what_to_show, use_rth, limiter or self.limiter()))

    # ------------------------------------------------------------------ internals
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

    async def _fetch(self, symbols, days, bar_size, what_to_show, use_rth, limiter: PacingLimiter) -> BarsResult:
        from ib_async import IB, RequestError, Stock

        result = BarsResult()
        ib = IB()
        ib.RaiseRequestErrors = True
        await self._connect(ib)
        try:
            contracts = {}
            for symbol in symbols:
                try:
                    qualified = await ib.qualifyContractsAsync(Stock(symbol, self.exchange, self.currency))
                except RequestError as error:
                    if error.code != 200:
                        raise
                    qualified = []
                if not qualified or qualified[0] is None:
                    result.errors[symbol] = f"IB has no security definition for {symbol} ({self.exchange}/{self.currency}, error 200)"
                else:
                    contracts[symbol] = qualified[0]
            pages = page_days(days, bar_size)
            semaphore = asyncio.Semaphore(self.max_parallel_requests)
            lock = asyncio.Lock()

            async def one(symbol, contract, page):
                request = HistoricalRequest(symbol, self.exchange, what_to_show, page.end, page.duration, bar_size)
                for attempt in range(self.max_retries + 1):
                    async with semaphore:
                        if not ib.isConnected():
                            async with lock:
                                if not ib.isConnected():
                                    LOG.warning("IB connection lost; reconnecting to %s:%s", self.host, self.port)
                                    await self._connect(ib, result)
                                    result.reconnects += 1
                        await limiter.acquire_async(request)
                        result.requests += 1
                        try:
                            bars = await ib.reqHistoricalDataAsync(
                                contract, page.end, page.duration, bar_size, what_to_show, use_rth, formatDate=2, timeout=self.request_timeout_s
                            )
                            return _bars_frame(bars)
                        except RequestError as error:
                            if error.code == 162 and "no data" in error.message.lower():
                                return pd.DataFrame()
                            if error.code not in (162, 366):
                                raise
                            result.pacing_retries += 1
                        except (ConnectionError, asyncio.TimeoutError):
                            pass  # a dropped connection: reconnect (above) and retry the page
                    delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
                    LOG.warning("IB page %s %s failed (attempt %d); retry in %.1fs", symbol, page.end, attempt + 1, delay)
                    await asyncio.sleep(delay)
                raise RuntimeError(f"IB request for {symbol} ending {page.end} failed after {self.max_retries} retries")

            tasks = {(symbol, page): asyncio.create_task(one(symbol, contract, page)) for symbol, contract in contracts.items() for page in pages}
            for (symbol, page), task in tasks.items():
                try:
                    frame = await task
                except Exception as error:  # one symbol failing never fails the others
                    result.errors[symbol] = f"{type(error).__name__}: {error}"
                    continue
                for day in page.days:
                    rows = frame[frame["ts"].dt.tz_convert(NY).dt.date == day] if len(frame) else frame
                    if len(rows):
                        rows = rows.drop_duplicates("ts").sort_values("ts").reset_index(drop=True)
                        result.bars[(symbol, day)] = rows.assign(symbol=symbol)
                    else:
                        result.empty_days.append((symbol, day))
            for symbol in result.errors:
                result.bars = {k: v for k, v in result.bars.items() if k[0] != symbol}
        finally:
            ib.disconnect()
        return result


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
