"""Databento through the official client (``databento.Historical``): the one fetching path.

    config = {"api": {"key_env_var": "DATABENTO_API_KEY"},
              "retry_policy": {"max_retries": 3, "base_delay": 1.0, "max_delay": 60.0, "backoff_multiplier": 2.0}}
    with DatabentoAdapter(config) as adapter:
        for record in adapter.fetch_historical_data({"dataset": "GLBX.MDP3", "schema": "ohlcv-1d",
                "symbols": ["AAPL"], "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-31T23:59:59Z",
                "stype_in": "continuous"}):
            print(record.symbol, record.ts_event)

* The key is read from the environment variable named by ``api.key_env_var`` at ``connect()``
  (required by the official client; a stand-in patched over ``databento.Historical``, as in the
  guide's unit-test pattern, is built without one); it is never logged, never put in metadata, and scrubbed from every error message. The server is
  Databento's unless ``api.gateway`` (or the platform setting ``DATABENTO_GATEWAY``) names another.
* ``[start_date, end_date)`` (half-open, UTC) is split into chunks of ``date_chunk_interval_days``
  (default per schema, ``CHUNK_DAYS``: ohlcv-1d 30, ohlcv-1m 7, trades/tbbo 1, statistics 7);
  each chunk is one ``timeseries.get_range`` streamed to a temp file and decoded in record
  batches, so a long range never sits in memory. Every chunk is logged with ``chunk_number`` /
  ``total_chunks``.
* Retries (tenacity): 429 (honouring Retry-After), 408, 5xx, connection errors, timeouts and
  broken streams (also a body delivered whole but incomplete: each downloaded file is checked, see
  ``incomplete_reason``), with exponential backoff ``base_delay * backoff_multiplier**n`` capped at
  ``max_delay``, ``max_retries`` times after the first attempt; other 4xx fail at once.
* Errors: ``ValueError`` for configuration / job parameters (a missing key too:
  ``MissingApiKeyError``), ``ConnectionError`` when the API cannot be reached or refuses the key
  (``DatabentoConnectionError``, ``DatabentoAuthError``; a missing key is both a ``ValueError``
  and a ``DatabentoAuthError``: ``MissingApiKeyError``), ``RuntimeError`` when a fetch still fails
  after the retries (``DatabentoError``, the base of the others; ``DatabentoIncompleteStreamError``
  when the stream still arrives cut short: nothing of it is handed on).
* Records: ``DatabentoOHLCVRecord`` / ``DatabentoTradeRecord`` / ``DatabentoTBBORecord`` /
  ``DatabentoStatisticsRecord``; a record failing validation is skipped and counted
  (``validation_errors``) unless the job says ``"on_invalid_record": "raise"``.
* The Dagster resource ``resources.databento_source.DatabentoSource`` builds this adapter
  (``adapter()``) and fetches through it; ``fetch_chunks`` (DBN files, decoded as numpy record
  arrays) is the vectorised path the assets use, ``fetch_historical_data`` the record path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import requests
import yaml
import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from platform_assets.ingestion.databento_transforms import ohlcv_to_frame, record_dicts
from resources.adapters.base_adapter import AdapterMetrics, BaseAdapter, FrameBatch
from resources.adapters.object_records import object_record_fields
from resources.adapters.ranges import chunk_range, isoformat_z, parse_instant
from resources.adapters.records import (
    DatabentoOHLCVRecord,
    DatabentoStatisticsRecord,
    DatabentoTBBORecord,
    DatabentoTradeRecord,
)
from resources.settings import get_settings

CHUNK_DAYS = {
    "ohlcv-1d": 30, "ohlcv-1h": 7, "ohlcv-1m": 7, "ohlcv-1s": 1, "trades": 1, "tbbo": 1, "statistics": 7, "mbp-1": 1, "mbp-10": 1,
}
RECORD_MODELS: dict[str, type[BaseModel]] = {
    "ohlcv-1d": DatabentoOHLCVRecord, "ohlcv-1h": DatabentoOHLCVRecord, "ohlcv-1m": DatabentoOHLCVRecord, "ohlcv-1s": DatabentoOHLCVRecord,
    "trades": DatabentoTradeRecord, "tbbo": DatabentoTBBORecord, "statistics": DatabentoStatisticsRecord,
}
RECORD_BATCH = 250_000
MB = 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DBN_MAGIC = b"DBN"
TRUNCATED_WARNING = "truncated or contains an incomplete record"  # the client's BentoWarning text
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG = logging.getLogger("DatabentoAdapter")


class DatabentoError(RuntimeError):
    """A Databento request failed (the message never contains the API key)."""


class DatabentoAuthError(DatabentoError, ConnectionError):
    """The API key is missing or was rejected."""


class ApiKeyError(DatabentoAuthError, ValueError):
    """The key in the environment is unusable (a configuration error)."""


class MissingApiKeyError(ApiKeyError):
    """The environment variable named by ``api.key_env_var`` is not set."""


class DatabentoConnectionError(DatabentoError, ConnectionError):
    """The API could not be reached (connection errors / timeouts after the retries)."""


class DatabentoIncompleteStreamError(DatabentoError):
    """A DBN stream arrived cut short: it ends inside a record (the client's "DBN file is truncated"
    warning), inside a zstd frame or inside its metadata. Retried like a broken stream; after the
    retries nothing of it may be stored (a partial day would pass for a complete one)."""


# ---------------------------------------------------------------------------------- configuration
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiConfig(_Strict):
    key_env_var: str = "DATABENTO_API_KEY"
    gateway: str | None = None
    timeout_s: float = Field(100.0, gt=0)

    @field_validator("key_env_var")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


class RetryPolicy(_Strict):
    max_retries: int = Field(3, ge=0, le=20)
    base_delay: float = Field(1.0, ge=0)
    max_delay: float = Field(60.0, ge=0)
    backoff_multiplier: float = Field(2.0, ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay {self.max_delay} < base_delay {self.base_delay}")
        return self


class DatabentoConfig(_Strict):
    """The adapter's config dict: ``api`` and ``retry_policy`` as the ingestion document writes
    them, plus our optional defaults (``dataset``, ``stype_in``), the local symbol mapping file
    and the folder for the temporary chunk files."""

    api: ApiConfig = ApiConfig()
    retry_policy: RetryPolicy = RetryPolicy()
    dataset: str | None = None
    stype_in: str = "raw_symbol"
    symbol_mapping_file: str | None = None
    download_dir: str | None = None
    record_batch_size: int = Field(RECORD_BATCH, gt=0)


class JobConfig(_Strict):
    """One fetch: the keys of the ingestion document's job_config examples."""

    name: str | None = None
    dataset: str = Field(min_length=1)
    schema_: str = Field(alias="schema")
    symbols: list[str] = Field(min_length=1)
    start_date: pd.Timestamp
    end_date: pd.Timestamp
    stype_in: str = "raw_symbol"
    date_chunk_interval_days: float | None = Field(None, gt=0)
    on_invalid_record: Literal["skip", "raise"] = "skip"

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in value):
            raise ValueError("symbols must be a non-empty list of non-empty strings")
        return [s.strip() for s in value]

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _instant(cls, value, info):
        return parse_instant(value, info.field_name)

    @model_validator(mode="after")
    def _valid(self):
        if self.schema_ not in CHUNK_DAYS:
            raise ValueError(f"unsupported Databento schema {self.schema_!r}; supported: {', '.join(CHUNK_DAYS)}")
        if self.end_date <= self.start_date:
            raise ValueError(f"end_date {isoformat_z(self.end_date)} must be after start_date {isoformat_z(self.start_date)}")
        return self

    @property
    def chunk_days(self) -> float:
        return self.date_chunk_interval_days or CHUNK_DAYS[self.schema_]


