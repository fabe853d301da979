"""The bodies of the read-only HTTP answers, shared by the routes (``app.py``) and the in-process
service layer of the guide (``services.data_service``): the tracked symbols and the coverage."""

from __future__ import annotations

import dagster as dg

from platform_api import jobs
from platform_api.coverage import HTTP_LAYER_NAMES, REPORTED_LAYERS, NONE, LayerCoverage, coverage_report, symbol_coverage
from platform_assets.universe import asset_types, check_symbol_format, universe_table
from resources.settings import PlatformSettings
from resources.validation import InvalidInputError, normalize_symbol


def check_kind(symbol: str) -> str:
    """stock or crypto for an untracked symbol (format detection)."""
    try:
        return check_symbol_format(symbol)[1]
    except InvalidInputError:
        return "stock"


def symbols_answer(instance: dg.DagsterInstance, asset_type: str = "all") -> dict:
    """``GET /data/symbols``: ``{stocks: [...], crypto: [...], total}`` (``asset_type``: stocks, crypto or all)."""
    table = universe_table(instance)
    stocks = sorted(table.loc[table["asset_type"] == "stock", "symbol"]) if asset_type in ("stocks", "all") else []
    crypto = sorted(table.loc[table["asset_type"] == "crypto", "symbol"]) if asset_type in ("crypto", "all") else []
    return {"stocks": stocks, "crypto": crypto, "total": len(stocks) + len(crypto)}


def coverage_answer(instance: dg.DagsterInstance, settings: PlatformSettings, symbol: str | None, days_back: int) -> dict | None:
    """``GET /data/coverage[?symbol=]`` over the window of a ``days_back`` refresh. One symbol:
    ``{symbol, coverage, status, window}`` (empty layers for a tracked symbol with nothing stored),
    None for a symbol neither tracked nor stored; a malformed symbol raises ``InvalidInputError``."""
    start, end = jobs.refresh_window(days_back)
    types = asset_types(instance)
    tracked = set(universe_table(instance)["symbol"])
    if symbol is None:
        return coverage_report({s: types.get(s) or check_kind(s) for s in tracked}, start, end, settings=settings)
    name = normalize_symbol(symbol)
    found = symbol_coverage(name, types.get(name) or check_kind(name), start, end, settings=settings)
    if found is None and name in tracked:
        empty = {HTTP_LAYER_NAMES[layer]: LayerCoverage().to_dict() for layer in REPORTED_LAYERS}
        found = {"symbol": name, "coverage": empty, "status": NONE, "window": {"start": start.isoformat(), "end": end.isoformat()}}
    return found
