"""Live L2 depth capture (``record_depth``): reqMktDepth -> book -> snapshot files, in the TF_1 contract.

The book is maintained from the depth messages themselves (operation 0 insert / 1 update write the
row at ``position``, 2 delete removes it; side 1 bid, 0 ask — the semantics ib_async applies), and
every message is logged. Every ``interval_s`` a snapshot of ``levels`` rows per side is taken
(zeros for missing rows). Files, per rotation segment starting at HHMMSS New York time:

* ``level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_{HHMMSS}.parquet`` (contract columns + source="ib");
* ``level2/{SYMBOL}/{YYYY-MM-DD}_messages_{HHMMSS}.json`` (timestamp, operation add/update/remove,
  side bid/ask, level, price, size, symbol);
* ``level2/{SYMBOL}/session_stats_{YYYYMMDD_HHMMSS}.json`` at the end (the guide's ``num_snapshots``,
  ``num_messages``, ``interval_ms``, ``levels``; counts, files, end reason, ``gaps``).

The current segment is re-written atomically every ``flush_s`` and on rotation, SIGINT/SIGTERM, a
dropped connection or the end of ``duration_s``: a stop never loses a recorded snapshot. After a
dropped connection the recorder reconnects and subscribes again (the book restarts from IB's full
re-send).

Gaps, not a frozen book: the data is down from a dropped socket, an IB outage error (1100
"Connectivity between IB and TWS has been lost", 2103 "Market data farm connection is broken"; the
socket stays open and the book silently stops) or ``stale_s`` seconds without a depth update (the
watchdog) until the next depth update. Meanwhile no snapshot is written (one is taken at the moment
a drop or an outage error arrives: the book as the data left it). When IB says the data is back
(1101, 1102, 2104, 2106) after an outage error, depth is subscribed again (the book restarts from
IB's full re-send). Every gap is in the session stats as ``{"start", "end", "reason", "resumed"}``
(``resumed`` false: the session ended inside the gap).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from resources.atomic import LockTimeoutError, atomic_write, file_lock, write_json_atomic
from resources.l2_store import L2SnapshotStore
from resources.schemas import L2Book

NY = "America/New_York"
OPERATIONS = {0: "add", 1: "update", 2: "remove"}
OUTAGE_CODES = frozenset({1100, 2103})               # IB <-> TWS connectivity lost; market data farm broken
RESTORED_CODES = frozenset({1101, 1102, 2104, 2106})  # connectivity restored (data lost / kept); farm OK
DEFAULT_STALE_S = 0.0  # the no-update watchdog, off by default: a quiet book (pre-open, an illiquid symbol) is still valid; IB's 1100/2103 and drops always open a gap
SIDES = {1: "bid", 0: "ask"}
MARKET_DATA_REFUSALS = frozenset({200, 354, 10089, 10090, 10091, 10167, 10168, 10197})
"""IB errors answered to a market-data request (depth, real-time bars) that mean none will come: no
security (200), no market-data subscription or permission (354, 10089-10091, 10168), delayed data
only (10167), a competing session (10197). Only these: never the depth reset notice (317), a
warning (2100-2199) or an error left over from an earlier request."""
DEPTH_REFUSALS = MARKET_DATA_REFUSALS | {309, 10092, 10186}  # + too many depth requests, deep data not supported, not subscribed (delayed off)


RECONNECT_STREAK_S = 300.0
"""A drop more than this long after the last reconnect starts a new streak: ``reconnects`` bounds the
drops in a row, not the drops of a whole day (IB Gateway restarts nightly, networks blip)."""


@dataclass
class ReconnectStreak:
    """The reconnect budget of a live recorder: at most ``limit`` reconnects in a row, where a drop
    more than ``RECONNECT_STREAK_S`` after the last reconnect starts a new count."""

    limit: int
    streak: int = 0
    last: float | None = None

    def allow(self, now: float) -> bool:
        """Whether to reconnect after a drop at ``now`` (loop time); counts the reconnect if so."""
        self.streak = self.streak + 1 if self.last is not None and now - self.last < RECONNECT_STREAK_S else 1
        if self.streak > self.limit:
            return False
        self.last = now
        return True


def failed_end(reason: str) -> bool:
    """Whether a session ending with ``reason`` failed (anything but a stop or the end of the duration)."""
    return reason not in ("stopped", "duration")


@dataclass
class DepthBook:
    """A price ladder per side addressed by position (what IB's depth messages update)."""

    levels: int = 10
    bids: dict[int, tuple[float, int]] = field(default_factory=dict)
    asks: dict[int, tuple[float, int]] = field(default_factory=dict)

    def apply(self, position: int, operation: int, side: int, price: float, size: float) -> None:
        rows = self.bids if side == 1 else self.asks
        if operation in (0, 1):
            rows[position] = (float(price), int(size))
        elif operation == 2:
            rows.pop(position, None)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        out = []
        for rows in (self.bids, self.asks):
            prices, sizes = np.zeros(self.levels), np.zeros(self.levels, dtype=np.int64)
            for position, (price, size) in rows.items():
                if 0 <= position < self.levels:
                    prices[position], sizes[position] = price, size
            out += [prices, sizes]
        return out[0], out[1], out[2], out[3]


@dataclass
class Segment:
    day: dt.date
    suffix: str
    started: pd.Timestamp
    stamps: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    encoded: list = field(default_factory=list)  # the JSON text of messages[:len(encoded)], encoded once


def messages_json(segment: Segment) -> str:
    """The segment's messages file: a JSON array, one compact message per line. Each message is
    encoded once, at the first flush that writes it: re-encoding the whole segment (indented) at
    every flush grew with the segment (2 s per flush for 30 min at 200 messages/s) and held up
    the snapshots due meanwhile."""
    segment.encoded.extend(json.dumps(m, sort_keys=True) for m in segment.messages[len(segment.encoded):])
    return "[\n" + ",\n".join(segment.encoded) + "\n]\n"


@dataclass
class CaptureStats:
    symbol: str
    started_at: str
    ended_at: str = ""
    end_reason: str = ""
    snapshots: int = 0
    messages: int = 0
    reconnects: int = 0
    files: list = field(default_factory=list)
    gaps: list = field(default_factory=list)  # {"start", "end", "reason", "resumed"}: no snapshots in between


def replay(messages: list[dict], levels: int = 10) -> DepthBook:
    """The book a logged message sequence produces (to check snapshots against their messages)."""
    book = DepthBook(levels)
    reverse_ops = {v: k for k, v in OPERATIONS.items()}
    reverse_sides = {v: k for k, v in SIDES.items()}
    for m in messages:
        book.apply(m["level"], reverse_ops[m["operation"]], reverse_sides[m["side"]], m["price"], m["size"])
    return book


class DepthRecorder:
    def __init__(self, store: L2SnapshotStore, symbol: str, levels: int = 10, source: str = "ib", interval_ms: float | None = None):
        self.store, self.symbol, self.levels, self.source, self.interval_ms = store, symbol, levels, source, interval_ms
        self.book = DepthBook(levels)
        self.segment: Segment | None = None
        self.stats = CaptureStats(symbol, pd.Timestamp.now(tz="UTC").isoformat())
        self.gap: dict | None = None  # the open gap: the data is down
        self.last_update = pd.Timestamp.now(tz="UTC")

    def data_down(self, now: pd.Timestamp, reason: str, rotate_s: float, snapshot: bool = True) -> None:
        """Open a gap (or add ``reason`` to the open one); ``snapshot``: first keep the book as the data left it."""
        if self.gap is not None:
            if reason not in self.gap["reason"]:
                self.gap["reason"] += f"; {reason}"
            return
        if snapshot:
            self.snapshot(now, rotate_s)
        self.gap = {"start": now.isoformat(), "end": None, "reason": reason, "resumed": False}

    def data_back(self, now: pd.Timestamp, resumed: bool = True) -> None:
        """Close the open gap at ``now``: snapshots are taken again."""
        if self.gap is not None:
            self.gap.update(end=now.isoformat(), resumed=resumed)
            self.stats.gaps.append(self.gap)
            self.gap = None

    def stale(self, now: pd.Timestamp, stale_s: float | None) -> bool:
        """True when no depth update came for ``stale_s`` seconds (None or 0: never) outside a gap."""
        return bool(stale_s) and self.gap is None and (now - self.last_update).total_seconds() >= stale_s

    def restart_book(self, now: pd.Timestamp) -> None:
        """A new subscription: IB re-sends the book in full; the watchdog counts from ``now``."""
        self.book = DepthBook(self.levels)
        self.last_update = now

    def _segment_for(self, now: pd.Timestamp, rotate_s: float) -> Segment:
        local = now.tz_convert(NY)
        if self.segment is None or self.segment.day != local.date() or (now - self.segment.started).total_seconds() >= rotate_s:
            if self.segment is not None:
                self.flush()
            self.segment = Segment(local.date(), local.strftime("%H%M%S"), now)
        return self.segment

    def on_message(self, now: pd.Timestamp, position: int, operation: int, side: int, price: float, size: float, rotate_s: float) -> None:
        self.data_back(now)
        self.last_update = now
        self.book.apply(position, operation, side, price, size)
        segment = self._segment_for(now, rotate_s)
        segment.messages.append({
            "timestamp": now.isoformat(), "operation": OPERATIONS.get(operation, str(operation)), "side": SIDES.get(side, str(side)),
            "level": int(position), "price": float(price), "size": float(size), "symbol": self.symbol,
        })
        self.stats.messages += 1

    def snapshot(self, now: pd.Timestamp, rotate_s: float) -> None:
        """The book at ``now``, unless it is empty or the data is down (a gap, never a frozen book)."""
        if self.gap is not None or (not self.book.bids and not self.book.asks):
            return
        segment = self._segment_for(now, rotate_s)
        segment.stamps.append(now.tz_convert("UTC").tz_localize(None).to_datetime64())
        segment.rows.append(self.book.arrays())
        self.stats.snapshots += 1

    def flush(self) -> None:
        """Atomically (re)write the current segment's snapshot and message files."""
        segment = self.segment
        if segment is None:
            return
        if segment.rows:
            bid_p, bid_s, ask_p, ask_s = (np.stack([r[i] for r in segment.rows]) for i in range(4))
            book = L2Book(np.array(segment.stamps, dtype="datetime64[ns]"), bid_p, bid_s, ask_p, ask_s)
            path = self.store.write(self.symbol, segment.day, book, suffix=segment.suffix, source=self.source)
            if str(path) not in self.stats.files:
                self.stats.files.append(str(path))
        if segment.messages:
            path = self.store.symbol_dir(self.symbol) / f"{segment.day.isoformat()}_messages_{segment.suffix}.json"
            text = messages_json(segment)
            atomic_write(path, lambda tmp: tmp.write_text(text), fsync=self.store.fsync)
            if str(path) not in self.stats.files:
                self.stats.files.append(str(path))

    def finish(self, reason: str) -> CaptureStats:
        self.flush()
        now = pd.Timestamp.now(tz="UTC")
        self.data_back(now, resumed=False)
        self.stats.ended_at, self.stats.end_reason = now.isoformat(), reason
        path = self.store.symbol_dir(self.symbol) / f"session_stats_{now.tz_convert(NY):%Y%m%d_%H%M%S}.json"
        guide = {"num_snapshots": self.stats.snapshots, "num_messages": self.stats.messages, "interval_ms": self.interval_ms, "levels": self.levels}
        write_json_atomic({**self.stats.__dict__, **guide}, path, fsync=self.store.fsync)
        return self.stats


class RecorderBusyError(RuntimeError):
    """Another depth recording of the symbol holds its lock (their files would overwrite each other)."""


def recorder_lock_path(store: L2SnapshotStore, symbol: str) -> Path:
    """One lock per recorded symbol, beside the level2 folder (never inside a symbol's folder)."""
    return Path(store.level2_path).parent / ".locks" / f"record-depth-{symbol}.lock"


async def record_depth(ib_source, store: L2SnapshotStore, symbol: str, **options) -> CaptureStats:
    """``record_depth_session`` holding the symbol's recorder lock: a second recording of the same
    symbol at once (another terminal, a Dagster job beside the CLI) raises ``RecorderBusyError``
    instead of writing files over the first one's."""
    path = recorder_lock_path(store, symbol)
    try:
        with file_lock(path, timeout=0):
            return await record_depth_session(ib_source, store, symbol, **options)
    except LockTimeoutError:
        raise RecorderBusyError(f"{symbol}: another depth recording of this symbol is running (lock {path}); stop it first") from None


async def record_depth_session(
    ib_source, store: L2SnapshotStore, symbol: str, *, levels: int = 10, interval_s: float = 1.0, rotate_s: float = 1800.0,
    flush_s: float = 30.0, duration_s: float | None = None, stop: asyncio.Event | None = None, reconnects: int = 3,
    stale_s: float | None = DEFAULT_STALE_S,
) -> CaptureStats:
    """Subscribe to ``levels`` rows of depth for ``symbol`` and record until stopped.

    A dropped connection flushes everything recorded, then reconnects (exponential backoff, up to
    ``reconnects`` drops in a row: a drop more than ``RECONNECT_STREAK_S`` after the last reconnect
    starts a new count) and subscribes again; the book restarts empty because IB re-sends it in
    full. When reconnecting fails the session ends with ``end_reason: disconnected``. While the data
    is down (a drop, IB errors 1100/2103 until 1101/1102/2104/2106, no depth update for ``stale_s``
    seconds; None or 0 switches the watchdog off) no snapshot is written and the gap is recorded.
    IB refusing the depth request itself (no permission 354, 10092, ...) ends the session at once
    with ``end_reason`` "depth refused: IB error {code}: {message}" (``failed_end``).
    """
    from ib_async import IB, Stock

    stop = stop or asyncio.Event()
    recorder = DepthRecorder(store, symbol, levels, interval_ms=interval_s * 1000)
    dropped, outage, restored = asyncio.Event(), asyncio.Event(), asyncio.Event()
    ib = IB()
    depth = {}  # the subscription: contract, ticker
    refused: list[str] = []  # IB's answer to the depth request when it refused it
    reason = "stopped"

    def on_update(t):
        for tick in t.domTicks:
            stamp = pd.Timestamp(tick.time)
            stamp = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
            recorder.on_message(stamp, tick.position, tick.operation, tick.side, tick.price, tick.size, rotate_s)

    def on_drop():
        recorder.data_down(pd.Timestamp.now(tz="UTC"), "connection to TWS/IB Gateway lost", rotate_s)
        dropped.set()

    def on_error(req_id, code, message, *_):
        ticker = depth.get("ticker")
        if ticker is not None and req_id >= 0 and ib.wrapper.reqId2Ticker.get(req_id) is ticker and code in DEPTH_REFUSALS:
            refused.append(f"depth refused: IB error {code}: {message}")
            stop.set()
        elif code in OUTAGE_CODES:
            recorder.data_down(pd.Timestamp.now(tz="UTC"), f"IB error {code}: {message}", rotate_s)
            outage.set()
        elif code in RESTORED_CODES and outage.is_set():
            restored.set()

    def request_depth() -> None:
        """(Re)start the depth subscription; IB answers with the whole book."""
        recorder.restart_book(pd.Timestamp.now(tz="UTC"))
        outage.clear()
        restored.clear()
        depth["ticker"] = ib.reqMktDepth(depth["contract"], numRows=levels)
        depth["ticker"].updateEvent += on_update

    def resubscribe() -> None:
        """After an outage: the updates IB sent meanwhile are lost, so ask for the whole book again."""
        depth["ticker"].updateEvent -= on_update
        ib.cancelMktDepth(depth["contract"])
        request_depth()

    async def subscribe() -> None:
        await ib_source._connect(ib)
        qualified = await ib.qualifyContractsAsync(Stock(symbol, ib_source.exchange, ib_source.currency))
        if not qualified or qualified[0] is None:
            raise ValueError(f"IB has no security definition for {symbol} (error 200)")
        depth["contract"] = qualified[0]
        request_depth()

    ib.disconnectedEvent += on_drop
    ib.errorEvent += on_error
    try:
        await subscribe()
        loop = asyncio.get_running_loop()
        started = last_flush = loop.time()
        budget = ReconnectStreak(reconnects)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except asyncio.TimeoutError:
                pass
            if refused:
                break
            if dropped.is_set():
                recorder.flush()
                if not budget.allow(loop.time()):
                    reason = "disconnected"
                    break
                recorder.stats.reconnects += 1
                dropped.clear()
                try:
                    await subscribe()
                except (ConnectionError, OSError, asyncio.TimeoutError):
                    reason = "disconnected"
                    break
                continue
            now = pd.Timestamp.now(tz="UTC")
            if restored.is_set():
                resubscribe()
            if recorder.stale(now, stale_s):
                recorder.data_down(now, f"no depth update for {stale_s:g} s", rotate_s, snapshot=False)
            recorder.snapshot(now, rotate_s)
            if loop.time() - last_flush >= flush_s:
                recorder.flush()
                last_flush = loop.time()
            if duration_s is not None and loop.time() - started >= duration_s:
                reason = "duration"
                break
    finally:
        recorder.snapshot(pd.Timestamp.now(tz="UTC"), rotate_s)  # the final state of the book (none while the data is down)
        ib.disconnectedEvent -= on_drop  # our own disconnect below is no gap
        ib.errorEvent -= on_error
        stats = recorder.finish(refused[0] if refused else reason)
        if ib.isConnected():
            ib.disconnect()
    return stats


# ``record_depth`` takes exactly ``record_depth_session``'s parameters (it passes them on): say so to
# ``inspect`` and help(), which otherwise show ``**options``.
record_depth.__signature__ = inspect.signature(record_depth_session)
