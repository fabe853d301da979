"""The ingestion guide's ``src/ingestion/api_adapters/databento_adapter.py``: ``resources.adapters.databento_adapter``."""

from resources.adapters.databento_adapter import *  # noqa: F401,F403
from resources.adapters.records import *  # noqa: F401,F403  (the records the adapters yield, e.g. DatabentoOHLCVRecord)
