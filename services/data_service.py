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
from platform_api.service.refresh_report import RefreshFailedError, refresh_outcome
from platform_assets.universe import asset_types, universe_table
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
        """``GET /data/coverage`` (``?symbol=``): layers per symbol and the full/partial/none counts."""
        from platform_api.coverage import coverage_report, symbol_coverage
        from platform_api.service.app import check_kind
        from resources.validation import normalize_symbol

        start, end = jobs.refresh_window(days_back)
        types = asset_types(self.instance)
        if symbol is None:
            tracked = set(universe_table(self.instance)["symbol"])
            return coverage_report({s: types.get(s) or check_kind(s) for s in tracked}, start, end, settings=self.settings)
        name = normalize_symbol(symbol)
        return symbol_coverage(name, types.get(name) or check_kind(name), start, end, settings=self.settings)

    async def get_coverage(self, symbol: str | None = None, days_back: int = 30) -> dict | None:
        return await asyncio.to_thread(self.get_coverage_sync, symbol, days_back)

    def get_symbols(self) -> dict:
        """``GET /data/symbols``: ``{stocks: [...], crypto: [...], total}``."""
        table = universe_table(self.instance)
        stocks = sorted(table.loc[table["asset_type"] == "stock", "symbol"])
        crypto = sorted(table.loc[table["asset_type"] == "crypto", "symbol"])
        return {"stocks": stocks, "crypto": crypto, "total": len(stocks) + len(crypto)}


__all__ = ["DataService", "RefreshFailedError"]
