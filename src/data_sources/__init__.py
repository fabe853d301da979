"""The low-level design's data sources (seed 001 sections 3.2 and 5): the TWS client and ingestor,
the file and DB ingestors, and ``BaseIngestor`` (a new source implements it and is registered:
``register_ingestor`` / ``get_ingestor``, also by ``"module:Class"`` from a config file)."""

from src.data_sources.base_ingestor import INGESTORS, BaseIngestor, get_ingestor, register_ingestor

__all__ = ["INGESTORS", "BaseIngestor", "get_ingestor", "register_ingestor"]
