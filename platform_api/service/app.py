"""The FastAPI application: data refresh, symbol universe, coverage and job status.

Every refresh is a job of ``platform_api.jobs``: real Dagster runs on the same instance the UI
shows (tagged ``platform/job_id``). Bad input answers 400 with a ``detail`` naming the problem,
unknown symbols and jobs 404, a missing/wrong bearer token 401 (when ``PLATFORM_API_TOKEN`` is set).
Interactive documentation of every endpoint: ``/docs`` (OpenAPI at ``/openapi.json``).
"""

from __future__ import annotations

import datetime as dt
import hmac
from functools import lru_cache

import dagster as dg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from platform_api import jobs
from platform_api.coverage import coverage_stats, coverage_summary, get_coverage
from platform_api.errors import UnknownJobError
from platform_api.service.models import (
    AddSymbolsRequest,
    JobAccepted,
    JobStatusBody,
    PresetRefreshRequest,
    RefreshRequest,
    RefreshResult,
    RefreshSummary,
    SymbolInfo,
    SymbolResult,
)
from platform_assets.calendars import sessions_in_range
from platform_assets.quality.checks import is_blocked
from platform_assets.universe import (
    UnknownSymbolError,
    add_default_universe,
    add_symbols,
    asset_types,
    market_of,
    remove_symbol,
    universe_table,
)
from resources.lake import CURATED_BARS, ParquetLake
from resources.settings import PlatformSettings, get_settings
from resources.validation import InvalidInputError, normalize_symbol

PRESET_DAYS = {"daily": 7, "weekly": 30, "monthly": 90}
ASSET_TYPE_NAMES = {"stocks": "stock", "crypto": "crypto"}


