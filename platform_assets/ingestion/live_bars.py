"""Live 1-minute bars into the raw layer (the design's ``TwsIngestor.run_live_stream``, seed 001 3.2.2).

``record_bars(ib, lake, symbols)`` subscribes to IB's 5-second real-time bars (``reqRealTimeBars``)
for every symbol, aggregates them into 1-minute bars (``MinuteBuilder``: a minute counts only when
all twelve 5-second bars arrived, so a minute cut by a drop is never written half-filled) and
writes them, every ``flush_s``, as append-only raw batches under ``lake/raw_bars/source=ib_live``
(one batch per (symbol, New York date) holding the day's bars so far, content-hashed ``batch_id``:
curation reads the newest batch of a source, so each flush supersedes the previous one).

No gaps, no duplicates: each symbol keeps the last minute written; a completed minute that is not
the next one (after a dropped connection, or when the recording starts mid-session with
``backfill_open``) first backfills the missing minutes with one historical request for exactly
``[missing start, that minute)`` (complete minutes only), and a minute at or before the last one
is ignored. After a drop the recorder flushes, reconnects (exponential backoff, up to
``reconnects`` drops in a row, counted as ``record_depth`` does: ``ReconnectStreak``) and
subscribes again.

Curation: ``ib_live`` comes after ``ib`` in ``default_source_priority()``, so the day's curated
bars can be refreshed from the live batches during the session, and the end-of-day historical pull
(``raw_bars_ib``, source "ib") supersedes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

import pandas as pd

from platform_assets.ingestion.depth_capture import MARKET_DATA_REFUSALS, ReconnectStreak
from platform_assets.ingestion.raw_batches import build_raw_batch
from resources.ib_pacing import is_no_data
from resources.ib_source import HistoricalRequests
from resources.lake import ParquetLake, raw_bars_table
from resources.schemas import RAW_BAR_COLUMNS, RAW_BARS_SCHEMA

LOG = logging.getLogger("platform.ib.live")
NY = "America/New_York"
IB_LIVE = "ib_live"
MINUTE = pd.Timedelta(minutes=1)
BARS_PER_MINUTE = 12  # 5-second bars


@dataclass
class MinuteBuilder:
    """5-second bars of one symbol -> complete 1-minute bars (``RAW_BAR_COLUMNS`` dicts)."""

    minute: pd.Timestamp | None = None
    parts: dict[int, tuple] = field(default_factory=dict)  # second offset -> (o, h, l, c, volume, wap, count)

    def add(self, ts: pd.Timestamp, o: float, h: float, l: float, c: float, volume: float, wap: float, count: int) -> list[dict]:
        """Add one 5-second bar; returns the minutes it completed (zero or one)."""
        minute, done = ts.floor("1min"), []
        if self.minute is not None and minute < self.minute:
            return done  # late or repeated bar of a minute already closed
        if self.minute is not None and minute > self.minute:
            done += self._close()
        self.minute = minute
        self.parts[int((ts - minute).total_seconds())] = (o, h, l, c, volume, wap, count)
        if len(self.parts) == BARS_PER_MINUTE:
            done += self._close()
        return done

    def reset(self) -> None:
        """Forget a partly received minute (after a dropped connection)."""
        self.minute, self.parts = None, {}

    def _close(self) -> list[dict]:
        parts, minute = [self.parts[k] for k in sorted(self.parts)], self.minute
        complete = len(parts) == BARS_PER_MINUTE
        self.parts = {}
        self.minute = minute + MINUTE
        if not complete:
            return []
        volume = sum(p[4] for p in parts)
        vwap = sum(p[5] * p[4] for p in parts) / volume if volume else parts[-1][5]
        return [{
            "ts": minute, "open": parts[0][0], "high": max(p[1] for p in parts), "low": min(p[2] for p in parts), "close": parts[-1][3],
            "volume": int(round(volume)), "vwap": float(vwap), "trade_count": int(sum(p[6] for p in parts)),
        }]


REALTIME_REFUSALS = MARKET_DATA_REFUSALS | {420}
"""IB errors answered to a real-time bars request that mean none will come (``MARKET_DATA_REFUSALS``
and 420, an invalid real-time query); any other error (a backfill's 162 "no data", pacing, a
timeout) is not a refusal of the subscription."""


@dataclass
class LiveStats:
    symbols: list[str]
    started_at: str
    ended_at: str = ""
    end_reason: str = ""
    realtime_bars: int = 0
    minutes: int = 0             # minutes written from the stream
    backfilled: int = 0          # minutes written from historical backfills
    backfill_requests: int = 0
    reconnects: int = 0
    batches: int = 0
    gaps: list[str] = field(default_factory=list)  # backfills that failed: "SYMBOL start..end: why"
    refused: dict[str, str] = field(default_factory=dict)  # symbol -> IB's error refusing its real-time bars (no permission, ...)


@dataclass
class SymbolDay:
    """The bars recorded for one symbol, by minute; ``dirty`` days need a new batch."""

    rows: dict[pd.Timestamp, dict] = field(default_factory=dict)
    last: pd.Timestamp | None = None
    dirty: set[dt.date] = field(default_factory=set)

    def accept(self, row: dict) -> bool:
        ts = row["ts"]
        if self.last is not None and ts <= self.last:
            return False
        self.rows[ts] = row
        self.last = ts
        self.dirty.add(ts.tz_convert(NY).date())
        return True


def missing_range(last: pd.Timestamp | None, minute: pd.Timestamp, session_open: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The minutes to backfill before ``minute``: after ``last`` (or from ``session_open`` when
    nothing was recorded yet), None when there is no gap."""
    start = last + MINUTE if last is not None else session_open
    if start is None or start >= minute:
        return None
    return start, minute


