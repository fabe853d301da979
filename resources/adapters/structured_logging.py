"""Structured logs: adapters log through the ``logging`` module with their fields in ``extra``.

``logger.info("Fetching data chunk from Databento API", extra={"dataset": ..., "chunk_number": 1,
"total_chunks": 4})`` keeps the fields as attributes of the ``LogRecord``; ``JsonFormatter``
renders a record as one JSON object (``timestamp``, ``level``, ``logger``, ``message`` and every
extra field), the shape the ingestion document shows. Nothing here ever sees a secret: adapters
do not put keys in messages or fields.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


def structured_fields(record: logging.LogRecord) -> dict:
    """The ``extra`` fields a record was logged with."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def as_dict(record: logging.LogRecord) -> dict:
    """A record as the JSON-able dict of the ingestion document's "Example log output"."""
    stamp = dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc)
    return {
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        **structured_fields(record),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``logging.StreamHandler().setFormatter(JsonFormatter())``."""

    def format(self, record: logging.LogRecord) -> str:
        payload = as_dict(record)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