def create_app(settings: PlatformSettings | None = None, instance: dg.DagsterInstance | None = None) -> FastAPI:
    app = FastAPI(
        title="Market-data platform",
        version="1",
        description="Refresh market data, manage the tracked symbols and read coverage; jobs are Dagster runs on the platform's instance.",
    )

    def get_platform() -> tuple[PlatformSettings, dg.DagsterInstance]:
        nonlocal instance
        current = settings or get_settings()
        if instance is None:
            from platform_api.instance import get_instance

            instance = get_instance()
        return current, instance

    def require_token(request: Request) -> None:
        current = settings or get_settings()
        if current.api_token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), current.api_token.get_secret_value().encode()):
            raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where or 'request'}: {item.get('msg')}")
        return JSONResponse(status_code=400, content={"detail": "; ".join(problems) or "invalid request"})

    @app.exception_handler(UnknownSymbolError)
    async def _unknown_symbol(_: Request, error: UnknownSymbolError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(UnknownJobError)
    async def _unknown_job(_: Request, error: UnknownJobError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, error: InvalidInputError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(error)})

    protected = [Depends(require_token)]

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness: no token needed, touches nothing."""
        return {"status": "ok"}

    # ------------------------------------------------------------------ symbols
    @app.get("/data/symbols", response_model=list[SymbolInfo], dependencies=protected, tags=["symbols"])
    def list_symbols(asset_type: str = Query("all", description="stocks | crypto | all")) -> list[SymbolInfo]:
        """The tracked symbols with their asset type and calendar."""
        if asset_type not in ("stocks", "crypto", "all"):
            raise HTTPException(400, detail=f"unknown asset_type {asset_type!r}: expected stocks, crypto or all")
        _, inst = get_platform()
        table = universe_table(inst)
        if asset_type != "all":
            table = table[table["asset_type"] == ASSET_TYPE_NAMES[asset_type]]
        return [SymbolInfo(symbol=r.symbol, asset_type=r.asset_type, market=r.market, added_at=r.added_at) for r in table.itertuples()]

    @app.post("/data/symbols", status_code=201, dependencies=protected, tags=["symbols"])
    def post_symbols(body: AddSymbolsRequest) -> dict:
        """Track symbols (validated; stored data is never touched). ``defaults: true`` adds the default universe."""
        if not body.symbols and not body.defaults:
            raise HTTPException(400, detail="symbols: give at least one symbol, or defaults: true")
        _, inst = get_platform()
        for symbol in body.symbols:
            normalize_symbol(symbol)  # validate every symbol before changing anything
        added = add_default_universe(inst) if body.defaults else []
        added += add_symbols(inst, body.symbols, body.asset_type) if body.symbols else []
        return {"added": added, "tracked": len(universe_table(inst))}

    @app.delete("/data/symbols/{symbol}", dependencies=protected, tags=["symbols"])
    def delete_symbol(symbol: str) -> dict:
        """Stop refreshing a symbol. Its stored data stays where it is."""
        _, inst = get_platform()
        name = normalize_symbol(symbol)
        remove_symbol(inst, name)
        return {"removed": name, "data_kept": True}

    # ------------------------------------------------------------------ coverage
    @app.get("/data/coverage", dependencies=protected, tags=["coverage"])
    def coverage(symbol: str | None = Query(None, description="one symbol; all stored symbols when omitted")) -> list[dict]:
        """Per symbol and layer (raw / curated / features): earliest, latest, file_count, total_rows."""
        current, inst = get_platform()
        name = normalize_symbol(symbol) if symbol is not None else None
        rows = get_coverage(name, settings=current)
        if name is not None and not rows and name not in set(universe_table(inst)["symbol"]):
            raise HTTPException(404, detail=f"symbol {name} is not tracked and has no stored data")
        return rows

    @app.get("/data/coverage/stats", dependencies=protected, tags=["coverage"])
    def coverage_completeness(
        start: str = Query(..., description="first day, YYYY-MM-DD"),
        end: str = Query(..., description="first day NOT included, YYYY-MM-DD (the range is [start, end))"),
        symbol: list[str] | None = Query(None, description="repeat for several; all stored symbols when omitted"),
    ) -> dict:
        """Per symbol and layer: expected days (XNYS sessions / every UTC day for crypto) vs stored: full | partial | none."""
        current, _ = get_platform()
        rows = coverage_stats(start, end, symbol, settings=current)
        return {"symbols": rows, "summary": coverage_summary(rows)}

    # ------------------------------------------------------------------ refresh
    def _refresh(days_back: int, interval: str, asset_type: str, async_mode: bool):
        current, inst = get_platform()
        handle = jobs.trigger_refresh(days_back, interval, asset_type, wait=not async_mode, instance=inst, settings=current)
        status = jobs.get_job_status(handle.job_id, instance=inst)
        if async_mode:
            return JSONResponse(
                status_code=202,
                content=JobAccepted(
                    job_id=handle.job_id, kind=handle.kind, state=status.state, submitted_at=handle.submitted_at,
                    status_url=f"/data/jobs/{handle.job_id}", dagster_run_ids=status.run_ids,
                    dagster_runs_tag=f"platform/job_id={handle.job_id}",
                ).model_dump(),
            )
        return _sync_result(current, inst, status)

    @app.post("/data/refresh", dependencies=protected, tags=["refresh"], responses={202: {"model": JobAccepted}, 200: {"model": RefreshResult}})
    def refresh(body: RefreshRequest):
        """Re-ingest the last ``days_back`` days of every tracked symbol of ``asset_type`` through the whole graph.

        ``async_mode`` (default) answers 202 with the job id to poll at ``/data/jobs/{id}``;
        otherwise the call waits and lists per-symbol success/failed with a summary.
        """
        return _refresh(body.days_back, body.interval, body.asset_type, body.async_mode)

    @app.post("/data/refresh/{preset}", dependencies=protected, tags=["refresh"], responses={202: {"model": JobAccepted}, 200: {"model": RefreshResult}})
    def refresh_preset(preset: str, body: PresetRefreshRequest | None = None):
        """Presets: ``daily`` (last 7 days), ``weekly`` (30), ``monthly`` (90)."""
        if preset not in PRESET_DAYS:
            raise HTTPException(404, detail=f"unknown refresh preset {preset!r}: expected daily, weekly or monthly")
        body = body or PresetRefreshRequest()
        return _refresh(PRESET_DAYS[preset], "1d", body.asset_type, body.async_mode)

    @app.get("/data/jobs/{job_id}", response_model=JobStatusBody, dependencies=protected, tags=["refresh"])
    def job_status(job_id: str) -> JobStatusBody:
        """PENDING -> RUNNING -> SUCCEEDED | FAILED, from the Dagster instance's runs of the job."""
        _, inst = get_platform()
        status = jobs.get_job_status(job_id, instance=inst)
        return JobStatusBody(
            job_id=status.job_id, kind=status.kind, state=status.state, start_ts=status.start_ts, end_ts=status.end_ts,
            source=status.source, dataset=status.dataset, params=status.params, summary=status.summary, dagster_run_ids=status.run_ids,
        )

    return app


def _sync_result(settings: PlatformSettings, instance: dg.DagsterInstance, status) -> RefreshResult:
    """Per symbol: success when every expected day has curated bars that passed the error rules."""
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    start, end = dt.date.fromisoformat(status.params["start"]), dt.date.fromisoformat(status.params["end"])
    types = asset_types(instance)
    results = []
    for symbol in status.params["symbols"]:
        expected = sessions_in_range(market_of(symbol, types), start, end)
        stored = [d for d in expected if lake.has_partition(CURATED_BARS, symbol, d) and not is_blocked(lake, "curated_bars", symbol, d)]
        missing = sorted(set(expected) - set(stored))
        error = None
        if missing:
            error = f"no usable curated bars for {len(missing)} day(s): " + ", ".join(d.isoformat() for d in missing[:10])
        results.append(SymbolResult(symbol=symbol, status="failed" if missing else "success", expected_days=len(expected), stored_days=len(stored), error=error))
    success = sum(r.status == "success" for r in results)
    summary = RefreshSummary(total=len(results), success=success, failed=len(results) - success, success_rate=round(success / len(results), 4) if results else 0.0)
    return RefreshResult(
        job_id=status.job_id, state=status.state, start=start.isoformat(), end=end.isoformat(), results=results, summary=summary, dagster_run_ids=status.run_ids,
    )


@lru_cache(maxsize=1)
def default_app() -> FastAPI:
    """The app over the environment's settings and ``$DAGSTER_HOME`` (what ``mdp serve`` runs)."""
    return create_app()
