"""Real DBN streams for the local gateway, encoded with ``databento_dbn``'s own record types.

``SimVendor`` plays a Databento dataset backed by the offline simulator: for a ``get_range``
request it encodes the simulated sessions' bars (ohlcv-1m), book snapshots (mbp-10), trades and
tbbo between start and end, and each session's statistics (opening price, session
high/low, close price, cleared volume) for the sessions whose date starts in the range, with symbology mapping each symbol to a stable instrument id.
``corrupt`` injects malformed vendor bars (high < low, zero price) at given (symbol, minute);
``mixed_in`` mixes another instrument's mbp-10 records into a symbol's stream (not in its symbology).
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import pandas as pd

from platform_assets.calendars import STOCKS, sessions_in_range
from resources.sim_market import simulate_day

SCHEMAS = {
    "ohlcv-1d": dbn.Schema.OHLCV_1D, "ohlcv-1m": dbn.Schema.OHLCV_1M, "mbp-10": dbn.Schema.MBP_10, "trades": dbn.Schema.TRADES, "tbbo": dbn.Schema.TBBO,
    "statistics": dbn.Schema.STATISTICS,
}
# the statistics a session publishes, from its bars: (stat type, value from the bars, is a price)
SESSION_STATS = (
    (dbn.StatType.OPENING_PRICE, lambda bars: bars["open"].iloc[0], True),
    (dbn.StatType.TRADING_SESSION_HIGH_PRICE, lambda bars: bars["high"].max(), True),
    (dbn.StatType.TRADING_SESSION_LOW_PRICE, lambda bars: bars["low"].min(), True),
    (dbn.StatType.CLOSE_PRICE, lambda bars: bars["close"].iloc[-1], True),
    (dbn.StatType.CLEARED_VOLUME, lambda bars: bars["volume"].sum(), False),
)


_simulated = functools.lru_cache(maxsize=1024)(simulate_day)  # a gateway serves the same days again and again


def instrument_id(symbol: str) -> int:
    return 1000 + zlib.crc32(symbol.encode()) % 900_000


def _fixed(price: float) -> int:
    return int(round(price * 1e9))


def metadata(dataset: str, schema: str, start: pd.Timestamp, end: pd.Timestamp, symbols: list[str]) -> bytes:
    mappings = [
        SimpleNamespace(raw_symbol=s, intervals=[SimpleNamespace(start_date=start.date(), end_date=(end + pd.Timedelta(days=1)).date(), symbol=str(instrument_id(s)))])
        for s in symbols
    ]
    return bytes(
        dbn.Metadata(
            dataset=dataset, start=start.value, end=end.value, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
            schema=SCHEMAS[schema], symbols=list(symbols), mappings=mappings,
        )
    )


def ohlcv_bytes(symbol: str, bars: pd.DataFrame, rtype=dbn.RType.OHLCV_1M) -> bytes:
    iid = instrument_id(symbol)
    out = bytearray()
    for ts, o, h, l, c, v in zip(bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"]):
        out += bytes(dbn.OHLCVMsg(rtype=rtype, publisher_id=2, instrument_id=iid, ts_event=pd.Timestamp(ts).value,
                                  open=_fixed(o), high=_fixed(h), low=_fixed(l), close=_fixed(c), volume=int(v)))
    return bytes(out)


def mbp10_bytes(symbol: str, book, start: pd.Timestamp, end: pd.Timestamp) -> bytes:
    iid = instrument_id(symbol)
    out = bytearray()
    for row, ts in enumerate(book.timestamp.astype("datetime64[ns]").astype(np.int64)):
        if not start.value <= ts < end.value:
            continue
        levels = []
        for level in range(10):
            bp, ap = book.bid_prices[row, level], book.ask_prices[row, level]
            levels.append(dbn.BidAskPair(
                bid_px=_fixed(bp) if bp > 0 else dbn.UNDEF_PRICE, ask_px=_fixed(ap) if ap > 0 else dbn.UNDEF_PRICE,
                bid_sz=int(book.bid_sizes[row, level]) if bp > 0 else 0, ask_sz=int(book.ask_sizes[row, level]) if ap > 0 else 0,
            ))
        out += bytes(dbn.MBP10Msg(publisher_id=2, instrument_id=iid, ts_event=int(ts), price=levels[0].bid_px, size=1, action=dbn.Action.MODIFY,
                                  side=dbn.Side.BID, depth=0, ts_recv=int(ts), levels=levels))
    return bytes(out)


def trade_bytes(symbol: str, bars: pd.DataFrame, schema: str) -> bytes:
    """One trade per bar at its close (tbbo adds the quote just before it)."""
    iid = instrument_id(symbol)
    out = bytearray()
    for i, (ts, c, v) in enumerate(zip(bars["ts"], bars["close"], bars["volume"])):
        stamp = pd.Timestamp(ts).value + 59 * 10**9
        common = dict(publisher_id=2, instrument_id=iid, ts_event=stamp, price=_fixed(c), size=max(int(v) // 10, 1),
                      action=dbn.Action.TRADE, side=dbn.Side.ASK, depth=0, ts_recv=stamp + 1000, sequence=i)
        if schema == "trades":
            out += bytes(dbn.TradeMsg(**common))
        else:
            quote = [dbn.BidAskPair(bid_px=_fixed(c - 0.01), ask_px=_fixed(c + 0.01), bid_sz=100, ask_sz=120)]
            out += bytes(dbn.MBP1Msg(**common, levels=quote[0]))
    return bytes(out)


def statistics_bytes(symbol: str, bars: pd.DataFrame, day: dt.date) -> bytes:
    """A session's statistics: opening price at the first bar, high/low/close/cleared volume at
    the last bar's end (``ts_ref`` = the session date)."""
    if bars.empty:
        return b""
    iid = instrument_id(symbol)
    first, last = pd.Timestamp(bars["ts"].iloc[0]).value, pd.Timestamp(bars["ts"].iloc[-1]).value + 60 * 10**9
    session = pd.Timestamp(day, tz="UTC").value
    out = bytearray()
    for sequence, (kind, value, is_price) in enumerate(SESSION_STATS):
        stamp = first if kind == dbn.StatType.OPENING_PRICE else last
        out += bytes(dbn.StatMsg(
            publisher_id=2, instrument_id=iid, ts_event=stamp, ts_recv=stamp + 1000, ts_ref=session,
            price=_fixed(value(bars)) if is_price else dbn.UNDEF_PRICE, quantity=dbn.UNDEF_STAT_QUANTITY if is_price else int(value(bars)),
            stat_type=kind, sequence=sequence, update_action=dbn.StatUpdateAction.NEW,
        ))
    return bytes(out)


