"""``DataEngine``: direct reads of stored bars (``from core.data_engine import DataEngine``, seed 003).

The guide's integration example reads data without going through HTTP::

    from core.data_engine import DataEngine
    engine = DataEngine()
    data = engine.get_data("AAPL", start_date, end_date)

``get_data`` is ``platform_api.get_curated_bars`` for one symbol over the days ``start_date`` ..
``end_date`` (both included, as the guide's ``date_range`` reads), at ``interval`` (``1d`` by
default, as a refresh's default interval; ``1h``, ``1min`` ... as ``get_curated_bars`` takes), with
the gap mask and ``dq_status`` columns. Nothing stored raises ``NoDataError`` naming the symbol.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from platform_api.retrieval import get_curated_bars
from resources.settings import PlatformSettings, get_settings
from resources.validation import parse_date


class DataEngine:
    """Reads the curated lake directly (see the module doc)."""

    def __init__(self, settings: PlatformSettings | None = None):
        self.settings = settings or get_settings()

    def get_data(self, symbol: str, start_date, end_date, interval: str = "1d", *, adjustment: str = "none") -> pd.DataFrame:
        """Bars of ``symbol`` from ``start_date`` through ``end_date`` (dates or ISO strings, both included)."""
        start, end = parse_date(start_date), parse_date(end_date)
        return get_curated_bars([symbol], start, end + dt.timedelta(days=1), frequency=interval, adjustment=adjustment, settings=self.settings)
