"""Platform settings: one validated object read from the environment (keys in DESIGN.md).

Every value is validated when the settings are loaded, so a bad value fails at start-up with a
message that names the environment key (``SettingsError``), not deep inside a run.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
_WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class SettingsError(ValueError):
    """A setting read from the environment is invalid; the message names the key."""


class EtWindow(tuple):
    """An ``HH:MM-HH:MM`` window in America/New_York wall-clock time (DST-aware when applied)."""

    @classmethod
    def parse(cls, text: str) -> "EtWindow":
        match = _WINDOW_RE.match(text.strip())
        if not match:
            raise ValueError(f"expected HH:MM-HH:MM (ET), got {text!r}")
        start = dt.time(int(match.group(1)), int(match.group(2)))
        end = dt.time(int(match.group(3)), int(match.group(4)))
        if end <= start:
            raise ValueError(f"window end {end:%H:%M} is not after start {start:%H:%M}")
        return cls((start, end))

    @property
    def start(self) -> dt.time:
        return self[0]

    @property
    def end(self) -> dt.time:
        return self[1]

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class PlatformSettings(BaseSettings):
    """Environment-driven configuration of the platform.

    Base path resolution: ``DATA_PATH_OVERRIDE`` wins, then ``ML_BASE_PATH``, then ``./data`` in
    the repository.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    data_path_override: Path | None = Field(None, validation_alias=_env("DATA_PATH_OVERRIDE"))
    ml_base_path: Path | None = Field(None, validation_alias=_env("ML_BASE_PATH"))
    ml_backup_path: Path | None = Field(None, validation_alias=_env("ML_BACKUP_PATH"))
    level2_dirname: str = Field("level2", validation_alias=_env("LEVEL2_DIRNAME"))
    symbol_mapping_file: Path | None = Field(None, validation_alias=_env("SYMBOL_MAPPING_FILE"))
    l2_max_workers: Annotated[int, Field(ge=1, le=64)] = Field(4, validation_alias=_env("L2_MAX_WORKERS"))
    l2_backfill_window_et: str = Field("09:30-16:00", validation_alias=_env("L2_BACKFILL_WINDOW_ET"))
    l2_trading_window_et: str = Field("09:30-16:00", validation_alias=_env("L2_TRADING_WINDOW_ET"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    databento_api_key: SecretStr | None = Field(None, validation_alias=_env("DATABENTO_API_KEY"))
    ib_host: str = Field("127.0.0.1", validation_alias=_env("IB_HOST"))
    ib_port: Annotated[int, Field(ge=1, le=65535)] = Field(7497, validation_alias=_env("IB_PORT"))
    ib_client_id: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(1, validation_alias=_env("IB_CLIENT_ID"))
    partitions_start_date: dt.date = Field(dt.date(2021, 1, 4), validation_alias=_env("PARTITIONS_START_DATE"))
    sim_seed: Annotated[int, Field(ge=0)] = Field(7, validation_alias=_env("SIM_SEED"))
    lake_fsync: bool = Field(True, validation_alias=_env("LAKE_FSYNC"))
    databento_dataset: str = Field("XNAS.ITCH", validation_alias=_env("DATABENTO_DATASET"))
    databento_gateway: str | None = Field(None, validation_alias=_env("DATABENTO_GATEWAY"))
    api_host: str = Field("127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, validation_alias=_env("API_PORT"))
    api_token: SecretStr | None = Field(None, validation_alias=_env("PLATFORM_API_TOKEN"))
    api_refresh_rate_limit: Annotated[int, Field(ge=0, le=100_000)] = Field(10, validation_alias=_env("API_REFRESH_RATE_LIMIT"))
    api_refresh_rate_window_s: Annotated[int, Field(ge=1, le=86_400)] = Field(60, validation_alias=_env("API_REFRESH_RATE_WINDOW_SECONDS"))
    api_max_concurrent_refreshes: Annotated[int, Field(ge=1, le=64)] = Field(5, validation_alias=_env("API_MAX_CONCURRENT_REFRESHES"))
    default_universe_file: Path | None = Field(None, validation_alias=_env("DEFAULT_UNIVERSE_FILE"))
    dq_engine: Literal["gx", "vectorised"] = Field("gx", validation_alias=_env("DQ_ENGINE"))
    dq_rules_file: Path | None = Field(None, validation_alias=_env("DQ_RULES_FILE"))
    ingestion_sources: Annotated[list[Literal["sim", "databento", "ib"]], NoDecode] = Field(["sim"], validation_alias=_env("INGESTION_SOURCES"))

    @field_validator("ingestion_sources", mode="before")
    @classmethod
    def _sources(cls, value):
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("level2_dirname")
    @classmethod
    def _plain_dirname(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value) or value in {".", ".."}:
            raise ValueError("must be a plain folder name (letters, digits, _ . -)")
        return value

    @field_validator("l2_backfill_window_et", "l2_trading_window_et")
    @classmethod
    def _window(cls, value: str) -> str:
        return str(EtWindow.parse(value))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.strip().upper()
        if upper not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return upper

    @field_validator("partitions_start_date")
    @classmethod
    def _start(cls, value: dt.date) -> dt.date:
        if not dt.date(1990, 1, 1) <= value <= dt.date.today():
            raise ValueError("must be between 1990-01-01 and today")
        return value

    @property
    def base_path(self) -> Path:
        chosen = self.data_path_override or self.ml_base_path or (REPO_ROOT / "data")
        return Path(chosen).expanduser().resolve()

    @property
    def level2_path(self) -> Path:
        return self.base_path / self.level2_dirname

    @property
    def backfill_window(self) -> EtWindow:
        return EtWindow.parse(self.l2_backfill_window_et)

    @property
    def trading_window(self) -> EtWindow:
        return EtWindow.parse(self.l2_trading_window_et)

    @property
    def log_level_number(self) -> int:
        return getattr(logging, self.log_level)


_FIELD_TO_ENV = {
    name: (field.validation_alias.choices[0] if isinstance(field.validation_alias, AliasChoices) else name)
    for name, field in PlatformSettings.model_fields.items()
}


def load_settings(**overrides) -> PlatformSettings:
    """Read and validate the settings; raise ``SettingsError`` naming the offending env key."""
    try:
        return PlatformSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            key = _FIELD_TO_ENV.get(field, field)
            value = error.get("input")
            shown = "<hidden>" if "KEY" in key.upper() else repr(value)
            problems.append(f"{key}={shown}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None


def settings_env(settings: PlatformSettings) -> dict[str, str]:
    """The settings as environment variables (secrets left out), to hand to a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None or isinstance(value, SecretStr):
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(map(str, value))
        elif isinstance(value, dt.date):
            text = value.isoformat()
        else:
            text = str(value)
        env[_FIELD_TO_ENV[name]] = text
    return env


@functools.lru_cache(maxsize=1)
def get_settings() -> PlatformSettings:
    """Process-wide settings, loaded once."""
    return load_settings()
