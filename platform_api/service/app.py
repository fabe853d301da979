"""The FastAPI application: the HTTP data API guide (seed 003), endpoint for endpoint.

``POST /data/refresh``, ``POST /data/refresh/daily|weekly|monthly``, ``GET/POST /data/symbols``,
``DELETE /data/symbols/{symbol}``, ``GET /data/coverage[?symbol=]`` with the guide's field names
and shapes; fields are read from a JSON body or from query parameters (the guide's curl examples),
no body at all meaning the defaults. Our additions: ``GET /data/jobs/{id}``,
``GET /data/coverage/stats``, ``GET /health`` and extra fields in some answers (job_id, status_url).

Every refresh is a job of ``platform_api.jobs``: real Dagster runs on the same instance the UI
shows (tagged ``platform/job_id``). Errors are ``{"detail": ...}``: 400 for bad input (never 422),
404 for unknown symbols, jobs and presets, 429 when throttled (``Retry-After``), 500
``Data refresh failed: ...`` when the source or the job fails. Auth: see ``auth.py``; throttling:
``limits.py``. On its first start (empty universe) the service loads the default universe.
Interactive documentation of every endpoint: ``/docs`` (OpenAPI at ``/openapi.json``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from functools import lru_cache
from typing import Literal

import dagster as dg
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from platform_api import jobs
from platform_api.coverage import coverage_stats, coverage_summary
from platform_api.errors import UnknownJobError
from platform_api.service.auth import AuthError, check_request
from platform_api.service.docs_page import add_docs_page, is_docs_path
from platform_api.service.json_body import JsonBodyLabel, body_problem
from platform_api.service.limits import RateLimiter, Throttled
from platform_api.service.models import (
    AddSymbolRequest,
    JobStatusBody,
    PresetRefreshRequest,
    PresetStarted,
    RefreshCompleted,
    RefreshRequest,
    RefreshStarted,
    SymbolAdded,
    SymbolList,
    SymbolRemoved,
    SymbolsAdded,
)
from platform_api.service.answers import coverage_answer, symbols_answer
from platform_api.service.refresh_report import RefreshFailedError, estimate_seconds, refresh_outcome
from platform_assets.universe import (
    InvalidSymbolFormatError,
    UnknownSymbolError,
    add_default_universe,
    add_symbols,
    asset_types,
    check_symbol_format,
    remove_symbol,
    seed_default_universe,
    universe_table,
)
from resources.settings import PlatformSettings, get_settings
from resources.validation import InvalidInputError, normalize_symbol

LOG = logging.getLogger("platform_api.service")
PRESETS = {"daily": 7, "weekly": 30, "monthly": 90}
OPEN_PATHS = {"/health", "/openapi.json"}  # and the docs page with its files (``docs_page.is_docs_path``)
AssetTypeQuery = Literal["stocks", "crypto", "all"]
IntervalQuery = Literal["1d", "1h"]


def _bad(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def _check_query(request: Request, names, repeatable=()) -> None:
    """Refuse query parameters the endpoint does not take, or given more than once (a 400)."""
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        expected = f"; expected {', '.join(names)}" if names else "; this endpoint takes none"
        raise _bad(f"unknown query parameter(s): {', '.join(unknown)}{expected}")
    repeated = sorted(k for k in request.query_params if k not in repeatable and len(request.query_params.getlist(k)) > 1)
    if repeated:
        raise _bad(f"query parameter(s) given more than once: {', '.join(repeated)}")


def strict_query(*names: str, repeatable: tuple[str, ...] = ()):
    """A route dependency: only ``names`` as query parameters, each once (``repeatable`` ones may repeat)."""

    def check(request: Request) -> None:
        _check_query(request, names, repeatable)

    return Depends(check)


def _merge(model: type[BaseModel], body: BaseModel | None, query: dict, request: Request) -> BaseModel:
    """One request object from the JSON body and the query string (a field in both is an error,
    an unknown query parameter too, as unknown body fields are)."""
    _check_query(request, list(query))
    given = {k: v for k, v in query.items() if v is not None}
    from_body = body.model_dump(include=body.model_fields_set) if body is not None else {}
    both = sorted(set(given) & set(from_body))
    if both:
        raise _bad(f"{', '.join(both)} given both in the query string and in the JSON body: give each field once")
    try:
        return model.model_validate({**from_body, **given})
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def create_app(settings: PlatformSettings | None = None, instance: dg.DagsterInstance | None = None) -> FastAPI:
    state = {"instance": instance, "defs": None}

    def current_settings() -> PlatformSettings:
        return settings or get_settings()

    def get_platform() -> tuple[PlatformSettings, dg.DagsterInstance]:
        if state["instance"] is None:
            from platform_api.instance import get_instance

            state["instance"] = get_instance()
        return current_settings(), state["instance"]

    def get_defs() -> dg.Definitions:
        if state["defs"] is None:
            from definitions import build_definitions

            state["defs"] = build_definitions(current_settings())
        return state["defs"]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        current, inst = get_platform()
        added = seed_default_universe(inst, current.default_universe_file)
        if added:
            LOG.warning("first start: loaded the default universe (%d symbols)", len(added))
        yield

    limiter = RateLimiter(current_settings().api_refresh_rate_limit, current_settings().api_refresh_rate_window_s)
    app = FastAPI(
        title="Market-data platform",
        version="1",
        description="The HTTP data API guide's endpoints (refresh, symbols, coverage, scheduled refreshes) over the platform's Dagster instance.",
        lifespan=lifespan,
        docs_url=None,  # served by ``add_docs_page``: Swagger UI's files from this process, no CDN
        redoc_url=None,
    )
    add_docs_page(app)
    app.add_middleware(JsonBodyLabel)  # a JSON object body labelled text/plain or form (curl -d) is read as JSON

    # ------------------------------------------------------------------ errors and auth
    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and not is_docs_path(request.url.path):
            try:
                check_request(current_settings(), request.headers.get("authorization"), request.client.host if request.client else None)
            except AuthError as error:
                headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
                return JSONResponse(status_code=error.status, content={"detail": error.detail}, headers=headers)
        return await call_next(request)

    if current_settings().api_cors_origins:  # added last: outermost, so a browser's preflight is answered before auth
        app.add_middleware(
            CORSMiddleware, allow_origins=current_settings().api_cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"], max_age=600,
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            shape = body_problem(item, request.headers.get("content-type"), request.url.path)
            if shape is not None:
                problems.append(shape)
                continue
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

    @app.exception_handler(Throttled)
    async def _throttled(_: Request, error: Throttled) -> JSONResponse:
        return JSONResponse(status_code=429, content={"detail": error.detail}, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        LOG.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"Internal error: {type(error).__name__}: {error}"})

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness (our extra): no token needed, touches nothing."""
        return {"status": "ok"}

    # ------------------------------------------------------------------ symbols
    @app.get("/data/symbols", response_model=SymbolList, tags=["symbols"], dependencies=[strict_query("asset_type")])
    def list_symbols(asset_type: AssetTypeQuery = Query("all", description="stocks or crypto (all: both, the default)")) -> SymbolList:
        """The tracked symbols: ``{stocks: [...], crypto: [...], total}``."""
        _, inst = get_platform()
        return SymbolList(**symbols_answer(inst, asset_type))

    @app.post("/data/symbols", response_model=SymbolAdded | SymbolsAdded, tags=["symbols"])
    def post_symbol(
        request: Request,
        body: AddSymbolRequest | None = Body(None),
        symbol: str | None = Query(None, description="symbol to add (instead of the JSON body)"),
        asset_type: Literal["auto", "stock", "crypto"] | None = Query(None, description="auto (default), stock or crypto"),
    ):
        """Track a symbol: ``{"symbol": "NVDA", "asset_type": "auto"}`` or ``?symbol=NVDA``.
        Stored data is never touched. Extras: ``symbols`` (a list) and ``defaults: true``."""
        fields = _merge(AddSymbolRequest, body, {"symbol": symbol, "asset_type": asset_type}, request)
        _, inst = get_platform()
        if fields.symbol is not None:
            if fields.symbols or fields.defaults:
                raise _bad("give either symbol, or symbols / defaults, not both")
            name, kind = check_symbol_format(fields.symbol, fields.asset_type)
            added = add_symbols(inst, [name], kind)
            return SymbolAdded(message=f"Symbol {name} added successfully", symbol=name, asset_type=kind, already_tracked=not added)
        if not fields.symbols and not fields.defaults:
            raise _bad("symbol: required (e.g. {\"symbol\": \"NVDA\"} or ?symbol=NVDA)")
        checked = [check_symbol_format(s, fields.asset_type) for s in fields.symbols]  # all valid before any change
        added = add_default_universe(inst) if fields.defaults else []
        for kind in ("stock", "crypto"):
            names = [n for n, k in checked if k == kind]
            added += add_symbols(inst, names, kind) if names else []
        return SymbolsAdded(message=f"{len(added)} symbols added successfully", added=added, total=len(universe_table(inst)))

    @app.delete("/data/symbols/{symbol}", response_model=SymbolRemoved, tags=["symbols"], dependencies=[strict_query()])
    def delete_symbol(symbol: str) -> SymbolRemoved:
        """Stop tracking a symbol. Its stored data stays where it is."""
        _, inst = get_platform()
        try:
            name = normalize_symbol(symbol)
        except InvalidInputError:
            raise InvalidSymbolFormatError(f"Invalid symbol format: {symbol.strip()[:64]}") from None
        try:
            remove_symbol(inst, name)
        except UnknownSymbolError:
            raise UnknownSymbolError(f"Symbol {name} is not tracked") from None
        return SymbolRemoved(message=f"Symbol {name} removed successfully", symbol=name)

    # ------------------------------------------------------------------ coverage
    @app.get("/data/coverage", tags=["coverage"], dependencies=[strict_query("symbol", "days_back")])
    def coverage(
        symbol: str | None = Query(None, description="one symbol only"),
        days_back: int = Query(30, ge=1, le=365, description="extra: the window full/partial/none is judged on (default 30 days, as a default refresh)"),
    ) -> dict:
        """Per tracked symbol and layer (raw, processed = curated bars, features): earliest, latest,
        file_count, total_rows; ``coverage_stats`` counts symbols with full / partial / no coverage
        of the last ``days_back`` days. ``?symbol=`` answers ``{symbol, coverage}``."""
        current, inst = get_platform()
        try:
            name = normalize_symbol(symbol) if symbol is not None else None
        except InvalidInputError:
            raise InvalidSymbolFormatError(f"Invalid symbol format: {symbol.strip()[:64]}") from None
        found = coverage_answer(inst, current, name, days_back)
        if found is None:
            raise HTTPException(404, detail=f"Symbol {name} is not tracked and has no stored data")
        return found

    @app.get("/data/coverage/stats", tags=["coverage"], dependencies=[strict_query("start", "end", "symbol", repeatable=("symbol",))])
    def coverage_completeness(
        start: str = Query(..., description="first day, YYYY-MM-DD"),
        end: str = Query(..., description="first day NOT included, YYYY-MM-DD (the range is [start, end))"),
        symbol: list[str] | None = Query(None, description="repeat for several; all stored symbols when omitted"),
    ) -> dict:
        """Our extra: per symbol and layer, expected days (XNYS sessions / every UTC day for crypto) vs stored: full | partial | none."""
        current, _ = get_platform()
        rows = coverage_stats(start, end, symbol, settings=current)
        return {"symbols": rows, "summary": coverage_summary(rows)}

    # ------------------------------------------------------------------ refresh
    def start_refresh(request: Request, days_back: int, interval: str, asset_type: str, async_mode: bool) -> tuple[dict, jobs.JobStatus | None]:
        """Start (async) or run (sync) a refresh job; ``({job_id, symbols, start, end}, status)``.
        Throttled per client (``limits.RateLimiter``); beyond ``API_MAX_CONCURRENT_REFRESHES``
        running refreshes a job waits for a slot (``platform_api.job_slots``: PENDING, never a 429)."""
        _, inst = get_platform()
        limiter.hit(request.client.host if request.client else "?")
        handle = _trigger(days_back, interval, asset_type, wait=not async_mode)
        if async_mode:
            return _job_info(handle.job_id), None
        return _job_info(handle.job_id), jobs.get_job_status(handle.job_id, instance=inst)

    def _trigger(days_back: int, interval: str, asset_type: str, wait: bool) -> jobs.JobHandle:
        current, inst = get_platform()
        try:
            return jobs.trigger_refresh(days_back, interval, asset_type, wait=wait, instance=inst, settings=current, defs=get_defs())
        except InvalidInputError:
            raise
        except Exception as error:  # the source or the job machinery failed: the guide's 500
            LOG.exception("refresh failed")
            raise HTTPException(500, detail=f"Data refresh failed: {type(error).__name__}: {error}") from None

    def _job_info(job_id: str) -> dict:
        _, inst = get_platform()
        status = jobs.get_job_status(job_id, instance=inst)
        return {"job_id": job_id, "symbols": status.params["symbols"], "start": status.params["start"], "end": status.params["end"]}

    def completed(info: dict, status: jobs.JobStatus, interval: str, message: str) -> RefreshCompleted:
        current, inst = get_platform()
        try:
            result = refresh_outcome(status, interval, inst, current)
        except RefreshFailedError as error:
            raise HTTPException(500, detail=str(error)) from None
        return RefreshCompleted(
            message=message, result=result, status="completed", job_id=info["job_id"], interval=interval, dagster_run_ids=status.run_ids,
            job_state=status.state, errors=list(status.summary.get("errors") or []),
        )

    def started_fields(info: dict) -> dict:
        _, inst = get_platform()
        start, end = dt.date.fromisoformat(info["start"]), dt.date.fromisoformat(info["end"])
        return {
            "estimated_duration": f"{estimate_seconds(info['symbols'], asset_types(inst), start, end)} seconds",
            "symbols_count": len(info["symbols"]),
            "job_id": info["job_id"],
            "status_url": f"/data/jobs/{info['job_id']}",
        }

    @app.post("/data/refresh", response_model=RefreshStarted | RefreshCompleted, tags=["refresh"])
    def refresh(
        request: Request,
        body: RefreshRequest | None = Body(None),
        days_back: int | None = Query(None, description="1-365 (default 30)"),
        interval: IntervalQuery | None = Query(None, description="1d (default) or 1h"),
        asset_type: AssetTypeQuery | None = Query(None, description="stocks, crypto or all (default)"),
        async_mode: bool | None = Query(None, description="true (default): background; false: wait"),
    ):
        """Refresh the last ``days_back`` days of every tracked symbol of ``asset_type`` through the
        whole graph. Fields from a JSON body or the query string; none at all = the defaults.
        Async: ``{message, estimated_duration, symbols_count, status: "started"}`` (+ job_id,
        status_url); sync: ``{message, result: {success, failed, summary}, status: "completed"}``."""
        fields = _merge(RefreshRequest, body, {"days_back": days_back, "interval": interval, "asset_type": asset_type, "async_mode": async_mode}, request)
        info, status = start_refresh(request, fields.days_back, fields.interval, fields.asset_type, fields.async_mode)
        if status is None:
            return RefreshStarted(message="Data refresh started in background", status="started", **started_fields(info))
        return completed(info, status, fields.interval, "Data refresh completed")

    @app.post("/data/refresh/{preset}", response_model=PresetStarted | RefreshCompleted, tags=["refresh"])
    def refresh_preset(
        request: Request,
        preset: str,
        body: PresetRefreshRequest | None = Body(None),
        asset_type: AssetTypeQuery | None = Query(None, description="extra: stocks, crypto or all (default)"),
        interval: IntervalQuery | None = Query(None, description="extra: 1d (default) or 1h"),
        async_mode: bool | None = Query(None, description="extra: true (default)"),
    ):
        """For cron: ``daily`` (last 7 days), ``weekly`` (30), ``monthly`` (90) of every tracked
        symbol; answers ``{message: "Daily refresh started", schedule: "Last 7 days", status: "started"}``."""
        if preset not in PRESETS:
            raise HTTPException(404, detail=f"unknown refresh preset {preset!r}: expected daily, weekly or monthly")
        fields = _merge(PresetRefreshRequest, body, {"asset_type": asset_type, "interval": interval, "async_mode": async_mode}, request)
        days = PRESETS[preset]
        info, status = start_refresh(request, days, fields.interval, fields.asset_type, fields.async_mode)
        if status is None:
            extras = started_fields(info)
            return PresetStarted(
                message=f"{preset.capitalize()} refresh started", schedule=f"Last {days} days", status="started",
                job_id=extras["job_id"], status_url=extras["status_url"], symbols_count=extras["symbols_count"],
            )
        return completed(info, status, fields.interval, f"{preset.capitalize()} refresh completed")

    @app.get("/data/jobs/{job_id}", response_model=JobStatusBody, tags=["refresh"], dependencies=[strict_query()])
    def job_status(job_id: str) -> JobStatusBody:
        """Our extra: PENDING -> RUNNING -> SUCCEEDED | FAILED, from the Dagster instance's runs of the job."""
        _, inst = get_platform()
        status = jobs.get_job_status(job_id, instance=inst)
        return JobStatusBody(
            job_id=status.job_id, kind=status.kind, state=status.state, start_ts=status.start_ts, end_ts=status.end_ts,
            source=status.source, dataset=status.dataset, params=status.params, summary=status.summary, dagster_run_ids=status.run_ids,
        )

    return app


@lru_cache(maxsize=1)
def default_app() -> FastAPI:
    """The app over the environment's settings and ``$DAGSTER_HOME`` (what ``mdp serve`` runs)."""
    return create_app()
