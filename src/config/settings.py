"""Seed 001 section 3.1: central configuration objects, loaded from YAML / JSON / the environment
and validated at start-up (pydantic: a bad value fails naming the field).

    from src.config.settings import TwsSourceConfig, TimeSeriesConfig, load_config

    tws = TwsSourceConfig(host="127.0.0.1", port=7497, client_id=1)        # historical_bar_size "1 min", duration "1 D"
    series = TimeSeriesConfig()                                            # 1min, America/New_York, XNYS
    config = load_config("pipeline.yaml")                                  # {sources: {tws: ...}, storage: ..., pipeline: ...}

``TwsSourceConfig.to_resource()`` gives the platform's IB resource (``resources.ib_source.IBSource``)
with the same connection and pacing; ``StorageConfig`` and the environment keys of
``docs/ENVIRONMENT.md`` (``resources.settings``) describe the same paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RateLimitConfig(_Config):
    """IB's historical-data pacing (README "Interactive Brokers" has the rules they follow)."""

    max_requests: int = Field(60, ge=1)  # requests per rolling window
    window_s: float = Field(600.0, gt=0)
    identical_gap_s: float = Field(15.0, ge=0)  # no identical request within this
    per_contract_requests: int = Field(6, ge=1)  # at most this many per contract ...
    per_contract_window_s: float = Field(2.0, gt=0)  # ... within this
    max_parallel_requests: int = Field(2, ge=1)  # open requests at once


class SourceConfig(_Config):
    """A market-data source (``kind``: tws, databento, files, sim)."""

    kind: Literal["tws", "databento", "files", "sim"]


class TwsSourceConfig(SourceConfig):
    """TWS / IB Gateway: connection, historical request shape and pacing."""

    kind: Literal["tws"] = "tws"
    host: str = "127.0.0.1"
    port: int = Field(7497, ge=1, le=65535)
    client_id: int = Field(1, ge=0)
    historical_bar_size: str = "1 min"
    historical_duration: str = "1 D"
    rate_limit_config: RateLimitConfig = Field(default_factory=RateLimitConfig)

    def to_resource(self):
        """The platform's IB resource with this connection and pacing."""
        from resources.ib_source import IBSource

        limits = self.rate_limit_config
        return IBSource(
            host=self.host, port=self.port, client_id=self.client_id, max_parallel_requests=limits.max_parallel_requests,
            pacing_max_requests=limits.max_requests, pacing_window_s=limits.window_s, identical_gap_s=limits.identical_gap_s,
            per_contract_requests=limits.per_contract_requests, per_contract_window_s=limits.per_contract_window_s,
        )


class TimeSeriesConfig(_Config):
    """The canonical time grid: frequency, timezone and trading calendar."""

    canonical_frequency: str = "1min"
    timezone: str = "America/New_York"
    trading_calendar: str = "XNYS"  # exchange_calendars name; "24/7" for crypto

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("canonical_frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        import pandas as pd

        pd.Timedelta(pd.tseries.frequencies.to_offset(value))  # raises for an unknown or non-fixed frequency
        return value


class StorageConfig(_Config):
    """Where data lives (defaults: the platform settings, ``docs/ENVIRONMENT.md``)."""

    base_path: Path | None = None
    level2_dirname: str | None = None
    db_uri: str | None = None  # a DB-backed store (optional; not used by the lake)


class PipelineConfig(_Config):
    """Frequencies, entities and windows of the pipelines."""

    time_series: TimeSeriesConfig = Field(default_factory=TimeSeriesConfig)
    entity_key: str = "symbol"
    symbols: list[str] = Field(default_factory=list)
    feature_windows: list[int] = Field(default_factory=lambda: [5, 20, 60])


class PlatformConfig(_Config):
    """A whole configuration document."""

    sources: dict[str, TwsSourceConfig | SourceConfig] = Field(default_factory=dict)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)


def load_config(path: str | Path | None = None, env_var: str = "PLATFORM_CONFIG_FILE") -> PlatformConfig:
    """Validated configuration from a YAML or JSON file (``path``, else the file the environment
    variable ``env_var`` names, else the defaults). ``ValueError`` names the file and the field."""
    source = path or os.environ.get(env_var)
    if not source:
        return PlatformConfig()
    file = Path(source)
    text = file.read_text()
    data: Any = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    try:
        return PlatformConfig.model_validate(data or {})
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from None