@dataclass
class SimVendor:
    """A Databento-like dataset serving the offline simulator's data."""

    dataset: str = "XNAS.ITCH"
    seed: int = 7
    corrupt: dict[tuple[str, str], str] = field(default_factory=dict)  # (symbol, "2024-12-02T15:00Z") -> high_below_low|zero_price
    empty_days: set[tuple[str, dt.date]] = field(default_factory=set)
    unknown_symbols: set[str] = field(default_factory=set)  # answered 422 like an unresolvable symbol
    delays: dict[str, float] = field(default_factory=dict)  # seconds to stall before answering, per symbol
    mixed_in: dict[str, str] = field(default_factory=dict)  # symbol -> symbol whose mbp-10 records its stream also carries

    def bars(self, symbol: str, day: dt.date) -> pd.DataFrame:
        bars = _simulated(self.seed, symbol, day).bars.drop_duplicates("ts").reset_index(drop=True)
        valid = (bars[["open", "high", "low", "close"]] > 0).all(axis=1) & (bars["high"] >= bars["low"])
        bars = bars[valid].reset_index(drop=True)  # the vendor's clean feed; faults come from `corrupt`
        for (sym, stamp), kind in self.corrupt.items():
            if sym != symbol:
                continue
            hit = bars["ts"] == pd.Timestamp(stamp)
            if kind == "high_below_low":
                bars.loc[hit, ["high", "low"]] = bars.loc[hit, ["low", "high"]].to_numpy() + np.array([0.0, 0.5])
            elif kind == "zero_price":
                bars.loc[hit, "close"] = 0.0
        return bars

    def __call__(self, request) -> bytes:
        form = request.form
        schema = form["schema"]
        start, end = pd.Timestamp(form["start"]), pd.Timestamp(form["end"])
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        symbols = [s for s in form["symbols"].split(",") if s]
        if unknown := sorted(set(symbols) & self.unknown_symbols):
            from databento_gateway import GatewayError

            raise GatewayError(422, f"Could not resolve symbols: {', '.join(unknown)}")
        import time

        time.sleep(max([self.delays.get(s, 0.0) for s in symbols] + [0.0]))
        body = bytearray(metadata(form.get("dataset", self.dataset), schema, start, end, symbols))
        days = sessions_in_range(STOCKS, (start - pd.Timedelta(days=1)).date(), end.date())
        served = symbols + [self.mixed_in[s] for s in symbols if s in self.mixed_in and schema == "mbp-10"]
        for symbol in served:
            for day in days:
                if (symbol, day) in self.empty_days:
                    continue
                if schema == "mbp-10":
                    body += mbp10_bytes(symbol, _simulated(self.seed, symbol, day).book, start, end)
                    continue
                bars = self.bars(symbol, day)
                if schema != "ohlcv-1d":
                    bars = bars[(bars["ts"] >= start) & (bars["ts"] < end)]
                if schema == "statistics":
                    stats = statistics_bytes(symbol, self.bars(symbol, day), day)
                    body += stats if start.value <= pd.Timestamp(day, tz="UTC").value < end.value else b""
                    continue
                if schema == "ohlcv-1d":
                    daily = pd.DataFrame({"ts": [pd.Timestamp(day, tz="UTC")], "open": [bars["open"].iloc[0]], "high": [bars["high"].max()],
                                          "low": [bars["low"].min()], "close": [bars["close"].iloc[-1]], "volume": [bars["volume"].sum()]})
                    body += ohlcv_bytes(symbol, daily[(daily["ts"] >= start) & (daily["ts"] < end)], dbn.RType.OHLCV_1D)
                elif schema == "ohlcv-1m":
                    body += ohlcv_bytes(symbol, bars)
                else:
                    body += trade_bytes(symbol, bars, schema)
        return bytes(body)
