"""What the backfill worker server imports once (``platform_api.backfill.worker_context``): the
third-party libraries every run worker needs, ~3 s of imports (Dagster, Great Expectations, pandas,
pyarrow, DuckDB). Workers forked from the server start with them loaded.

Libraries only: the platform's own modules read the environment when imported (the adapter
registry reads ``INGESTION_ADAPTERS_FILE``), so each worker imports them itself, under the
caller's environment.
"""

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX's import, as the GX engine does

import dagster  # noqa: E402,F401
import duckdb  # noqa: E402,F401
import great_expectations  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
import pyarrow.dataset  # noqa: E402,F401
import pyarrow.parquet  # noqa: E402,F401
import pydantic  # noqa: E402,F401