def _official_client(client_class: Any) -> bool:
    """Whether ``databento.Historical`` is the client's own class (not a test's stand-in, such as
    seed 002's ``@patch('databento.Historical')``, which needs no key: nothing reaches the API)."""
    return isinstance(client_class, type) and str(getattr(client_class, "__module__", "")).startswith("databento")


def _config_error(what: str, error: ValidationError) -> ValueError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in error.errors())
    return ValueError(f"invalid {what}: {problems}")


def date_chunks(schema: str, start: pd.Timestamp, end: pd.Timestamp, days: float | None = None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) split into consecutive ranges of at most ``days`` (default ``CHUNK_DAYS[schema]``)."""
    if schema not in CHUNK_DAYS:
        raise ValueError(f"unsupported Databento schema {schema!r}; supported: {', '.join(CHUNK_DAYS)}")
    return chunk_range(start, end, days or CHUNK_DAYS[schema])


def load_symbol_mapping(path: str | Path | None) -> dict[str, str]:
    """``{local: vendor}`` from a YAML/JSON file; identity entries are warned about and dropped."""
    if not path:
        return {}
    document = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(document, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in document.items()):
        raise ValueError(f"{path}: expected a mapping of local symbol -> vendor symbol")
    identity = sorted(k for k, v in document.items() if k == v)
    if identity:
        LOG.warning("%s: identity entries have no effect and were ignored: %s", path, ", ".join(identity))
    return {k: v for k, v in document.items() if k != v}


# ---------------------------------------------------------------------------------- retries
def _retryable(error: BaseException) -> bool:
    from databento.common.error import BentoClientError, BentoError, BentoServerError

    if isinstance(error, BentoClientError):
        return error.http_status in (408, 429)
    if isinstance(error, BentoServerError):
        return True
    if isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError, DatabentoIncompleteStreamError)):
        return True
    return isinstance(error, BentoError) and "Error streaming response" in str(error)


def _network(error: BaseException) -> bool:
    return isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)) or "Error streaming response" in str(error)


@contextlib.contextmanager
def client_errors_translated(what: str, retries: int, scrub) -> Iterator[None]:
    """Turn the official client's errors into ours, the message scrubbed of the key: a 4xx is
    "rejected" (401/403: DatabentoAuthError), the rest "failed after N retries" (network failures:
    DatabentoConnectionError). ``what`` names the request, e.g. "ohlcv-1m request for XNAS.ITCH"."""
    from databento.common.error import BentoClientError, BentoError

    try:
        yield
    except DatabentoIncompleteStreamError as error:
        raise DatabentoIncompleteStreamError(f"{error} (still after {retries} retries)") from None
    except BentoClientError as error:
        status = error.http_status
        detail = scrub(str(error.message or error.http_body or ""))
        kind = DatabentoAuthError if status in (401, 403) else DatabentoError
        raise kind(f"Databento rejected the {what} ({status}): {detail}") from None
    except (BentoError, requests.RequestException, ConnectionError, TimeoutError) as error:
        kind = DatabentoConnectionError if _network(error) else DatabentoError
        raise kind(f"Databento {what} failed after {retries} retries: {scrub(str(error))}") from None


@contextlib.contextmanager
def decoding(name: str) -> Iterator[None]:
    """A DBN stream that does not decode (metadata or zstd frame cut short: ``DBNError: decoding
    error: unable to determine encoding``) as ``DatabentoIncompleteStreamError`` naming it."""
    from databento_dbn import DBNError

    try:
        yield
    except (DBNError, zstandard.ZstdError) as error:
        raise DatabentoIncompleteStreamError(f"the Databento {name} does not decode: {error}") from None


def _check_complete(path: Path, name: str) -> None:
    """``DatabentoIncompleteStreamError`` (retried) when the downloaded file is incomplete: a body
    cut short whole-looking to HTTP (no Content-Length, or cut before the gateway compressed it)."""
    reason = incomplete_reason(path) if path.exists() else None
    if reason:
        raise DatabentoIncompleteStreamError(f"the Databento {name} arrived incomplete: {reason}")


def _retry_after(error: BaseException | None) -> float:
    headers = getattr(error, "headers", None) or {}
    with contextlib.suppress(TypeError, ValueError):
        return float(headers.get("Retry-After", 0) or 0)
    return 0.0


# ---------------------------------------------------------------------------------- completeness
def stream_name(schema: str, symbols, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """How errors name a stream: ``"mbp-10 stream of AAPL [2024-12-02T14:30:00Z, 2024-12-02T21:00:00Z)"``."""
    return f"{schema} stream of {','.join(symbols) or '?'} [{isoformat_z(start)}, {isoformat_z(end)})"


def _zstd_decompressed(source) -> Iterator[bytes]:
    """The decompressed pieces of a zstd stream of one or more frames (bounded memory);
    ``EOFError`` when it ends inside a frame (a body cut short: the client's reader says nothing)."""
    decompressor = zstandard.ZstdDecompressor()
    frame, inside = decompressor.decompressobj(), False
    while data := source.read(MB):
        while data:
            yield frame.decompress(data)
            inside = not frame.eof
            if inside:
                break
            data, frame = frame.unused_data, decompressor.decompressobj()
    if inside:
        raise EOFError("it ends inside a zstd frame")


def incomplete_reason(path: Path) -> str | None:
    """Why the downloaded DBN file (zstd or not) is incomplete, or None: it ends inside a zstd frame,
    inside its metadata, or inside a record (the stream's records are of one schema, so all of the
    size the first one's header gives, as the client's record arrays assume). One streaming pass."""
    head, total = bytearray(), 0
    with path.open("rb") as source:
        compressed = source.read(4) == ZSTD_MAGIC
        source.seek(0)
        pieces = _zstd_decompressed(source) if compressed else iter(lambda: source.read(MB), b"")
        try:
            for piece in pieces:
                total += len(piece)
                if len(head) <= _metadata_end(head):  # up to the first record's length byte
                    head += piece
        except (EOFError, zstandard.ZstdError) as error:
            return str(error)
    records = total - _metadata_end(head)
    if head[:3] != DBN_MAGIC or len(head) < 8 or records < 0:
        return "it ends inside its metadata"
    size = head[_metadata_end(head)] * 4 if records else 0
    if records and (size == 0 or records % size):
        return f"it ends inside a record ({records} bytes of {size}-byte records)"
    return None


def _metadata_end(head: bytes) -> int:
    """Where a DBN stream's records start: after the 8-byte prelude (magic, version, length) and the
    metadata (8 until the prelude is known)."""
    return 8 + int.from_bytes(head[4:8], "little") if len(head) >= 8 else 8


# ---------------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class Chunk:
    """One downloaded chunk: its [start, end) range, its number and the DBN file on disk."""

    schema: str
    start: pd.Timestamp
    end: pd.Timestamp
    path: Path
    number: int = 1
    total: int = 1
    metrics: AdapterMetrics | None = field(default=None, compare=False, repr=False)
    batch_size: int = RECORD_BATCH
    returned: Any = field(default=None, compare=False, repr=False)
    """What ``get_range`` returned when it wrote no file (a test double's iterable store)."""
    symbols: tuple[str, ...] = ()
    """The vendor symbols asked for (named in errors)."""

    @property
    def name(self) -> str:
        """``"mbp-10 stream of AAPL [start, end)"``: how errors name the chunk."""
        return stream_name(self.schema, self.symbols, self.start, self.end)

    def store(self):
        """The chunk's ``DBNStore`` (or the store the client returned); a file that does not decode
        raises ``DatabentoIncompleteStreamError`` naming the chunk."""
        import databento as db

        if self.returned is not None and not self.path.exists():
            return self.returned
        with decoding(self.name):
            return db.DBNStore.from_file(self.path)

    def record_batches(self, count: int | None = None) -> Iterator[np.ndarray | list]:
        """The chunk's records as structured arrays of at most ``count`` rows (bounded memory);
        each batch is counted in the adapter's ``records_fetched``. A store the client returned
        instead of a file, if not a ``DBNStore``, gives lists of its record objects. A stream the
        client finds truncated raises ``DatabentoIncompleteStreamError`` (``next_complete``)."""
        import databento as db

        count = self.batch_size if count is None else count
        store = self.store()
        if not isinstance(store, db.DBNStore):
            batches = _object_batches(store, count or RECORD_BATCH)
        else:
            batches = store.to_ndarray(count=count) if count else iter([store.to_ndarray()])
        while True:
            started = time.perf_counter()
            try:
                batch = next_complete(batches, self.name)
            except StopIteration:
                return
            if self.metrics is not None:
                self.metrics.records_fetched += len(batch)
                self.metrics.processing_time_ms += (time.perf_counter() - started) * 1000
            yield batch

    def instrument_symbols(self) -> dict[int, str]:
        """instrument_id -> vendor symbol from the chunk's symbology."""
        out: dict[int, str] = {}
        mappings = getattr(self.store(), "mappings", None)
        for symbol, intervals in (mappings.items() if isinstance(mappings, dict) else ()):
            for interval in intervals:
                with contextlib.suppress(ValueError, TypeError):
                    out[int(interval["symbol"])] = symbol
        return out


def next_complete(batches: Iterator, name: str):
    """``next(batches)``, but the client's "DBN file is truncated or contains an incomplete record"
    warning (it drops the loose bytes and carries on) raises ``DatabentoIncompleteStreamError``
    naming the stream, whatever the process's warning filters (the CLI ignores warnings). Other
    warnings raised meanwhile are re-issued."""
    from databento.common.error import BentoWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BentoWarning)
        batch = next(batches)
    for warning in caught:
        if issubclass(warning.category, BentoWarning) and TRUNCATED_WARNING in str(warning.message):
            raise DatabentoIncompleteStreamError(f"the Databento {name} is truncated: {warning.message}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return batch


def _object_batches(store, count: int) -> Iterator[list]:
    batch: list = []
    for record in store:
        batch.append(record)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------- the adapter
class DatabentoAdapter(BaseAdapter):
    """Historical Databento data: chunked, streamed, retried, validated, counted."""

    provider = "databento"

    def __init__(self, config: dict[str, Any] | None = None):
        self._client = None
        self._returned_stores: dict[Path, Any] = {}
        super().__init__(config)

    # ------------------------------------------------------------------ interface
    def validate_config(self) -> bool:
        """Parse the config (``ValueError`` naming every problem); ``True`` when valid."""
        try:
            self.settings = DatabentoConfig.model_validate(self.config)
        except ValidationError as error:
            raise _config_error("DatabentoAdapter config", error) from None
        return True

    def connect(self) -> None:
        """Read the key from the environment and create the client (the client opens HTTPS
        connections per request; nothing is sent until a fetch)."""
        import databento as db

        api = self.settings.api
        key = os.environ.get(api.key_env_var, "")
        if not key and _official_client(db.Historical):
            raise MissingApiKeyError(f"no Databento API key: set the environment variable {api.key_env_var}")
        gateway = api.gateway or get_settings().databento_gateway
        key = key or None  # only a stand-in for the client (seed 002's patched ``databento.Historical``) gets here without one
        client = db.Historical(key=key, gateway=gateway) if gateway else db.Historical(key=key)
        client.timeseries.TIMEOUT = api.timeout_s
        self._client, self._connected = client, True
        self.log_event(logging.DEBUG, "Connected Databento client", gateway=gateway or "default", key_env_var=api.key_env_var)

    def disconnect(self) -> None:
        self._client, self._connected = None, False

    @property
    def client(self):
        """The ``databento.Historical`` client (connecting first if needed)."""
        if not self._connected:
            self.connect()
        return self._client

    def fetch_historical_data(self, job_config: dict[str, Any]) -> Iterator[BaseModel]:
        """Validated records of ``job_config`` (dataset, schema, symbols, start_date, end_date,
        stype_in, date_chunk_interval_days, name), chunk by chunk. The job is checked at once
        (``ValueError``); the requests start with the iteration."""
        job = self.job(job_config)
        model = RECORD_MODELS.get(job.schema_)
        if model is None:
            raise ValueError(f"schema {job.schema_!r} has no record model (supported: {', '.join(RECORD_MODELS)}); use fetch_chunks")
        return self._records(job, model)

    def _records(self, job: JobConfig, model: type[BaseModel]) -> Iterator[BaseModel]:
        to_vendor = self.vendor_symbols(job.symbols)
        to_local = {vendor: local for local, vendor in to_vendor.items()}
        fields = self._job_fields(job)
        self.log_event(logging.INFO, "Starting Databento historical fetch", **fields, total_chunks=len(date_chunks(job.schema_, job.start_date, job.end_date, job.chunk_days)))
        yielded = 0
        for chunk in self.fetch_chunks(sorted(set(to_vendor.values())), job.schema_, job.start_date, job.end_date,
                                       dataset=job.dataset, stype_in=job.stype_in, chunk_days=job.chunk_days, name=job.name):
            ids = chunk.instrument_symbols()
            for records in chunk.record_batches():
                with self.metrics.timed():
                    rows = (record_dicts(job.schema_, records, ids) if isinstance(records, np.ndarray)
                            else [r if isinstance(r, model) else object_record_fields(model, r, ids, list(to_vendor.values())) for r in records])
                for row in rows:
                    try:
                        if isinstance(row, model):  # a record model instance the client handed back
                            record = row
                        else:
                            row["symbol"] = to_local.get(row.get("symbol"), row.get("symbol"))
                            record = model(**row)
                    except ValidationError as error:
                        self.metrics.validation_errors += 1
                        if self.metrics.validation_errors <= 10:
                            self.log_event(logging.WARNING, "Databento record failed validation", **fields, chunk_number=chunk.number,
                                           total_chunks=chunk.total, error=str(error.errors()[0]["msg"]), ts_event=str(row.get("ts_event")))
                        if job.on_invalid_record == "raise":
                            raise
                        continue
                    yielded += 1
                    yield record
        self.log_event(logging.INFO, "Databento historical fetch complete", **fields, records_yielded=yielded, **self.metrics.as_dict())

    # ------------------------------------------------------------------ helpers
    def job(self, job_config: dict[str, Any]) -> JobConfig:
        """``job_config`` validated (``ValueError`` naming every problem), with our defaults."""
        if not isinstance(job_config, dict):
            raise ValueError(f"job_config must be a dict, got {type(job_config).__name__}")
        values = dict(job_config)
        if "dataset" not in values and self.settings.dataset:
            values["dataset"] = self.settings.dataset
        values.setdefault("stype_in", self.settings.stype_in)
        try:
            return JobConfig.model_validate(values)
        except ValidationError as error:
            raise _config_error("job_config", error) from None

    def vendor_symbols(self, symbols: list[str]) -> dict[str, str]:
        """local symbol -> vendor symbol (the mapping file, else identical)."""
        mapping = load_symbol_mapping(self.settings.symbol_mapping_file)
        return {s: mapping.get(s, s) for s in symbols}

    def run_metadata(self) -> dict[str, Any]:
        return {"dataset": self.settings.dataset or ""}

    def _job_fields(self, job: JobConfig) -> dict[str, Any]:
        return {"job_name": job.name, "dataset": job.dataset, "schema": job.schema_, "symbols": list(job.symbols),
                "start_date": isoformat_z(job.start_date), "end_date": isoformat_z(job.end_date)}

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.settings.api.key_env_var, "")
        return text.replace(key, "***") if key else text

    def _wait(self, state: RetryCallState) -> float:
        policy = self.settings.retry_policy
        backoff = policy.base_delay * policy.backoff_multiplier ** (state.attempt_number - 1)
        error = state.outcome.exception() if state.outcome else None
        return min(policy.max_delay, max(backoff, _retry_after(error)))

    def _before_sleep(self, state: RetryCallState, fields: dict) -> None:
        self.metrics.retry_attempts += 1
        error = state.outcome.exception() if state.outcome else None
        self.log_event(logging.WARNING, "Databento request failed, retrying", **fields, attempt=state.attempt_number,
                       max_retries=self.settings.retry_policy.max_retries, error=self._scrub(f"{type(error).__name__}: {error}"),
                       status=getattr(error, "http_status", None), wait_s=round(self._wait(state), 3))

    # ------------------------------------------------------------------ requests
    def download(self, symbols: list[str], schema: str, start: pd.Timestamp, end: pd.Timestamp, folder: Path, *,
                 dataset: str | None = None, stype_in: str | None = None, log_fields: dict | None = None) -> Path:
        """One ``get_range`` into a file under ``folder``, retried per the policy."""

        if not self._connected:
            self.connect()
        dataset = dataset or self.settings.dataset
        if not dataset:
            raise ValueError("no dataset: give job_config['dataset'] or the adapter config's 'dataset'")
        stype_in = stype_in or self.settings.stype_in
        fields = log_fields or {}
        target = folder / f"{schema}-{start.value}-{end.value}.dbn.zst"
        name = stream_name(schema, symbols, start, end)
        policy = self.settings.retry_policy
        retrying = Retrying(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(policy.max_retries + 1), wait=self._wait,
            before_sleep=lambda state: self._before_sleep(state, fields), reraise=True,
        )
        with client_errors_translated(f"{schema} request for {dataset}", policy.max_retries, self._scrub), self.metrics.timed():
            for attempt in retrying:
                with attempt:
                    target.unlink(missing_ok=True)  # a broken earlier attempt leaves a partial file
                    self.metrics.api_calls_made += 1
                    with decoding(name):  # the client opens the file it wrote: metadata cut short raises there
                        returned = self._client.timeseries.get_range(
                            dataset=dataset, symbols=symbols, schema=schema, start=start.isoformat(), end=end.isoformat(),
                            stype_in=stype_in, path=target,
                        )
                    _check_complete(target, name)
        if target.exists():
            self.metrics.data_volume_mb += target.stat().st_size / MB
        elif returned is None:
            raise DatabentoError(f"Databento {schema} request for {dataset} wrote no file and returned no data")
        else:
            self._returned_stores[target] = returned  # a client that hands its data back (a test double)
        return target

    def fetch_chunks(self, symbols: list[str], schema: str, start, end, *, dataset: str | None = None, stype_in: str | None = None,
                     chunk_days: float | None = None, name: str | None = None) -> Iterator[Chunk]:
        """Chunks of [start, end) for vendor ``symbols``, one after the other; each chunk's file is
        deleted once consumed. Connects first if needed."""
        start, end = parse_instant(start, "start"), parse_instant(end, "end")
        ranges = date_chunks(schema, start, end, chunk_days)
        with tempfile.TemporaryDirectory(prefix="databento-", dir=self.settings.download_dir) as tmp:
            for number, (chunk_start, chunk_end) in enumerate(ranges, 1):
                fields = {"job_name": name, "dataset": dataset or self.settings.dataset, "schema": schema, "symbols": list(symbols),
                          "start_date": isoformat_z(chunk_start), "end_date": isoformat_z(chunk_end),
                          "chunk_number": number, "total_chunks": len(ranges)}
                self.log_event(logging.INFO, "Fetching data chunk from Databento API", **fields)
                path = self.download(symbols, schema, chunk_start, chunk_end, Path(tmp), dataset=dataset, stype_in=stype_in, log_fields=fields)
                try:
                    yield Chunk(schema, chunk_start, chunk_end, path, number, len(ranges), self.metrics, self.settings.record_batch_size,
                                returned=self._returned_stores.pop(path, None), symbols=tuple(symbols))
                finally:
                    path.unlink(missing_ok=True)

    fetch = fetch_chunks  # the resource's signature: an adapter can stand in for ``DatabentoSource``

    def fetch_frames(self, symbols: list[str], schema: str, start, end, convert) -> Iterator[FrameBatch]:
        """``convert(records, ids)`` frames for LOCAL ``symbols`` (mapped to the vendor's and back),
        each chunk's last frame marked complete up to the chunk's end."""
        to_vendor = self.vendor_symbols(symbols)
        to_local = {vendor: local for local, vendor in to_vendor.items()}
        for chunk in self.fetch_chunks(sorted(set(to_vendor.values())), schema, start, end):
            ids = chunk.instrument_symbols()
            for records in chunk.record_batches():
                if not isinstance(records, np.ndarray):
                    raise DatabentoError("the Databento client returned record objects instead of writing the DBN file; "
                                         "fetch_historical_data reads those, frames need the file")
                with self.metrics.timed():
                    frame = convert(records, ids)
                    frame = frame.assign(symbol=frame["symbol"].map(to_local).fillna(frame["symbol"]))
                yield FrameBatch(frame)
            yield FrameBatch(pd.DataFrame(), chunk.end)

    def fetch_bars(self, symbols, start, end, options=None) -> Iterator[FrameBatch]:
        """ohlcv-1m bars decoded as whole record arrays (no per-record Python)."""
        return self.fetch_frames(symbols, "ohlcv-1m", start, end, ohlcv_to_frame)
