"""What the backfill worker server imports once (``platform_api.backfill.worker_context``): the
third-party libraries every run worker needs, ~3 s of imports (Dagster, Great Expectations, pandas,
pyarrow, DuckDB). Workers forked from the server start with them loaded.

The server dies with the process that started it (``platform_api.process_life``), and so do its
workers (``die_with_parent`` is their initializer). Libraries, and of the platform's own modules
only ``platform_assets.calendars`` with the stock exchange's calendar built (~0.3 s per worker
otherwise; it reads no environment, and a worker forked on a later day builds that day's calendar)
and the environment-free ``platform_api.process_life``. The other platform modules read the environment when
imported (the adapter registry reads ``INGESTION_ADAPTERS_FILE``, the partitions their start date),
so each worker imports them itself, under the caller's environment.
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

from platform_api.process_life import die_with_parent  # noqa: E402
from platform_assets.calendars import STOCKS  # noqa: E402

STOCKS.calendar  # noqa: B018  (built now, once for every worker)
die_with_parent()  # this module runs in the server only: it dies with the process that started it
