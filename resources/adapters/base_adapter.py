"""The interface every ingestion source implements (``BaseAdapter``) and its run counters.

A source adapter connects to one provider and yields validated pydantic records:

    with SomeAdapter(config) as adapter:             # connect() ... disconnect()
        for record in adapter.fetch_historical_data(job_config):
            ...

Bad configuration raises ``ValueError`` (at construction: ``validate_config`` runs there), a
provider that cannot be reached ``ConnectionError``, a fetch that still fails after the retries
``RuntimeError``. ``metrics`` counts what the adapter did (records fetched, API calls, retries,
validation errors, processing time, data volume); the Dagster assets put them in each run's
materialization metadata.

``fetch_bars`` is what the generated raw-bars asset calls (``platform_assets.ingestion.
adapter_assets``): frames of bars for local symbols over ``[start, end)``. The default builds
them from ``fetch_historical_data`` records; an adapter with a faster path (Databento decodes
whole record arrays) overrides it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from resources.adapters.ranges import isoformat_z

BAR_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
FRAME_BATCH_RECORDS = 50_000


@dataclass
class AdapterMetrics:
    """Counters of one adapter's life (``reset()`` starts over)."""

    records_fetched: int = 0
    api_calls_made: int = 0
    retry_attempts: int = 0
    validation_errors: int = 0
    processing_time_ms: float = 0.0
    data_volume_mb: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        out = asdict(self)
        out["processing_time_ms"] = int(round(self.processing_time_ms))
        out["data_volume_mb"] = round(self.data_volume_mb, 6)
        return out

    # read like the ingestion document's ``metrics`` dict: adapter.metrics["records_fetched"], dict(adapter.metrics)
    def __getitem__(self, name: str) -> int | float:
        values = self.as_dict()
        if name not in values:
            raise KeyError(name)
        return values[name]

    def keys(self) -> list[str]:
        return list(self.as_dict())

    def items(self):
        return self.as_dict().items()

    def __contains__(self, name: object) -> bool:
        return name in self.as_dict()

    def reset(self) -> None:
        for name, value in asdict(AdapterMetrics()).items():
            setattr(self, name, value)

    @contextlib.contextmanager
    def timed(self):
        """Adds the time spent inside the block to ``processing_time_ms``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.processing_time_ms += (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class FrameBatch:
    """Rows for local symbols; every row before ``complete_until`` (UTC) has been delivered, so a
    consumer may close the days ending by then (``None``: nothing is known complete yet)."""

    frame: pd.DataFrame
    complete_until: pd.Timestamp | None = None


class BaseAdapter(ABC):
    """Abstract base class for all API data adapters."""

    provider: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any] | None = None):
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"{type(self).__name__} config must be a dict, got {type(config).__name__}")
        self.config: dict[str, Any] = dict(config or {})
        self.metrics = AdapterMetrics()
        self.logger = logging.getLogger(type(self).__name__)
        self._connected = False
        self.validate_config()

    # ------------------------------------------------------------------ the interface
    @abstractmethod
    def connect(self) -> None:
        """Establish connection to the API."""

    @abstractmethod
    def fetch_historical_data(self, job_config: dict[str, Any]) -> Iterator[BaseModel]:
        """Fetch historical data based on job configuration."""

    @abstractmethod
    def validate_config(self) -> bool:
        """Validate the adapter configuration: ``True``, or ``ValueError`` naming the problem."""

    def disconnect(self) -> None:
        """Close connection to the API."""
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.disconnect()
        return False

    # ------------------------------------------------------------------ for the generated assets
    @classmethod
    def from_resource(cls, resource) -> "BaseAdapter":
        """The adapter behind a Dagster resource (the resource's own ``adapter()`` if it has one)."""
        if hasattr(resource, "adapter"):
            return resource.adapter()
        raise ValueError(f"{cls.__name__} cannot be built from a {type(resource).__name__} resource")

    def bars_job_config(self, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp, options: dict | None = None) -> dict:
        """The job_config asking for 1-minute bars of ``symbols`` over [start, end)."""
        return {"symbols": list(symbols), "start_date": isoformat_z(start), "end_date": isoformat_z(end), "schema": "ohlcv-1m", **(options or {})}

    def fetch_bars(self, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp, options: dict | None = None) -> Iterator[FrameBatch]:
        """1-minute bars (``BAR_COLUMNS``) of ``symbols`` over [start, end), in frames.

        Default: ``fetch_historical_data`` records with bar fields, ``FRAME_BATCH_RECORDS`` per frame.
        """
        rows: list[dict] = []
        for record in self.fetch_historical_data(self.bars_job_config(symbols, start, end, options)):
            rows.append(record.model_dump())
            if len(rows) >= FRAME_BATCH_RECORDS:
                yield FrameBatch(records_to_bars(rows))
                rows = []
        if rows:
            yield FrameBatch(records_to_bars(rows))

    def run_metadata(self) -> dict[str, Any]:
        """Extra materialization metadata describing this adapter's runs (e.g. the dataset)."""
        return {}

    def log_event(self, level: int, message: str, **fields) -> None:
        """A structured log line: ``fields`` go to ``extra`` (JSON-able values only, never secrets)."""
        self.logger.log(level, message, extra={"adapter": type(self).__name__, **fields})


def records_to_bars(rows: list[dict]) -> pd.DataFrame:
    """Bar record dicts -> a frame of ``BAR_COLUMNS`` (``ts`` = ``ts_event``; vwap NaN, trade_count
    0 when the source has none)."""
    frame = pd.DataFrame(rows)
    frame["ts"] = pd.to_datetime(frame.pop("ts_event"), utc=True)
    frame["vwap"] = pd.to_numeric(frame["vwap"], errors="coerce") if "vwap" in frame else float("nan")
    frame["trade_count"] = frame["trade_count"].fillna(0).astype("int64") if "trade_count" in frame else 0
    return frame[BAR_COLUMNS]
