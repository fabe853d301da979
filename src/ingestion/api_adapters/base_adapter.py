"""The ingestion guide's ``src/ingestion/api_adapters/base_adapter.py``: ``resources.adapters.base_adapter``."""

from resources.adapters.base_adapter import *  # noqa: F401,F403
from resources.adapters.records import *  # noqa: F401,F403  (the records the adapters yield, e.g. DatabentoOHLCVRecord)
