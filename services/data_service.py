"""``DataService``: the HTTP guide's service layer in-process (``from services.data_service import DataService``).

The guide's integration example calls it from other services::

    from services.data_service import DataService
    data_service = DataService()
    await data_service.refresh_all_symbols(days_back=30)

Each method does what the matching HTTP endpoint does, on the same Dagster instance and data
folder (``DAGSTER_HOME``, ``DATA_PATH_OVERRIDE`` / ``ML_BASE_PATH``), and answers in the same shape:
``refresh_all_symbols`` is ``POST /data/refresh`` in sync mode (``{success, failed, summary}`` per
symbol), ``get_coverage`` is ``GET /data/coverage``, ``get_symbols`` is ``GET /data/symbols``. The
async methods run the blocking work in a worker thread, so an event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio

import dagster as dg

from platform_api import jobs
from platform_api.instance import get_instance
from platform_api.service.answers import coverage_answer, symbols_answer
from platform_api.service.refresh_report import RefreshFailedError, refresh_outcome
from resources.settings import PlatformSettings, get_settings


class DataService:
    """Refresh, coverage and symbol listing as the HTTP endpoints answer them (see the module doc)."""

    def __init__(self, settings: PlatformSettings | None = None, instance: dg.DagsterInstance | None = None):
        self.settings = settings or get_settings()
        self.instance = instance or get_instance()

    def refresh_all_symbols_sync(self, days_back: int = 30, interval: str = "1d", asset_type: str = "all") -> dict:
        """Refresh the last ``days_back`` days of every tracked symbol of ``asset_type`` through the
        whole graph and wait: ``{success: [...], failed: [...], summary: {...}}`` as the sync
        ``POST /data/refresh`` answers in ``result``. Raises ``RefreshFailedError`` ("Data refresh
        failed: ...", the HTTP 500) when no symbol succeeded in a failed job."""
        handle = jobs.trigger_refresh(days_back, interval, asset_type, wait=True, instance=self.instance, settings=self.settings)
        status = jobs.get_job_status(handle.job_id, instance=self.instance)
        return refresh_outcome(status, interval, self.instance, self.settings)

    async def refresh_all_symbols(self, days_back: int = 30, interval: str = "1d", asset_type: str = "all") -> dict:
        """``refresh_all_symbols_sync`` off the event loop (the guide awaits it)."""
        return await asyncio.to_thread(self.refresh_all_symbols_sync, days_back, interval, asset_type)

    def get_coverage_sync(self, symbol: str | None = None, days_back: int = 30) -> dict | None:
        """``GET /data/coverage`` (``?symbol=``): layers per symbol and the full/partial/none counts;
        None for a symbol neither tracked nor stored (the HTTP 404)."""
        return coverage_answer(self.instance, self.settings, symbol, days_back)

    async def get_coverage(self, symbol: str | None = None, days_back: int = 30) -> dict | None:
        return await asyncio.to_thread(self.get_coverage_sync, symbol, days_back)

    def get_symbols(self) -> dict:
        """``GET /data/symbols``: ``{stocks: [...], crypto: [...], total}``."""
        return symbols_answer(self.instance)


__all__ = ["DataService", "RefreshFailedError"]
