"""Seed 001 section 2: ``logging_setup.py``, logging configuration.

    from src.ops.logging_setup import setup_logging
    setup_logging()                          # INFO, one JSON object per line on stderr
    setup_logging("DEBUG", json_format=False, logger="DatabentoAdapter")

JSON lines are the ingestion document's shape (``timestamp``, ``level``, ``logger``, ``message``
and every structured field a component logged in ``extra``: ``dataset``, ``chunk_number``, ...;
``resources.adapters.structured_logging.JsonFormatter``). Calling it again replaces the handler
it installed (never a second copy of every line); other handlers are left alone. ``level`` may be
a name or a number; ``LOG_LEVEL`` in the environment is the default.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

from resources.adapters.structured_logging import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int | None = None, *, json_format: bool = True, stream: IO[str] | None = None,
                  logger: str | None = None) -> logging.Logger:
    """Configure ``logger`` (the root logger by default) and return it."""
    level = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    if isinstance(level, str):
        resolved = logging.getLevelName(level.strip().upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        level = resolved
    target = logging.getLogger(logger)
    for handler in [h for h in target.handlers if getattr(h, "_platform_logging_setup", False)]:
        target.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    handler._platform_logging_setup = True  # what a later call replaces
    target.addHandler(handler)
    target.setLevel(level)
    return target
