"""A local server speaking the TWS API wire protocol (server version 176) for the real ib_async client.

Framing: every message is a 4-byte big-endian length followed by NUL-terminated fields. The
client opens with ``API\\0`` + its version range; the server answers exactly two fields (version,
time); after START_API it sends managed accounts and the next valid id. Implemented requests:
positions (answered with its end marker, as connect waits for it), contract details (9 -> 10/52,
or error 200 for an unknown symbol), historical data (20 -> 17, bars from the offline simulator),
market depth (10 -> 12 updates from a script), and errors (4) for pacing (162 / 366) and no data
(162 "HMDS query returned no data"). ``script`` queues failures for the next historical requests
(``pacing``, ``pacing366``, ``drop``); ``no_data_days`` answer no data; every request is recorded
with its arrival time in ``requests``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
import threading
import time
from dataclasses import dataclass, field

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
    requests: list[TwsRequest] = field(default_factory=list)

    def __post_init__(self):
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
        elif request.msg_id == 10:  # reqMktDepth: 10, 5, reqId, ...
            return await self._depth(f[2], writer)
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
        end, bar_size, duration, use_rth = f[15], f[16], f[17], f[18]
        if self.script:
            failure = self.script.pop(0)
            if failure == "pacing":
                writer.write(self._frame(4, 2, req_id, 162, "Historical Market Data Service error message:API historical data query cancelled: pacing violation", ""))
                return None
            if failure == "pacing366":
                writer.write(self._frame(4, 2, req_id, 366, "No historical data query found for ticker id", ""))
                return None
            if failure == "drop":
                return False
        end_day = dt.datetime.strptime(end.split(" ")[0], "%Y%m%d").date()
        days = int(duration.split(" ")[0])
        wanted = [end_day - dt.timedelta(days=i) for i in range(days)][::-1]
        bars = []
        for day in wanted:
            if day.weekday() >= 5 or (symbol, day) in self.no_data_days:
                continue
            frame = simulate_day(self.seed, symbol, day).bars.drop_duplicates("ts")
            frame = frame[(frame[["open", "high", "low", "close"]] > 0).all(axis=1) & (frame["high"] >= frame["low"])]
            bars.append(frame)
        frame = pd.concat(bars) if bars else pd.DataFrame()
        if frame.empty:
            writer.write(self._frame(4, 2, req_id, 162, "Historical Market Data Service error message:HMDS query returned no data", ""))
            return None
        fields = [17, req_id, "", "", len(frame)]
        for ts, o, h, l, c, v, w, n in zip(frame["ts"], frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], frame["vwap"], frame["trade_count"]):
            fields += [int(pd.Timestamp(ts).timestamp()), o, h, l, c, int(v), w, int(n)]
        writer.write(self._frame(*fields))
        return None

    async def _depth(self, req_id: str, writer) -> bool | None:
        for i, (position, operation, side, price, size) in enumerate(self.depth_script):
            if self.drop_depth_after is not None and i == self.drop_depth_after:
                await writer.drain()
                self.drop_depth_after = None if self.drop_once else self.drop_depth_after
                return False
            writer.write(self._frame(12, 1, req_id, position, operation, side, price, size))
            await writer.drain()
            await asyncio.sleep(0.01)
        return None

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
