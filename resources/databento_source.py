"""Databento as a Dagster resource over the official ``databento`` client (``databento.Historical``).

* The API key comes from the environment variable named by ``api_key_env`` (DATABENTO_API_KEY by
  default). It is never logged, never put in metadata, and scrubbed from error messages.
* A requested range is split into chunks per schema (``CHUNK_DAYS``: ohlcv-1d 30 days, ohlcv-1m 7,
  trades / tbbo / mbp-10 1) and fetched chunk by chunk; each chunk streams to a temp file on disk
  (``get_range(path=...)``), so the whole range is never in memory, and is read back in record
  batches (``DBNStore.to_ndarray(count=...)``).
* Retries (tenacity): 429 (honouring Retry-After), 5xx, connection errors, timeouts and broken
  streams are retried with exponential backoff (``max_retries``, ``base_delay``, ``max_delay``,
  ``backoff_multiplier``); other 4xx fail at once with the server's message.
* ``gateway`` points the client at another server (tests use a local TLS gateway).
* Symbols: a mapping file (``SYMBOL_MAPPING_FILE``, YAML/JSON ``{local: vendor}``) translates our
  symbols to the vendor's; identity entries are pointless and warned about.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import requests
import yaml
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

LOG = logging.getLogger("platform.databento")
CHUNK_DAYS = {"ohlcv-1d": 30, "ohlcv-1h": 7, "ohlcv-1m": 7, "ohlcv-1s": 1, "trades": 1, "tbbo": 1, "mbp-1": 1, "mbp-10": 1}
RECORD_BATCH = 250_000


class DatabentoError(RuntimeError):
    """A Databento request failed (the message never contains the API key)."""


class DatabentoAuthError(DatabentoError):
    """The API key is missing or was rejected."""


@dataclass(frozen=True)
class Chunk:
    """One downloaded chunk: its [start, end) range and the DBN file on disk."""

    schema: str
    start: pd.Timestamp
    end: pd.Timestamp
    path: Path

    def store(self):
        import databento as db

        return db.DBNStore.from_file(self.path)

    def record_batches(self, count: int = RECORD_BATCH) -> Iterator[np.ndarray]:
        """The chunk's records as structured arrays of at most ``count`` rows (bounded memory)."""
        store = self.store()
        if count:
            yield from store.to_ndarray(count=count)
        else:
            yield store.to_ndarray()

    def instrument_symbols(self) -> dict[int, str]:
        """instrument_id -> vendor symbol from the chunk's symbology."""
        out: dict[int, str] = {}
        for symbol, intervals in self.store().mappings.items():
            for interval in intervals:
                with contextlib.suppress(ValueError, TypeError):
                    out[int(interval["symbol"])] = symbol
        return out


