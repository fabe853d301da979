"""The offline simulator as a source adapter (no credentials, no network).

Config: ``seed`` (7), ``inject_faults`` (true). job_config: symbols, start_date, end_date
(``[start, end)``). Records are ``BarRecord``; the simulator's injected vendor faults (bad ticks)
fail validation and are counted in ``validation_errors``. The platform's ``raw_bars_sim`` asset
keeps the faults as delivered (its own code); this adapter is the record view of the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from resources.adapters.base_adapter import BaseAdapter
from resources.adapters.interactive_brokers_adapter import session_days
from resources.adapters.ranges import isoformat_z, parse_instant
from resources.adapters.records import BarRecord
from resources.offline_source import OfflineSource


class SimAdapter(BaseAdapter):
    """Deterministic simulated 1-minute bars."""

    provider = "sim"

    def __init__(self, config: dict[str, Any] | None = None, source: OfflineSource | None = None):
        self._given = source
        super().__init__(config)

    @classmethod
    def from_resource(cls, resource: OfflineSource) -> "SimAdapter":
        return cls({}, source=resource)

    def validate_config(self) -> bool:
        unknown = set(self.config) - {"seed", "inject_faults"}
        if unknown:
            raise ValueError(f"invalid SimAdapter config: unknown keys {', '.join(sorted(unknown))}")
        try:
            self.source = self._given.model_copy(update=self.config) if self._given else OfflineSource(**self.config)
        except (ValidationError, TypeError) as error:
            raise ValueError(f"invalid SimAdapter config: {error}") from None
        return True

    def connect(self) -> None:
        self._connected = True

    def fetch_historical_data(self, job_config: dict[str, Any]) -> Iterator[BaseModel]:
        symbols = job_config.get("symbols") if isinstance(job_config, dict) else None
        if not symbols or isinstance(symbols, str):
            raise ValueError("job_config symbols must be a non-empty list of symbols")
        start, end = parse_instant(job_config.get("start_date"), "start_date"), parse_instant(job_config.get("end_date"), "end_date")
        if end <= start:
            raise ValueError(f"end_date {isoformat_z(end)} must be after start_date {isoformat_z(start)}")
        for day in session_days(start, end):
            for symbol in symbols:
                self.metrics.api_calls_made += 1
                bars = self.source.day(symbol, day).bars
                bars = bars[(bars["ts"] >= start) & (bars["ts"] < end)]
                self.metrics.records_fetched += len(bars)
                for row in bars.to_dict("records"):
                    try:
                        yield BarRecord(symbol=symbol, ts_event=row["ts"].to_pydatetime(), open=row["open"], high=row["high"], low=row["low"],
                                        close=row["close"], volume=int(row["volume"]), vwap=row["vwap"], trade_count=int(row["trade_count"]))
                    except ValidationError as error:
                        self.metrics.validation_errors += 1
                        self.log_event(logging.DEBUG, "simulated bar failed validation", symbol=symbol, error=str(error.errors()[0]["msg"]))
