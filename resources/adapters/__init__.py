"""Ingestion source adapters (the ingestion module of the specification, ``api_adapters``).

    from resources.adapters import DatabentoAdapter, AdapterRegistry, BaseAdapter
    from resources.adapters.databento_adapter import DatabentoAdapter   # the document's module layout

Modules: ``base_adapter`` (``BaseAdapter``, ``AdapterMetrics``), ``databento_adapter``,
``interactive_brokers_adapter``, ``sim_adapter``, ``records`` (pydantic records), ``registry``
(``AdapterRegistry``, built-in entries + ``$INGESTION_ADAPTERS_FILE``), ``structured_logging``
(``JsonFormatter``), ``ranges`` (time-range helpers).
"""

from __future__ import annotations

from resources.adapters.base_adapter import AdapterMetrics, BaseAdapter, FrameBatch
from resources.adapters.databento_adapter import (
    ApiKeyError,
    DatabentoAdapter,
    DatabentoAuthError,
    DatabentoConnectionError,
    DatabentoError,
    MissingApiKeyError,
)
from resources.adapters.interactive_brokers_adapter import InteractiveBrokersAdapter
from resources.adapters.records import (
    BarRecord,
    DatabentoOHLCVRecord,
    DatabentoStatisticsRecord,
    DatabentoTBBORecord,
    DatabentoTradeRecord,
)
from resources.adapters.registry import AdapterRegistry, SourceSpec, load_default_registry
from resources.adapters.sim_adapter import SimAdapter
from resources.adapters.structured_logging import JsonFormatter

load_default_registry()

__all__ = [
    "AdapterMetrics", "AdapterRegistry", "ApiKeyError", "BarRecord", "BaseAdapter", "DatabentoAdapter", "DatabentoAuthError", "DatabentoConnectionError",
    "DatabentoError", "DatabentoOHLCVRecord", "DatabentoStatisticsRecord", "DatabentoTBBORecord", "DatabentoTradeRecord", "FrameBatch",
    "InteractiveBrokersAdapter", "JsonFormatter", "MissingApiKeyError", "SimAdapter", "SourceSpec",
]
