"""The ingestion guide's ``src/ingestion/api_adapters/interactive_brokers_adapter.py``: ``resources.adapters.interactive_brokers_adapter``."""

from resources.adapters.interactive_brokers_adapter import *  # noqa: F401,F403
from resources.adapters.records import *  # noqa: F401,F403  (the records the adapters yield, e.g. DatabentoOHLCVRecord)
