"""Platform settings: one validated object read from the environment (keys in DESIGN.md).

Every value is validated when the settings are loaded, so a bad value fails at start-up with a
message that names the environment key (``SettingsError``), not deep inside a run. An empty or
blank value (``DATA_PATH_OVERRIDE=""``) counts as unset: it never means "the current folder".

Paths of the TF_1 guide: ``LOGS_PATH`` (default ``{base}/logs``: API job worker logs, L2 batch
logs), ``TEMP_PATH`` (default: the system temp folder; Databento downloads and job workers'
``TMPDIR``), ``CONFIG_PATH`` (default ``{repo}/config``), ``ML_BACKUP_PATH`` (optional mirror of
the manifests and run summaries), ``SYMBOL_MAPPING_FILE`` (default ``config/symbol_mapping.json``,
i.e. ``{CONFIG_PATH}/symbol_mapping.json``; a relative path is looked up under ``CONFIG_PATH``,
then under the repository root).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?")
DEFAULT_CONFIG_DIR = REPO_ROOT / "config"
SYMBOL_MAPPING_DEFAULT = "config/symbol_mapping.json"  # the guide's spelling: {CONFIG_PATH}/symbol_mapping.json
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

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True, env_ignore_empty=True)

    data_path_override: Path | None = Field(None, validation_alias=_env("DATA_PATH_OVERRIDE"))
    ml_base_path: Path | None = Field(None, validation_alias=_env("ML_BASE_PATH"))
    ml_backup_path: Path | None = Field(None, validation_alias=_env("ML_BACKUP_PATH"))
    # the TF_1 guide: `Level2` under ML_BASE_PATH, `level2` under DATA_PATH_OVERRIDE (this repo's ./data)
    level2_dirname: str | None = Field(None, validation_alias=_env("LEVEL2_DIRNAME"))
    symbol_mapping_file: Path | None = Field(None, validation_alias=_env("SYMBOL_MAPPING_FILE"))
    logs_dir: Path | None = Field(None, validation_alias=_env("LOGS_PATH"))
    temp_dir: Path | None = Field(None, validation_alias=_env("TEMP_PATH"))
    config_dir: Path | None = Field(None, validation_alias=_env("CONFIG_PATH"))
    # L2_BACKFILL_CONCURRENCY is the guide's legacy name; L2_MAX_WORKERS wins when both are set
    l2_max_workers: Annotated[int, Field(ge=1, le=64)] = Field(4, validation_alias=_env("L2_MAX_WORKERS", "L2_BACKFILL_CONCURRENCY"))
    l2_backfill_window_et: str = Field("09:30-16:00", validation_alias=_env("L2_BACKFILL_WINDOW_ET"))
    l2_trading_window_et: str = Field("09:30-16:00", validation_alias=_env("L2_TRADING_WINDOW_ET"))
    # historical L2 sampling (platform_assets.ingestion.l2_sampling): a grid like live capture (1 s) or every event
    l2_sampling_mode: Literal["grid", "every_event"] = Field("grid", validation_alias=_env("L2_SAMPLING_MODE"))
    l2_interval_ms: Annotated[int, Field(ge=1, le=3_600_000)] = Field(1000, validation_alias=_env("L2_INTERVAL_MS"))
    l2_sampling_clock: Literal["ts_recv", "ts_event"] = Field("ts_recv", validation_alias=_env("L2_SAMPLING_CLOCK"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    databento_api_key: SecretStr | None = Field(None, validation_alias=_env("DATABENTO_API_KEY"))
    ib_host: str = Field("127.0.0.1", validation_alias=_env("IB_HOST"))
    ib_port: Annotated[int, Field(ge=1, le=65535)] = Field(7497, validation_alias=_env("IB_PORT"))
    ib_client_id: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(1, validation_alias=_env("IB_CLIENT_ID"))
    partitions_start_date: dt.date = Field(dt.date(2021, 1, 4), validation_alias=_env("PARTITIONS_START_DATE"))
    sim_seed: Annotated[int, Field(ge=0)] = Field(7, validation_alias=_env("SIM_SEED"))
    lake_fsync: bool = Field(True, validation_alias=_env("LAKE_FSYNC"))
    # a run step writes each (table, symbol, month) as one file instead of one per date
    lake_batch_writes: bool = Field(True, validation_alias=_env("LAKE_BATCH_WRITES"))
    # compaction keeps an Arrow read copy of the closed months of feature and label tables (training pulls)
    lake_read_copies: bool = Field(True, validation_alias=_env("LAKE_READ_COPIES"))
    databento_dataset: str = Field("XNAS.ITCH", validation_alias=_env("DATABENTO_DATASET"))
    databento_gateway: str | None = Field(None, validation_alias=_env("DATABENTO_GATEWAY"))
    api_host: str = Field("127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, validation_alias=_env("API_PORT"))
    api_token: SecretStr | None = Field(None, validation_alias=_env("PLATFORM_API_TOKEN"))
    api_refresh_rate_limit: Annotated[int, Field(ge=0, le=100_000)] = Field(60, validation_alias=_env("API_REFRESH_RATE_LIMIT"))
    api_refresh_rate_window_s: Annotated[int, Field(ge=1, le=86_400)] = Field(60, validation_alias=_env("API_REFRESH_RATE_WINDOW_SECONDS"))
    api_max_concurrent_refreshes: Annotated[int, Field(ge=1, le=64)] = Field(5, validation_alias=_env("API_MAX_CONCURRENT_REFRESHES"))
    api_cors_origins: Annotated[list[str], NoDecode] = Field([], validation_alias=_env("API_CORS_ORIGINS"))
    default_universe_file: Path | None = Field(None, validation_alias=_env("DEFAULT_UNIVERSE_FILE"))
    dq_engine: Literal["gx", "vectorised"] = Field("gx", validation_alias=_env("DQ_ENGINE"))
    dq_rules_file: Path | None = Field(None, validation_alias=_env("DQ_RULES_FILE"))
    ingestion_sources: Annotated[list[Literal["sim", "databento", "ib"]], NoDecode] = Field(["sim"], validation_alias=_env("INGESTION_SOURCES"))

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data):
        """``KEY=""`` or ``KEY="  "`` (environment or keyword) is the same as not setting KEY."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @model_validator(mode="after")
    def _resolve_symbol_mapping(self):
        """Default ``{CONFIG_PATH}/symbol_mapping.json`` when it exists; a set path must exist."""
        given = self.symbol_mapping_file
        if given is None:
            default = self.config_path / Path(SYMBOL_MAPPING_DEFAULT).name
            resolved = default if default.is_file() else None
        else:
            given = Path(given).expanduser()
            candidates = [given] if given.is_absolute() else [self.config_path / given, REPO_ROOT / given]
            resolved = next((c.resolve() for c in candidates if c.is_file()), None)
            if resolved is None:
                raise ValueError(f"SYMBOL_MAPPING_FILE={str(given)!r}: file not found (looked at {', '.join(map(str, candidates))})")
        object.__setattr__(self, "symbol_mapping_file", resolved)  # frozen model: set once, here
        self.l2_window  # noqa: B018 - the two L2 windows must overlap
        return self

    @field_validator("ingestion_sources", mode="before")
    @classmethod
    def _sources(cls, value):
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value):
        """Comma-separated browser origins (``http://host[:port]``, or ``*``) that may call the HTTP service."""
        origins = [part.strip().rstrip("/") for part in value.split(",") if part.strip()] if isinstance(value, str) else list(value or [])
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], e.g. http://localhost:3000 (or *)")
        return origins

    @field_validator("level2_dirname")
    @classmethod
    def _plain_dirname(cls, value: str | None) -> str | None:
        if value is None:
            return None
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
    def logs_path(self) -> Path:
        """``LOGS_PATH`` or ``{base}/logs``."""
        return Path(self.logs_dir).expanduser().resolve() if self.logs_dir else self.base_path / "logs"

    @property
    def temp_path(self) -> Path | None:
        """``TEMP_PATH``, or None for the system temp folder."""
        return Path(self.temp_dir).expanduser().resolve() if self.temp_dir else None

    @property
    def config_path(self) -> Path:
        """``CONFIG_PATH`` or ``{repo}/config``."""
        return Path(self.config_dir).expanduser().resolve() if self.config_dir else DEFAULT_CONFIG_DIR

    @property
    def backup_path(self) -> Path | None:
        """``ML_BACKUP_PATH`` (mirror of the manifests and summaries), or None."""
        return Path(self.ml_backup_path).expanduser().resolve() if self.ml_backup_path else None

    @property
    def l2_window(self) -> EtWindow:
        """What the L2 backfill keeps: ``L2_BACKFILL_WINDOW_ET`` within ``L2_TRADING_WINDOW_ET``."""
        backfill, trading = self.backfill_window, self.trading_window
        start, end = max(backfill.start, trading.start), min(backfill.end, trading.end)
        if end <= start:
            raise ValueError(f"L2_BACKFILL_WINDOW_ET={backfill} and L2_TRADING_WINDOW_ET={trading} do not overlap")
        return EtWindow((start, end))

    @property
    def level2_folder(self) -> str:
        """``LEVEL2_DIRNAME``, else the TF_1 guide's default for the base in use: ``Level2`` under
        ``ML_BASE_PATH``, ``level2`` under ``DATA_PATH_OVERRIDE`` or the repo's ``./data``."""
        if self.level2_dirname:
            return self.level2_dirname
        return "Level2" if self.data_path_override is None and self.ml_base_path is not None else "level2"

    @property
    def level2_path(self) -> Path:
        return self.base_path / self.level2_folder

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
            if not error["loc"]:  # a check across keys: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            key = _FIELD_TO_ENV.get(field, field)
            value = error.get("input")
            shown = "<hidden>" if "KEY" in key.upper() or "TOKEN" in key.upper() else repr(value)
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
