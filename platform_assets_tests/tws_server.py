"""A local server speaking the TWS API wire protocol (server version 176) for the real ib_async client.

Framing: every message is a 4-byte big-endian length followed by NUL-terminated fields. The
client opens with ``API\\0`` + its version range; the server answers exactly two fields (version,
time); after START_API it sends managed accounts and the next valid id. Implemented requests:
positions (answered with its end marker, as connect waits for it), contract details (9 -> 10/52,
or error 200 for an unknown symbol), historical data (20 -> 17, bars from the offline simulator),
market depth (10 -> 12 updates from a script, then ``depth_events``), and errors (4) for pacing (162 / 366) and no data
(162 "HMDS query returned no data"). ``script`` queues failures for the next historical requests
(``pacing``, ``pacing366``, ``drop``, ``silent``: never answered, the socket stays up);
``no_data_days`` answer no data; every request is recorded with its arrival time in ``requests``.

Historical requests take ``latency_s + latency_per_day_s * days`` to answer (answered concurrently;
``open_historical`` / ``peak_open_historical`` count the open ones). Durations in days (``N D``) or
seconds (``N S``, bars in ``[end - N s, end)``), ends as ``YYYYMMDD HH:MM:SS US/Eastern`` or
``YYYYMMDD-HH:MM:SS`` (UTC).

IB's limits, simulated when ``simulate_limits`` (times divided by ``time_scale`` so that a run of
seconds stands for hours): for bars of 30 s and less the hard rules (60 per 600 s, no identical
request within 15 s, 6 per contract within 2 s) and for every bar size at most 50 open requests,
each answered with 162 "pacing violation"; ``soft_max_open`` (more open requests than that) and
``soft_rate`` ((n, seconds): more requests than n in the window) answer 162 "max rate" — the soft
throttling of bars of 1 min and larger. ``pacing_errors`` counts the violations sent.

Real-time bars (50 -> 50, cancel 51): 5-second bars cut from the simulated 1-minute bars (12 per
minute, aggregating back to exactly the historical bar), starting at ``rt_start`` and advancing
5 s of market time every ``rt_interval_s`` of wall time, also while a client is disconnected (so a
drop leaves a gap the client must backfill). ``drop_realtime_after`` drops the connection after that
many real-time bars (once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resources.sim_market import simulate_day

SERVER_VERSION = 176


@dataclass
class TwsRequest:
    msg_id: int
    fields: list[str]
    at: float


@dataclass
class FakeTws:
    known_symbols: set[str] = field(default_factory=lambda: {"AAPL", "MSFT", "NVDA", "SPY"})
    seed: int = 7
    script: list[str] = field(default_factory=list)
    no_data_days: set[tuple[str, dt.date]] = field(default_factory=set)
    depth_script: list[tuple] = field(default_factory=list)  # (position, operation, side, price, size)
    drop_depth_after: int | None = None
    drop_once: bool = False  # after the drop, the next subscription gets the whole script
    depth_events: list[tuple] = field(default_factory=list)  # once, after a subscription's script: ("error", code, message) / ("pause", s)
    realtime_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # symbol -> (code, message) answered to its reqRealTimeBars
    depth_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # symbol -> (code, message) answered to its reqMktDepth (no permission: 354)
    requests: list[TwsRequest] = field(default_factory=list)
    latency_s: float = 0.0
    latency_per_day_s: float = 0.0
    simulate_limits: bool = False
    time_scale: float = 1.0
    soft_max_open: int | None = None
    soft_rate: tuple[int, float] | None = None
    fast_bars: bool = False  # a cheap random walk instead of the market simulator (benchmarks)
    bars_per_day: int = 390  # fast bars: the first N minutes of the session only (thin answers for benchmarks)
    rt_start: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2024-12-02 14:30", tz="UTC"))
    rt_interval_s: float = 0.005
    drop_realtime_after: int | None = None

    def __post_init__(self):
        self.open_historical = self.peak_open_historical = self.pacing_errors = 0
        self.realtime_sent = 0
        self.depth_event_times: list[pd.Timestamp] = []
        self._recent: deque = deque()               # (arrival, symbol, key) of historical requests
        self._rt_origin = time.monotonic()
        self._rt_tasks: dict[str, asyncio.Task] = {}
        self.loop = asyncio.new_event_loop()
        self._writers: list[asyncio.StreamWriter] = []
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.port = self.server.sockets[0].getsockname()[1]

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _frame(*fields) -> bytes:
        payload = b"".join(str(f).encode() + b"\0" for f in fields)
        return struct.pack(">I", len(payload)) + payload

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._writers.append(writer)
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            size = struct.unpack(">I", await reader.readexactly(4))[0]
            await reader.readexactly(size)  # "v157..178"
            writer.write(self._frame(SERVER_VERSION, time.strftime("%Y%m%d %H:%M:%S UTC")))
            await writer.drain()
            while True:
                size = struct.unpack(">I", await reader.readexactly(4))[0]
                fields = (await reader.readexactly(size)).decode().split("\0")[:-1]
                request = TwsRequest(int(fields[0]), fields, time.monotonic())
                self.requests.append(request)
                if await self._answer(request, writer) is False:
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, request: TwsRequest, writer) -> bool | None:
        f = request.fields
        if request.msg_id == 71:  # START_API
            writer.write(self._frame(15, 1, "DU1234567"))
            writer.write(self._frame(9, 1, 1))
        elif request.msg_id == 61:  # reqPositions -> positionEnd
            writer.write(self._frame(62, 1))
        elif request.msg_id == 6:  # reqAccountUpdates: 6, 2, subscribe, account -> accountDownloadEnd
            writer.write(self._frame(54, 1, f[3] if len(f) > 3 else ""))
        elif request.msg_id == 76:  # reqAccountUpdatesMulti: 76, 1, reqId, ... -> accountUpdateMultiEnd
            writer.write(self._frame(74, 1, f[2]))
        elif request.msg_id == 7:  # reqExecutions: 7, 3, reqId, ... -> execDetailsEnd
            writer.write(self._frame(55, 1, f[2]))
        elif request.msg_id == 9:  # reqContractDetails: 9, 8, reqId, conId, symbol, secType, ...
            req_id, symbol = f[2], f[4]
            if symbol not in self.known_symbols:
                writer.write(self._frame(4, 2, req_id, 200, "No security definition has been found for the request", ""))
            else:
                writer.write(self._frame(*self._contract_details(req_id, symbol)))
                writer.write(self._frame(52, 1, req_id))
        elif request.msg_id == 20:  # reqHistoricalData: 20, reqId, 12 contract fields, includeExpired, end, barSize, duration, useRTH, whatToShow, ...
            return await self._historical(request, writer)
        elif request.msg_id == 10:  # reqMktDepth: 10, 5, reqId, conId, symbol, ...
            if f[4] in self.depth_errors:
                code, message = self.depth_errors[f[4]]
                writer.write(self._frame(4, 2, f[2], code, message, ""))
                return None
            return await self._depth(f[2], writer)
        elif request.msg_id == 50:  # reqRealTimeBars: 50, 3, reqId, 12 contract fields, barSize, whatToShow, useRTH, options
            if f[4] in self.realtime_errors:
                code, message = self.realtime_errors[f[4]]
                writer.write(self._frame(4, 2, f[2], code, message, ""))
                return None
            self._rt_tasks[f[2]] = asyncio.ensure_future(self._realtime(f[2], f[4], writer))
        elif request.msg_id == 51:  # cancelRealTimeBars: 51, 1, reqId
            task = self._rt_tasks.pop(f[2], None)
            if task:
                task.cancel()
        return None

    @staticmethod
    def _contract_details(req_id: str, symbol: str) -> list:
        con_id = 100_000 + sum(map(ord, symbol))
        return [
            10, req_id, symbol, "STK", "", "0", "", "SMART", "USD", symbol, "NMS", symbol, con_id, "0.01",
            "", "LMT,MKT", "SMART,NASDAQ,NYSE", "1", "0", f"{symbol} INC", "NASDAQ", "", "", "", "", "US/Eastern", "", "", "", "",
            "0", "", "", "", "26", "", "COMMON", "1", "1", "1",
        ]

    async def _historical(self, request: TwsRequest, writer) -> bool | None:
        f = request.fields
        req_id, symbol = f[1], f[3]
        end, bar_size, duration, what = f[15], f[16], f[17], f[19]
        if self.script:
            failure = self.script.pop(0)
            if failure == "pacing":
                return self._pacing(writer, req_id, "Historical Market Data Service error message:API historical data query cancelled: pacing violation")
            if failure == "pacing366":
                writer.write(self._frame(4, 2, req_id, 366, "No historical data query found for ticker id", ""))
                return None
            if failure == "drop":
                return False
            if failure == "silent":
                return None
        violation = self._violation(request.at, symbol, (symbol, what, end, duration, bar_size), bar_size)
        if violation:
            return self._pacing(writer, req_id, violation)
        frame = self._bars(symbol, end, duration)
        days = len({d for d in pd.DatetimeIndex(frame["ts"]).tz_convert("America/New_York").date}) if len(frame) else 1
        delay = self.latency_s + self.latency_per_day_s * days
        if delay <= 0:
            self._answer_bars(writer, req_id, frame)
            return None
        self.open_historical += 1
        self.peak_open_historical = max(self.peak_open_historical, self.open_historical)

        async def later():
            try:
                await asyncio.sleep(delay)
                self._answer_bars(writer, req_id, frame)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass
            finally:
                self.open_historical -= 1

        asyncio.ensure_future(later())
        return None

    def _pacing(self, writer, req_id: str, message: str) -> None:
        self.pacing_errors += 1
        writer.write(self._frame(4, 2, req_id, 162, message, ""))
        return None

    def _violation(self, now: float, symbol: str, key: tuple, bar_size: str) -> str | None:
        """The pacing rule this request breaks (IB's documented limits), or None."""
        if not self.simulate_limits:
            return None
        scale = self.time_scale
        recent = self._recent
        while recent and recent[0][0] <= now - 600 / scale:
            recent.popleft()
        message = None
        small = bar_size.endswith("secs")
        if self.open_historical >= 50:
            message = "Historical Market Data Service error message:API historical data query cancelled: pacing violation (more than 50 open requests)"
        elif small and any(k == key and now - t < 15 / scale for t, _, k in recent):
            message = "Historical Market Data Service error message:API historical data query cancelled: pacing violation (identical request within 15 s)"
        elif small and sum(1 for t, s, _ in recent if s == symbol and now - t < 2 / scale) >= 6:
            message = "Historical Market Data Service error message:API historical data query cancelled: pacing violation (6 requests for one contract within 2 s)"
        elif small and len(recent) >= 60:
            message = "Historical Market Data Service error message:API historical data query cancelled: pacing violation (more than 60 requests in 10 minutes)"
        elif not small and self.soft_max_open is not None and self.open_historical >= self.soft_max_open:
            message = "Historical Market Data Service error message:max rate of historical requests exceeded (pacing violation)"
        elif not small and self.soft_rate is not None and sum(1 for t, _, _ in recent if now - t < self.soft_rate[1] / scale) >= self.soft_rate[0]:
            message = "Historical Market Data Service error message:max rate of historical requests exceeded (pacing violation)"
        recent.append((now, symbol, key))
        return message

    def _bars(self, symbol: str, end: str, duration: str) -> pd.DataFrame:
        """The simulated 1-min bars a request covers (days: whole New York days; seconds: ``[end - N, end)``)."""
        amount, unit = int(duration.split(" ")[0]), duration.split(" ")[1]
        if not end:
            end_ts = self.rt_now()
        elif "-" in end:
            end_ts = pd.Timestamp(dt.datetime.strptime(end, "%Y%m%d-%H:%M:%S"), tz="UTC")
        else:
            end_ts = pd.Timestamp(end.rsplit(" ", 1)[0], tz="America/New_York") if " " in end else pd.Timestamp(end, tz="America/New_York")
        if unit == "S":
            start_ts = end_ts - pd.Timedelta(seconds=amount)
            first, last = start_ts.tz_convert("America/New_York").date(), end_ts.tz_convert("America/New_York").date()
            wanted = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        else:
            end_day = end_ts.tz_convert("America/New_York").date()
            wanted = [end_day - dt.timedelta(days=i) for i in range(amount)][::-1]
            start_ts = None
        frames = [self.day_bars(symbol, day) for day in wanted if (symbol, day) not in self.no_data_days]
        frames = [f for f in frames if len(f)]
        frame = pd.concat(frames) if frames else pd.DataFrame(columns=["ts"])
        if start_ts is not None and len(frame):
            frame = frame[(frame["ts"] >= start_ts) & (frame["ts"] < end_ts)]
        return frame

    def _answer_bars(self, writer, req_id: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            writer.write(self._frame(4, 2, req_id, 162, "Historical Market Data Service error message:HMDS query returned no data", ""))
            return
        fields = [17, req_id, "", "", len(frame)]
        for ts, o, h, l, c, v, w, n in zip(frame["ts"], frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], frame["vwap"], frame["trade_count"]):
            fields += [int(pd.Timestamp(ts).timestamp()), o, h, l, c, int(v), w, int(n)]
        writer.write(self._frame(*fields))

    def day_bars(self, symbol: str, day: dt.date) -> pd.DataFrame:
        """The 1-minute bars the server serves for (symbol, New York day); empty on a non-trading day."""
        bars = _day_bars(self.seed, symbol, day, self.fast_bars)
        return bars.iloc[: self.bars_per_day] if self.fast_bars else bars

    # ------------------------------------------------------------------ real-time bars
    def rt_now(self) -> pd.Timestamp:
        """Simulated market time: ``rt_start`` + 5 s per ``rt_interval_s`` of wall time."""
        steps = int((time.monotonic() - self._rt_origin) / self.rt_interval_s)
        return self.rt_start + pd.Timedelta(seconds=5 * steps)

    async def _realtime(self, req_id: str, symbol: str, writer) -> None:
        try:
            step = int((self.rt_now() - self.rt_start).total_seconds() // 5)
            while True:
                due = self._rt_origin + (step + 1) * self.rt_interval_s  # bar [t, t+5 s) is complete at t+5 s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                bar_ts = self.rt_start + pd.Timedelta(seconds=5 * step)
                for fields in five_second_bars(self.day_bars(symbol, bar_ts.tz_convert("America/New_York").date()), bar_ts):
                    writer.write(self._frame(50, 3, req_id, *fields))
                    await writer.drain()
                    self.realtime_sent += 1
                    if self.drop_realtime_after is not None and self.realtime_sent >= self.drop_realtime_after:
                        self.drop_realtime_after = None
                        writer.close()
                        return
                step += 1
        except (ConnectionError, asyncio.CancelledError):
            return

    async def _depth(self, req_id: str, writer) -> bool | None:
        for i, (position, operation, side, price, size) in enumerate(self.depth_script):
            if self.drop_depth_after is not None and i == self.drop_depth_after:
                await writer.drain()
                self.drop_depth_after = None if self.drop_once else self.drop_depth_after
                return False
            writer.write(self._frame(12, 1, req_id, position, operation, side, price, size))
            await writer.drain()
            await asyncio.sleep(0.01)
        await self._depth_events(writer)
        return None

    async def _depth_events(self, writer) -> None:
        """Play ``depth_events`` once (IB's connectivity errors come with id -1; the socket stays up);
        ``depth_event_times`` gets the UTC time each was sent."""
        events, self.depth_events = self.depth_events, []
        for kind, *args in events:
            if kind == "pause":
                await asyncio.sleep(args[0])
                continue
            writer.write(self._frame(4, 2, -1, args[0], args[1], ""))
            await writer.drain()
            self.depth_event_times.append(pd.Timestamp.now(tz="UTC"))

    def realtime_requests(self) -> list[TwsRequest]:
        return [r for r in self.requests if r.msg_id == 50]

    def historical_requests(self) -> list[TwsRequest]:
        return [r for r in self.requests if r.msg_id == 20]

    def close(self) -> None:
        async def stop():
            self.server.close()
            for writer in self._writers:
                writer.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@functools.lru_cache(maxsize=4096)
def _day_bars(seed: int, symbol: str, day: dt.date, fast: bool) -> pd.DataFrame:
    if day.weekday() >= 5:
        return pd.DataFrame(columns=["ts"])
    if fast:
        return _fast_day(seed, symbol, day)
    try:
        frame = simulate_day(seed, symbol, day).bars.drop_duplicates("ts")
    except ValueError:  # not a trading session
        return pd.DataFrame(columns=["ts"])
    return frame[(frame[["open", "high", "low", "close"]] > 0).all(axis=1) & (frame["high"] >= frame["low"])].reset_index(drop=True)


def _fast_day(seed: int, symbol: str, day: dt.date) -> pd.DataFrame:
    """390 cheap, valid 1-minute bars (a seeded random walk) for benchmarks."""
    rng = np.random.default_rng([seed, sum(map(ord, symbol)), day.toordinal()])
    start = pd.Timestamp(day, tz="America/New_York") + pd.Timedelta(hours=9, minutes=30)
    close = np.round(100 + np.cumsum(rng.normal(0, 0.05, 390)), 2)
    open_ = np.round(np.r_[close[0], close[:-1]], 2)
    high, low = np.maximum(open_, close) + 0.01, np.minimum(open_, close) - 0.01
    volume = rng.integers(100, 10_000, 390)
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=390, freq="1min").tz_convert("UTC"), "open": open_, "high": np.round(high, 2), "low": np.round(low, 2),
        "close": close, "volume": volume, "vwap": np.round((high + low + close) / 3, 4), "trade_count": volume // 100 + 1,
    })


def five_second_bars(day: pd.DataFrame, bar_ts: pd.Timestamp) -> list[tuple]:
    """The real-time bar starting at ``bar_ts`` as message fields (time, o, h, l, c, volume, wap, count):
    each 1-minute bar cut into 12 five-second bars that aggregate back to exactly that bar."""
    if not len(day):
        return []
    minute = bar_ts.floor("1min")
    rows = day[day["ts"] == minute]
    if not len(rows):
        return []
    o, h, l, c, v, w, n = (rows.iloc[0][k] for k in ("open", "high", "low", "close", "volume", "vwap", "trade_count"))
    k = int((bar_ts - minute).total_seconds() // 5)
    path = [o + (c - o) * i / 12 for i in range(13)]
    path[12] = c
    first, last = path[k], path[k + 1]
    high = h if k == 3 else max(first, last)
    low = l if k == 7 else min(first, last)
    volumes = [int(v) // 12 + (1 if i < int(v) % 12 else 0) for i in range(12)]
    counts = [int(n) // 12 + (1 if i < int(n) % 12 else 0) for i in range(12)]
    return [(int(bar_ts.timestamp()), first, high, low, last, volumes[k], w, counts[k])]
