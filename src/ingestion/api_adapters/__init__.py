"""The ingestion guide's ``src.ingestion.api_adapters``: the platform's ``resources.adapters``
(adapters, records, registry, errors), under the names the guide imports."""

from resources.adapters import *  # noqa: F401,F403
from resources.adapters import __all__  # noqa: F401
