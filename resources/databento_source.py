"""Databento as a Dagster resource: configuration for ``DatabentoAdapter``, which does the work.

There is one fetching path: ``resources.adapters.databento_adapter.DatabentoAdapter`` (official
``databento.Historical`` client, per-schema date chunks streamed to temp files and decoded in
record batches, tenacity retries, structured logs, run counters). This resource only carries the
Dagster-configurable settings and hands out adapters built from them:

* ``adapter()`` -> a ``DatabentoAdapter`` (``with databento.adapter() as adapter: ...``), whose
  ``metrics`` the assets put in their materialization metadata;
* ``fetch(symbols, schema, start, end)`` -> the adapter's chunks (a fresh adapter per call), for
  callers that do not need the counters (``platform_api.l2_backfill``).

The API key comes from the environment variable named by ``api_key_env`` (DATABENTO_API_KEY by
default): never logged, never put in metadata, scrubbed from error messages. ``gateway`` points
the client at another server (tests use a local TLS gateway). A mapping file
(``SYMBOL_MAPPING_FILE``, YAML/JSON ``{local: vendor}``) translates our symbols to the vendor's.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from resources.adapters.databento_adapter import (  # noqa: F401  (re-exported: the resource's historical names)
    CHUNK_DAYS,
    RECORD_BATCH,
    Chunk,
    DatabentoAdapter,
    DatabentoAuthError,
    DatabentoConnectionError,
    DatabentoError,
    DatabentoIncompleteStreamError,
    MissingApiKeyError,
    date_chunks,
    load_symbol_mapping,
)
from resources.adapters.ranges import et_day_bounds  # noqa: F401  (re-exported)


class DatabentoSource(dg.ConfigurableResource):
    """Historical Databento data through ``DatabentoAdapter``: chunked, streamed and retried."""

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

    def adapter_config(self) -> dict:
        """The ``DatabentoAdapter`` config dict (the ingestion document's shape plus our keys)."""
        return {
            "api": {"key_env_var": self.api_key_env, "gateway": self.gateway, "timeout_s": self.timeout_s},
            "retry_policy": {"max_retries": self.max_retries, "base_delay": self.base_delay, "max_delay": self.max_delay,
                             "backoff_multiplier": self.backoff_multiplier},
            "dataset": self.dataset,
            "stype_in": self.stype_in,
            "symbol_mapping_file": self.symbol_mapping_file,
            "download_dir": self.download_dir,
        }

    def adapter(self) -> DatabentoAdapter:
        """A new adapter with this resource's settings (not connected yet)."""
        return DatabentoAdapter(self.adapter_config())

    def client(self):
        """A connected ``databento.Historical`` client (key from the environment)."""
        return self.adapter().client

    def vendor_symbols(self, symbols: list[str]) -> dict[str, str]:
        """local symbol -> vendor symbol (mapping file, else identical)."""
        mapping = load_symbol_mapping(self.symbol_mapping_file)
        return {s: mapping.get(s, s) for s in symbols}

    def fetch(self, symbols: list[str], schema: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Chunk]:
        """Chunks of [start, end) for vendor ``symbols``; each chunk's file is deleted once consumed."""
        with self.adapter() as adapter:
            yield from adapter.fetch_chunks(symbols, schema, pd.Timestamp(start), pd.Timestamp(end))