def date_chunks(schema: str, start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) split into consecutive ranges of at most ``CHUNK_DAYS[schema]`` days."""
    if schema not in CHUNK_DAYS:
        raise ValueError(f"unsupported Databento schema {schema!r}; supported: {', '.join(CHUNK_DAYS)}")
    if end <= start:
        raise ValueError(f"empty range: end {end} <= start {start}")
    step = pd.Timedelta(days=CHUNK_DAYS[schema])
    out, cursor = [], start
    while cursor < end:
        out.append((cursor, min(cursor + step, end)))
        cursor += step
    return out


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


def _retryable(error: BaseException) -> bool:
    from databento.common.error import BentoClientError, BentoError, BentoServerError

    if isinstance(error, BentoClientError):
        return error.http_status in (408, 429)
    if isinstance(error, BentoServerError):
        return True
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(error, BentoError) and "Error streaming response" in str(error)


def _retry_after(error: BaseException | None) -> float:
    headers = getattr(error, "headers", None) or {}
    with contextlib.suppress(TypeError, ValueError):
        return float(headers.get("Retry-After", 0) or 0)
    return 0.0


class DatabentoSource(dg.ConfigurableResource):
    """Historical Databento data through the official client, chunked, streamed and retried."""

    api_key_env: str = "DATABENTO_API_KEY"
    dataset: str = "XNAS.ITCH"
    stype_in: str = "raw_symbol"
    gateway: str | None = None
    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    backoff_multiplier: float = 2.0
    timeout_s: float = 100.0
    symbol_mapping_file: str | None = None
    download_dir: str | None = None

    # ------------------------------------------------------------------ plumbing
    def _key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise DatabentoAuthError(f"no Databento API key: set the environment variable {self.api_key_env}")
        return key

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "")
        return text.replace(key, "***") if key else text

    def client(self):
        import databento as db

        client = db.Historical(key=self._key(), gateway=self.gateway) if self.gateway else db.Historical(key=self._key())
        client.timeseries.TIMEOUT = self.timeout_s
        return client

    def vendor_symbols(self, symbols: list[str]) -> dict[str, str]:
        """local symbol -> vendor symbol (mapping file, else identical)."""
        mapping = load_symbol_mapping(self.symbol_mapping_file)
        return {s: mapping.get(s, s) for s in symbols}

    def _wait(self, state: RetryCallState) -> float:
        backoff = self.base_delay * self.backoff_multiplier ** (state.attempt_number - 1)
        error = state.outcome.exception() if state.outcome else None
        return min(self.max_delay, max(backoff, _retry_after(error)))

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        LOG.warning("Databento request failed (%s), retry %d/%d", self._scrub(f"{type(error).__name__}: {error}"), state.attempt_number, self.max_retries)

    # ------------------------------------------------------------------ requests
    def download(self, symbols: list[str], schema: str, start: pd.Timestamp, end: pd.Timestamp, folder: Path) -> Path:
        """One ``get_range`` into a file under ``folder``, retried per the policy."""
        from databento.common.error import BentoClientError, BentoError

        client = self.client()
        target = folder / f"{schema}-{start.value}-{end.value}.dbn.zst"
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    target.unlink(missing_ok=True)  # a broken earlier attempt leaves a partial file
                    client.timeseries.get_range(
                        dataset=self.dataset, symbols=symbols, schema=schema, start=start.isoformat(), end=end.isoformat(),
                        stype_in=self.stype_in, path=target,
                    )
        except BentoClientError as error:
            status = error.http_status
            detail = self._scrub(str(error.message or error.http_body or ""))
            kind = DatabentoAuthError if status in (401, 403) else DatabentoError
            raise kind(f"Databento rejected the {schema} request for {self.dataset} ({status}): {detail}") from None
        except (BentoError, requests.RequestException) as error:
            raise DatabentoError(f"Databento {schema} request failed after {self.max_retries} retries: {self._scrub(str(error))}") from None
        return target

    def fetch(self, symbols: list[str], schema: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Chunk]:
        """Chunks of [start, end) one after the other; each chunk's file is deleted once consumed."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        with tempfile.TemporaryDirectory(prefix="databento-", dir=self.download_dir) as tmp:
            for chunk_start, chunk_end in date_chunks(schema, start, end):
                LOG.info("Databento %s %s %s [%s, %s)", self.dataset, schema, ",".join(symbols), chunk_start, chunk_end)
                path = self.download(symbols, schema, chunk_start, chunk_end, Path(tmp))
                try:
                    yield Chunk(schema, chunk_start, chunk_end, path)
                finally:
                    path.unlink(missing_ok=True)


def et_day_bounds(day: dt.date, window: tuple[dt.time, dt.time] | None = None, tz: str = "America/New_York") -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) in UTC of a New York calendar day, or of an ET window on it (DST-aware)."""
    first, last = window or (dt.time(0, 0), None)
    start = pd.Timestamp(dt.datetime.combine(day, first), tz=tz)
    end = pd.Timestamp(dt.datetime.combine(day, last), tz=tz) if last else pd.Timestamp(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()), tz=tz)
    return start.tz_convert("UTC"), end.tz_convert("UTC")
