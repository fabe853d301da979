"""Seed 001 section 3.3.1: ``RawStore``, append-only raw TWS bars.

    store = RawStore()
    store.write_tws_bars(events, batch_id="ib-2024-12-02-a", ingestion_ts=datetime.now(timezone.utc))
    bars = store.read_tws_bars(["AAPL"], start, end)       # [start, end) UTC

Events (``BarEvent``: ts, OHLCV, ``contract_id`` = the symbol) are grouped by symbol and New York
trading date into one batch each under ``lake/raw_bars/source=ib/symbol=S/date=D/`` (the platform's
raw layout, partitioned by date and symbol), with the caller's ``batch_id``; the primary key
(source, symbol, ts, batch_id) is enforced: a repeated ts goes to ``quarantine/raw_bars``. A batch
id already stored is not written again. Reads return the newest batch of each (symbol, date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa

from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.ingestion.raw_batch_store import store_raw_batch
from platform_assets.ingestion.raw_batches import raw_batch_table
from resources.lake import raw_bars_table
from platform_api.inputs import parse_time_range
from resources.schemas import RAW_BARS_SCHEMA
from resources.validation import InvalidInputError, normalize_symbol, normalize_symbols
from src.storage.lake_store import LakeStore

TWS_SOURCE = "ib"


class RawStore(LakeStore):
    """Append-only raw bars of the TWS source (``raw_bars/source=ib``)."""

    def __init__(self, base_path: str | None = None, source: str = TWS_SOURCE):
        super().__init__(base_path)
        self.source, self.table = source, raw_bars_table(source)

    def write_tws_bars(self, events: Iterable, batch_id: str, ingestion_ts: dt.datetime, *, symbol_of: dict[str, str] | None = None) -> None:
        """Store ``events`` as one batch per (symbol, trading date), ``batch_id`` on every row.
        ``symbol_of`` (extra) maps an event's ``contract_id`` to its symbol when the id is IB's
        numeric contract id (``TwsClient.request_historical_bars`` stamps ``conId``)."""
        if not isinstance(batch_id, str) or not batch_id or any(c in batch_id for c in "/\\ \n"):
            raise InvalidInputError(f"batch_id must be a non-empty string without separators, got {batch_id!r}")
        stamp = pd.Timestamp(ingestion_ts)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        symbol_of = symbol_of or {}
        rows = [{"symbol": symbol_of.get(str(e.contract_id), str(e.contract_id)), "ts": e.ts, "open": e.open, "high": e.high, "low": e.low, "close": e.close,
                 "volume": e.volume, "vwap": float("nan"), "trade_count": 0} for e in events]
        if not rows:
            return
        frame = pd.DataFrame(rows)
        numeric = sorted({s for s in frame["symbol"] if s.isdigit()})
        if numeric:
            raise InvalidInputError(f"contract ids {', '.join(numeric[:5])} are IB contract ids: pass symbol_of={{contract_id: symbol}}")
        self.write_bars(frame, batch_id, stamp)

    def write_bars(self, frame: pd.DataFrame, batch_id: str, ingestion_ts: dt.datetime) -> None:
        """Extra: bars as a frame (``symbol``, ``ts``, OHLCV; ``vwap`` / ``trade_count`` optional)
        stored like ``write_tws_bars`` stores events: one batch per (symbol, trading date), the
        primary key enforced. The file and DB ingestors write through it."""
        if not isinstance(batch_id, str) or not batch_id or any(c in batch_id for c in "/\\ \n"):
            raise InvalidInputError(f"batch_id must be a non-empty string without separators, got {batch_id!r}")
        stamp = pd.Timestamp(ingestion_ts)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        if frame.empty:
            return
        frame = frame.copy()
        if "vwap" not in frame:
            frame["vwap"] = float("nan")
        if "trade_count" not in frame:
            frame["trade_count"] = 0
        frame = frame[["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]]
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame["symbol"] = [normalize_symbol(symbol) for symbol in frame["symbol"]]
        frame["day"] = frame["ts"].dt.tz_convert(STOCKS.timezone).dt.date
        for (symbol, day), bars in frame.groupby(["symbol", "day"], sort=True):
            bars = bars.drop(columns=["symbol", "day"]).sort_values("ts", kind="stable").reset_index(drop=True)
            _, batch, repeated = raw_batch_table(bars, source=self.source, symbol=symbol, day=day, ingestion_ts=stamp)
            batch = batch.set_column(batch.schema.get_field_index("batch_id"), "batch_id", pa.array([batch_id] * batch.num_rows, pa.string()))
            if repeated.num_rows:
                repeated = repeated.set_column(repeated.schema.get_field_index("batch_id"), "batch_id",
                                               pa.array([batch_id] * repeated.num_rows, pa.string()))
            store_raw_batch(self.lake, self.table, symbol, day, batch, batch_id, repeated, stamp)

    def read_tws_bars(self, symbols: list[str], start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        """The newest batch of each (symbol, trading date) with bars in ``[start, end)`` (UTC)."""
        first, last = parse_time_range(start, end)
        days = sessions_in_range(STOCKS, first.tz_convert(STOCKS.timezone).date(), last.tz_convert(STOCKS.timezone).date())
        frames = []
        for symbol in normalize_symbols(symbols):
            found, corrupt = self.lake.read_latest_batches(self.table, symbol, days)
            if corrupt:
                raise next(iter(corrupt.values()))
            frames += [found[day].to_pandas() for day in sorted(found)]
        if not frames:
            return RAW_BARS_SCHEMA.empty_table().to_pandas()
        bars = pd.concat(frames, ignore_index=True)
        return bars[(bars["ts"] >= first) & (bars["ts"] < last)].sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)

