"""Historical L2 backfill from Databento, as the TF_1 contract names it.

    backfill_l2("AAPL", "2024-12-02")                 # one (symbol, trading day)
    backfill_l2_batch(start="2024-11-01", end="2024-11-29")   # tracked symbols x days missing

Both use the settings (DATA_PATH_OVERRIDE / ML_BASE_PATH, LEVEL2_DIRNAME, L2_BACKFILL_WINDOW_ET,
L2_MAX_WORKERS, DATABENTO_DATASET, DATABENTO_GATEWAY, SYMBOL_MAPPING_FILE; the key in
DATABENTO_API_KEY). The same work runs as a Dagster partition backfill of ``l2_snapshots_databento``.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.calendars import STOCKS, is_session, sessions_in_range
from platform_assets.ingestion.l2_backfill import DATABENTO_SUFFIX, backfill_l2_day, run_l2_backfill
from platform_assets.universe import tracked_symbols
from resources import databento_source
from resources.l2_store import L2SnapshotStore
from resources.manifests import manifest_dir
from resources.settings import PlatformSettings, get_settings
from resources.validation import InvalidDateRangeError, normalize_symbol, normalize_symbols, parse_date, parse_half_open_dates


def _store(settings: PlatformSettings) -> L2SnapshotStore:
    return L2SnapshotStore(level2_path=str(settings.level2_path), fsync=settings.lake_fsync)


def backfill_l2(symbol, trading_day, *, force: bool = False, strict: bool = False, settings: PlatformSettings | None = None) -> dict:
    """``{symbol, date, status: written|skipped|error, zero_rows, path, rows, error}`` for one day."""
    settings = settings or get_settings()
    symbol = normalize_symbol(symbol)
    day = parse_date(trading_day, name="trading_day")
    if not is_session(STOCKS, day):
        raise InvalidDateRangeError(f"{day} is not an XNYS trading day")
    window = (settings.backfill_window.start, settings.backfill_window.end)
    return backfill_l2_day(databento_source(settings), _store(settings), symbol, day, window, force=force, strict=strict)


def backfill_l2_batch(
    symbols=None, start=None, end=None, *, force: bool = False, strict: bool = False, max_tasks: int | None = None,
    max_workers: int | None = None, instance: dg.DagsterInstance | None = None, settings: PlatformSettings | None = None,
    progress=None,
) -> dict:
    """Tracked symbols (or ``symbols``) x trading days in ``[start, end)`` (end excluded) without a Databento L2 file
    (every day with ``force``), ``L2_MAX_WORKERS`` at a time. Writes the manifest and the summary
    under ``{base}/manifests/`` and returns the summary."""
    settings = settings or get_settings()
    if symbols is None:
        from platform_api.instance import get_instance

        symbols = tracked_symbols(instance or get_instance(), STOCKS)
    symbols = normalize_symbols(symbols)
    first, last = parse_half_open_dates(start, end)
    store = _store(settings)
    tasks = [
        (symbol, day)
        for symbol in symbols
        for day in sessions_in_range(STOCKS, first, last)
        if force or not store.snapshot_path(symbol, day, DATABENTO_SUFFIX).exists()
    ]
    source, window = databento_source(settings), (settings.backfill_window.start, settings.backfill_window.end)
    return run_l2_backfill(
        tasks, lambda symbol, day: backfill_l2_day(source, store, symbol, day, window, force=force, strict=strict),
        manifest_dir(settings.base_path), max_workers=max_workers or settings.l2_max_workers, force=force, strict=strict,
        max_tasks=max_tasks, fsync=settings.lake_fsync, on_done=progress,
    )