def session_open_for(minute: pd.Timestamp, use_rth: bool) -> pd.Timestamp:
    """09:30 New York (04:00 outside regular hours) of ``minute``'s day, in UTC."""
    local = minute.tz_convert(NY).normalize()
    return (local + (pd.Timedelta(hours=9, minutes=30) if use_rth else pd.Timedelta(hours=4))).tz_convert("UTC")


class LiveBarsWriter:
    """Writes each symbol's day so far as one append-only raw batch (source ``ib_live``)."""

    def __init__(self, lake: ParquetLake, source: str = IB_LIVE, bars_manifest=None):
        self.lake, self.source, self.bars_manifest = lake, source, bars_manifest
        self.table = raw_bars_table(source)

    def flush(self, symbol: str, state: SymbolDay) -> int:
        """Write the dirty days of ``symbol``; returns the batches written."""
        written = 0
        ingestion_ts = pd.Timestamp.now(tz="UTC")
        for day in sorted(state.dirty):
            rows = [r for ts, r in sorted(state.rows.items()) if ts.tz_convert(NY).date() == day]
            frame = pd.DataFrame(rows, columns=RAW_BAR_COLUMNS)
            batch_id, batch, _ = build_raw_batch(frame, source=self.source, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
            path, new = self.lake.append_batch(self.table, symbol, day, batch, batch_id, ingestion_ts, RAW_BARS_SCHEMA)
            if new and self.bars_manifest is not None:
                self.bars_manifest.record(path, batch, vendor=self.source, symbol=symbol, bar_size="1min")
            written += new
        state.dirty.clear()
        return written


async def record_bars(
    ib_source, lake: ParquetLake, symbols: list[str], *, what_to_show: str = "TRADES", use_rth: bool = True, flush_s: float = 60.0,
    duration_s: float | None = None, stop: asyncio.Event | None = None, reconnects: int = 5, backfill_open: bool = True,
    bars_manifest=None, source: str = IB_LIVE,
) -> LiveStats:
    """Record live 1-minute bars of ``symbols`` into the raw layer until stopped (see the module doc).

    Ends with ``end_reason`` "stopped" (``stop`` set: SIGINT/SIGTERM in the CLI), "duration",
    "disconnected" (reconnecting failed or was tried ``reconnects`` times in a row) or "refused: ..."
    (IB refused every symbol's real-time bars); everything recorded is flushed whatever the reason.
    A symbol IB refuses (no market-data permission, ...) is named in ``stats.refused`` while the
    others record on.
    """
    from ib_async import IB, RequestError

    if not symbols:
        raise ValueError("record_bars needs at least one symbol")
    stop = stop or asyncio.Event()
    stats = LiveStats(list(symbols), pd.Timestamp.now(tz="UTC").isoformat())
    builders = {s: MinuteBuilder() for s in symbols}
    days = {s: SymbolDay() for s in symbols}
    contracts: dict[str, object] = {}
    writer = LiveBarsWriter(lake, source, bars_manifest)
    queue: asyncio.Queue = asyncio.Queue()
    dropped, refused_all = asyncio.Event(), asyncio.Event()
    ib = IB()
    ib.RaiseRequestErrors = True

    def listener(symbol: str):
        def on_bar(bars, has_new_bar):
            if has_new_bar and bars:
                queue.put_nowait((symbol, bars[-1]))
        return on_bar

    requests: dict[int, str] = {}  # reqRealTimeBars request id -> symbol

    async def subscribe() -> None:
        await ib_source._connect(ib)
        requests.clear()  # request ids restart with each connection: only this connection's subscriptions
        for symbol in symbols:
            if symbol in stats.refused:
                continue
            if symbol not in contracts:
                contracts[symbol] = await ib_source._qualify(ib, symbol)
            subscription = ib.reqRealTimeBars(contracts[symbol], 5, what_to_show, use_rth)
            requests[subscription.reqId] = symbol
            subscription.updateEvent += listener(symbol)

    def on_error(req_id, code, message, *_):
        symbol = requests.get(req_id)
        if symbol is not None and code in REALTIME_REFUSALS and symbol not in stats.refused:
            stats.refused[symbol] = f"IB error {code}: {message}"
            LOG.error("live bars: IB refused real-time bars of %s: IB error %s: %s", symbol, code, message)
            if len(stats.refused) == len(symbols):
                refused_all.set()
                stop.set()

    async def backfill(symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> list[dict]:
        seconds = int((end - start).total_seconds())
        for attempt in range(ib_source.max_retries + 1):
            stats.backfill_requests += 1
            try:
                bars = await history.bars(contracts[symbol], f"{end:%Y%m%d-%H:%M:%S}", f"{seconds} S", "1 min", what_to_show, use_rth)
                frame = [{"ts": pd.Timestamp(b.date).tz_convert("UTC"), "open": b.open, "high": b.high, "low": b.low, "close": b.close,
                          "volume": int(b.volume), "vwap": b.average, "trade_count": int(b.barCount)} for b in bars]
                return [r for r in frame if start <= r["ts"] < end]
            except RequestError as error:
                if is_no_data(error.code, error.message):
                    return []
                why = f"IB error {error.code}: {error.message}"
            except (ConnectionError, asyncio.TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"
            await asyncio.sleep(min(ib_source.max_delay_s, max(ib_source.identical_gap_s, ib_source.base_delay_s * 2**attempt)))
        stats.gaps.append(f"{symbol} {start.isoformat()}..{end.isoformat()}: {why}")
        LOG.error("live bars: backfill of %s %s..%s failed: %s", symbol, start, end, why)
        return []

    async def on_minute(symbol: str, row: dict) -> None:
        state = days[symbol]
        if state.last is not None and row["ts"] <= state.last:
            return
        gap = missing_range(state.last, row["ts"], session_open_for(row["ts"], use_rth) if backfill_open else None)
        if gap:
            for filled in await backfill(symbol, *gap):
                stats.backfilled += state.accept(filled)
        stats.minutes += state.accept(row)

    def flush() -> None:
        for symbol in symbols:
            stats.batches += writer.flush(symbol, days[symbol])

    async def drain() -> None:
        while not queue.empty():
            symbol, bar = queue.get_nowait()
            stats.realtime_bars += 1
            ts = pd.Timestamp(bar.time)
            ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
            for row in builders[symbol].add(ts, bar.open_, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.count):
                await on_minute(symbol, row)

    ib.disconnectedEvent += dropped.set
    ib.errorEvent += on_error
    history = HistoricalRequests(ib, ib_source.request_timeout_s).open()  # a timed-out backfill is retried, not "no data"
    reason = "stopped"
    loop = asyncio.get_running_loop()
    started = last_flush = loop.time()
    budget = ReconnectStreak(reconnects)  # drops in a row, as record_depth counts them
    try:
        await subscribe()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(0.05, flush_s))
            except asyncio.TimeoutError:
                pass
            await drain()
            if dropped.is_set() and not stop.is_set():
                flush()
                last_flush = loop.time()
                if not budget.allow(loop.time()):
                    reason = "disconnected"
                    break
                stats.reconnects += 1
                for builder in builders.values():
                    builder.reset()  # a minute cut by the drop is backfilled, never written half-filled
                dropped.clear()
                try:
                    await subscribe()
                except (ConnectionError, OSError, asyncio.TimeoutError):
                    reason = "disconnected"
                    break
                continue
            if loop.time() - last_flush >= flush_s:
                flush()
                last_flush = loop.time()
            if duration_s is not None and loop.time() - started >= duration_s:
                reason = "duration"
                break
    finally:
        flush()
        history.close()
        if refused_all.is_set():
            reason = "refused: " + "; ".join(f"{s} {why}" for s, why in stats.refused.items())
        stats.ended_at, stats.end_reason = pd.Timestamp.now(tz="UTC").isoformat(), reason
        if ib.isConnected():
            ib.disconnect()
    return stats
