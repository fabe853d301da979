"""Interactive Brokers (TWS / IB Gateway) as a source adapter over the ``IBSource`` resource.

    with InteractiveBrokersAdapter({"host": "127.0.0.1", "port": 4002, "client_id": 17}) as ib:
        for bar in ib.fetch_historical_data({"symbols": ["AAPL"], "start_date": "2024-12-02T00:00:00Z",
                                             "end_date": "2024-12-04T00:00:00Z", "bar_size": "1 min"}):
            print(bar.symbol, bar.ts_event, bar.close)

Config: any ``IBSource`` field (host, port, client_id, exchange, currency, pacing limits...) plus
``retry_policy`` ``{max_retries, base_delay, max_delay}``. The paging, pacing and reconnects are
``IBSource.fetch_bars``'s (this adapter only calls it). ``connect()`` opens and closes a session
to check the gateway answers (``ConnectionError`` otherwise); each fetch opens its own session.
job_config: symbols, start_date, end_date (``[start, end)``, the XNYS sessions in it are
requested), bar_size ("1 min"), what_to_show ("TRADES"), use_rth (true). Records are
``BarRecord`` (symbol, ts_event, open, high, low, close, volume, vwap, trade_count). A symbol IB
does not know is logged and listed in ``errors``; if every symbol fails the fetch raises
``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from platform_assets.calendars import STOCKS, sessions_in_range
from resources.adapters.base_adapter import BaseAdapter
from resources.adapters.ranges import NY, isoformat_z, parse_instant
from resources.adapters.records import BarRecord
from resources.ib_source import IBSource

RETRY_FIELDS = {"max_retries": "max_retries", "base_delay": "base_delay_s", "max_delay": "max_delay_s"}


class InteractiveBrokersAdapter(BaseAdapter):
    """Historical bars from TWS / IB Gateway through ``IBSource``."""

    provider = "interactive_brokers"

    def __init__(self, config: dict[str, Any] | None = None, source: IBSource | None = None):
        self._given = source
        self.errors: dict[str, str] = {}
        super().__init__(config)

    @classmethod
    def from_resource(cls, resource: IBSource) -> "InteractiveBrokersAdapter":
        return cls({}, source=resource)

    def validate_config(self) -> bool:
        values = {k: v for k, v in self.config.items() if k != "retry_policy"}
        policy = self.config.get("retry_policy") or {}
        if not isinstance(policy, dict) or set(policy) - set(RETRY_FIELDS):
            raise ValueError(f"invalid InteractiveBrokersAdapter config: retry_policy takes {', '.join(RETRY_FIELDS)}")
        values.update({RETRY_FIELDS[k]: v for k, v in policy.items()})
        unknown = set(values) - set(IBSource.model_fields)
        if unknown:
            raise ValueError(f"invalid InteractiveBrokersAdapter config: unknown keys {', '.join(sorted(unknown))}")
        try:
            self.source = self._given.model_copy(update=values) if self._given else IBSource(**values)
        except (ValidationError, TypeError, ValueError) as error:
            raise ValueError(f"invalid InteractiveBrokersAdapter config: {error}") from None
        return True

    def connect(self) -> None:
        async def probe():
            async with self.source.session():
                pass

        asyncio.run(probe())
        self._connected = True
        self.log_event(logging.INFO, "Connected to TWS / IB Gateway", host=self.source.host, port=self.source.port)

    def fetch_historical_data(self, job_config: dict[str, Any]) -> Iterator[BaseModel]:
        if not isinstance(job_config, dict):
            raise ValueError(f"job_config must be a dict, got {type(job_config).__name__}")
        symbols = job_config.get("symbols")
        if isinstance(symbols, str):
            symbols = symbols.split(",")
        if not symbols or not all(isinstance(s, str) and s.strip() for s in symbols):
            raise ValueError("job_config symbols must be a non-empty list of symbols")
        symbols = [s.strip() for s in symbols]
        start, end = parse_instant(job_config.get("start_date"), "start_date"), parse_instant(job_config.get("end_date"), "end_date")
        if end <= start:
            raise ValueError(f"end_date {isoformat_z(end)} must be after start_date {isoformat_z(start)}")
        days = session_days(start, end)
        fields = {"symbols": symbols, "start_date": isoformat_z(start), "end_date": isoformat_z(end), "sessions": len(days)}
        self.log_event(logging.INFO, "Fetching bars from Interactive Brokers", **fields)
        if not days:
            return
        with self.metrics.timed():
            result = self.source.fetch_bars(
                symbols, days, bar_size=job_config.get("bar_size", "1 min"), what_to_show=job_config.get("what_to_show", "TRADES"),
                use_rth=bool(job_config.get("use_rth", True)),
            )
        self.metrics.api_calls_made += getattr(result, "requests", 0)
        self.metrics.retry_attempts += getattr(result, "pacing_retries", 0) + getattr(result, "reconnects", 0)
        self.errors = dict(result.errors)
        for symbol, error in self.errors.items():
            self.log_event(logging.ERROR, "Interactive Brokers symbol failed", symbol=symbol, error=error)
        if self.errors and len(self.errors) == len(symbols):
            raise RuntimeError(f"Interactive Brokers returned nothing: every symbol failed ({'; '.join(self.errors.values())[:500]})")
        for (symbol, _day), frame in sorted(result.bars.items()):
            frame = frame[(frame["ts"] >= start) & (frame["ts"] < end)]
            self.metrics.records_fetched += len(frame)
            for row in frame.to_dict("records"):
                try:
                    yield BarRecord(symbol=symbol, ts_event=row["ts"].to_pydatetime(), open=row["open"], high=row["high"], low=row["low"],
                                    close=row["close"], volume=int(row["volume"]), vwap=row.get("vwap"), trade_count=row.get("trade_count"))
                except ValidationError as error:
                    self.metrics.validation_errors += 1
                    self.log_event(logging.WARNING, "IB bar failed validation", symbol=symbol, error=str(error.errors()[0]["msg"]))

    def bars_job_config(self, symbols, start, end, options=None) -> dict:
        return {"symbols": list(symbols), "start_date": isoformat_z(start), "end_date": isoformat_z(end), "bar_size": "1 min", **(options or {})}

    def run_metadata(self) -> dict[str, Any]:
        return {"failed_symbols": ", ".join(f"{s}: {e}" for s, e in self.errors.items()) or "none"}


def session_days(start: pd.Timestamp, end: pd.Timestamp) -> list[dt.date]:
    """XNYS sessions whose New York date falls in [start, end)."""
    return sessions_in_range(STOCKS, start.tz_convert(NY).date(), (end - pd.Timedelta(1)).tz_convert(NY).date())
