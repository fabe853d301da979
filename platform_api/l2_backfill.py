"""Historical L2 backfill from Databento, as the TF_1 alignment guide names it.

    backfill_l2("AAPL", date(2024, 12, 2))                   # one (symbol, trading day)
    tasks = find_warrior_tasks(since_days=30)                 # tracked stocks x recent sessions
    summary = run_warrior_backfill(tasks, max_workers=4, strict=True)
    backfill_l2_batch(start="2024-11-01", end="2024-11-29")   # tracked symbols x [start, end] sessions

The "warrior" list of the guide (its ``auto_backfill_from_warrior.py``) is, here, our tracked stock
universe (``mdp symbols``) x the most recent completed XNYS sessions. Every task is recorded in
``{base}/manifests/backfill_l2_manifest.jsonl`` in input order (``SKIP`` for a day that already
has its file), the run's summary in ``{base}/manifests/backfill_l2_summary.json``; the summary is
also logged as one machine-parsable ``SUMMARY {json}`` line (logger ``platform.l2_backfill`` and
``{LOGS_PATH}/backfill_l2.log``), and the bars coverage manifest is refreshed at the end.

Settings used: DATA_PATH_OVERRIDE / ML_BASE_PATH, LEVEL2_DIRNAME, L2_BACKFILL_WINDOW_ET within
L2_TRADING_WINDOW_ET, L2_MAX_WORKERS (legacy L2_BACKFILL_CONCURRENCY), DATABENTO_DATASET,
DATABENTO_GATEWAY, SYMBOL_MAPPING_FILE, ML_BACKUP_PATH, LOGS_PATH, TEMP_PATH; the key in
DATABENTO_API_KEY. The same work runs as a Dagster partition backfill of ``l2_snapshots_databento``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable

import dagster as dg
import pandas as pd

from platform_assets.calendars import STOCKS, is_session, sessions_in_range
from platform_assets.ingestion.l2_backfill import L2BackfillFailed, backfill_l2_day, run_l2_backfill
from platform_assets.ingestion.l2_sampling import L2Sampling
from platform_assets.universe import tracked_symbols
from resources.build import databento_source
from resources.l2_store import L2SnapshotStore
from resources.coverage_update import update_coverage_file
from resources.manifests import manifest_dir
from resources.settings import PlatformSettings, get_settings
from resources.validation import InvalidDateRangeError, InvalidInputError, normalize_symbol, normalize_symbols, parse_date, parse_date_range, parse_half_open_dates

LOG = logging.getLogger("platform.l2_backfill")
LOG_FILE = "backfill_l2.log"
NEW_YORK = "America/New_York"


def _store(settings: PlatformSettings) -> L2SnapshotStore:
    return L2SnapshotStore(level2_path=str(settings.level2_path), fsync=settings.lake_fsync)


def _window(settings: PlatformSettings) -> tuple[dt.time, dt.time]:
    return settings.l2_window.start, settings.l2_window.end


def l2_sampling(settings: PlatformSettings, mode: str | None = None, interval_ms: int | None = None) -> L2Sampling:
    """The sampling of historical L2: ``mode`` / ``interval_ms`` when given, else the settings'
    ``L2_SAMPLING_MODE`` (default ``grid``) / ``L2_INTERVAL_MS`` (default 1000, live capture's)."""
    return L2Sampling(mode or settings.l2_sampling_mode, settings.l2_interval_ms if interval_ms is None else interval_ms, settings.l2_sampling_clock)


def _session(day: object, name: str = "trading_day") -> dt.date:
    day = parse_date(day, name=name)
    if not is_session(STOCKS, day):
        raise InvalidDateRangeError(f"{day} is not an XNYS trading day")
    return day


def backfill_l2(
    symbol: str, trading_day: dt.date, *, force: bool = False, strict: bool = False, settings: PlatformSettings | None = None,
    mode: str | None = None, interval_ms: int | None = None,
) -> dict:
    """``{symbol, date, status: written|skipped|error, zero_rows, path, rows, error}`` for one day.

    ``written``: the file was (re)written with ``rows`` snapshots; ``skipped``: the file existed
    (``force=False``) or the vendor had no records (``zero_rows=True``, nothing written);
    ``error``: ``error`` says why (raised instead with ``strict=True``), also for a symbol that fails
    validation or a day that is no XNYS session. ``path`` is the file.
    ``mode`` (``"grid"`` | ``"every_event"``) and ``interval_ms`` override ``L2_SAMPLING_MODE`` /
    ``L2_INTERVAL_MS`` (README "Historical L2 sampling"); the result's ``sampling`` says which ran.
    """
    settings = settings or get_settings()
    try:
        symbol, day = normalize_symbol(symbol), _session(trading_day)
    except InvalidInputError as error:  # a bad task: raised with strict=True, else its result says why
        if strict:
            raise
        return {"symbol": str(symbol), "date": str(trading_day), "status": "error", "zero_rows": False, "path": None, "rows": 0,
                "error": f"{type(error).__name__}: {error}"}
    sampling = l2_sampling(settings, mode, interval_ms)
    return backfill_l2_day(databento_source(settings), _store(settings), symbol, day, _window(settings), force=force, strict=strict, sampling=sampling)


def _positive(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def find_warrior_tasks(
    since_days: int | None = None, last: int | None = None, *, symbols: Iterable[str] | None = None,
    today: dt.date | None = None, instance: dg.DagsterInstance | None = None,
) -> list[tuple[str, dt.date]]:
    """``(symbol, trading day)`` tasks: tracked stock symbols x recent completed XNYS sessions.

    ``since_days=N``: the sessions of the last N calendar days (before today, New York time);
    ``last=N``: the N most recent sessions (with ``since_days``: at most N of those); neither: the
    latest session. Ordered by symbol (universe order), then date. ``symbols`` overrides the
    universe; ``today`` defaults to the New York date now.
    """
    since_days, last = _positive("since_days", since_days), _positive("last", last)
    today = today or pd.Timestamp.now(tz=NEW_YORK).date()
    if since_days is not None:
        days = sessions_in_range(STOCKS, today - dt.timedelta(days=since_days), today - dt.timedelta(days=1))
    else:
        lookback = (last or 1) * 2 + 10  # calendar days enough for ``last`` sessions
        days = sessions_in_range(STOCKS, today - dt.timedelta(days=lookback), today - dt.timedelta(days=1))
        last = last or 1
    if last is not None:
        days = days[-last:]
    if symbols is None:
        from platform_api.instance import get_instance

        symbols = tracked_symbols(instance or get_instance(), STOCKS)
    chosen = normalize_symbols(list(symbols)) if symbols else []
    return [(symbol, day) for symbol in chosen for day in days]


def _summary_line(summary: dict, settings: PlatformSettings) -> None:
    """Log the batch's ``SUMMARY {json}`` line and append it to ``{LOGS_PATH}/backfill_l2.log``."""
    line = "SUMMARY " + json.dumps(summary, sort_keys=True, default=str)
    LOG.info(line)
    try:
        settings.logs_path.mkdir(parents=True, exist_ok=True)
        with open(settings.logs_path / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(f"{pd.Timestamp.now(tz='UTC').isoformat()} {line}\n")
    except OSError as error:  # a log that cannot be written never fails the backfill
        LOG.warning("could not write %s: %s", settings.logs_path / LOG_FILE, error)


def run_warrior_backfill(
    tasks: Iterable[tuple[str, dt.date]], *, force: bool = False, strict: bool = False, max_tasks: int | None = None,
    max_workers: int | None = None, settings: PlatformSettings | None = None, progress: Callable[[dict, int, int], None] | None = None,
    mode: str | None = None, interval_ms: int | None = None,
) -> dict:
    """Run ``backfill_l2`` over ``tasks`` with ``max_workers`` threads (default ``L2_MAX_WORKERS``).

    Returns the ``backfill_l2_summary.json`` document (also written, and logged as a SUMMARY line);
    the manifest lists every task in input order. ``strict=True`` stops at the first error and
    raises after the summary is written. ``max_tasks`` keeps the first N tasks. ``mode`` /
    ``interval_ms``: the sampling, as in ``backfill_l2``.
    """
    settings = settings or get_settings()
    sampling = l2_sampling(settings, mode, interval_ms)
    checked = [(normalize_symbol(symbol), _session(day, "task date")) for symbol, day in tasks]
    max_tasks, max_workers = _positive("max_tasks", max_tasks), _positive("max_workers", max_workers)
    source, store, window = databento_source(settings), _store(settings), _window(settings)
    backup = str(settings.backup_path) if settings.backup_path else None
    try:
        summary = run_l2_backfill(
            checked, lambda symbol, day: backfill_l2_day(source, store, symbol, day, window, force=force, strict=strict, sampling=sampling),
            manifest_dir(settings.base_path), max_workers=max_workers or settings.l2_max_workers, force=force, strict=strict,
            max_tasks=max_tasks, fsync=settings.lake_fsync, on_done=progress, base=settings.base_path, backup_path=backup,
        )
    except L2BackfillFailed as stopped:  # strict: the batch's SUMMARY line is logged all the same (seed 004)
        _summary_line(stopped.summary, settings)
        raise
    finally:
        update_coverage_file(settings.base_path, fsync=settings.lake_fsync, backup_path=backup)  # the guide's auto-refresh
    _summary_line(summary, settings)
    return summary


def backfill_l2_batch(
    symbols=None, start=None, end=None, *, force: bool = False, strict: bool = False, max_tasks: int | None = None,
    max_workers: int | None = None, instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None,
    progress=None, mode: str | None = None, interval_ms: int | None = None,
) -> dict:
    """Tracked symbols (or ``symbols``) x XNYS sessions in ``[start, end)`` (end excluded, the
    platform's range convention): every task is run and recorded, days that already have their
    file as ``SKIP`` (rewritten with ``force``). Returns the summary."""
    settings = settings or get_settings()
    if symbols is None:
        from platform_api.instance import get_instance

        symbols = tracked_symbols(instance or get_instance(), STOCKS)
    symbols = normalize_symbols(symbols)
    first, last = parse_half_open_dates(start, end)
    tasks = [(symbol, day) for symbol in symbols for day in sessions_in_range(STOCKS, first, last)]
    if not tasks:
        raise InvalidDateRangeError(f"no XNYS trading day in [{start}, {end})")
    return run_warrior_backfill(tasks, force=force, strict=strict, max_tasks=max_tasks, max_workers=max_workers, settings=settings, progress=progress,
                                mode=mode, interval_ms=interval_ms)
