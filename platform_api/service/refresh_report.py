"""What a refresh did, per symbol, in the HTTP guide's shape; and how long one is expected to take.

A symbol succeeded when every expected day of the window (XNYS sessions for stocks, UTC days for
crypto) has curated bars stored after the refresh. Days whose bars failed a blocking DQ error rule
are still stored (flagged, not fed to features): their count is our extra ``dq_blocked_days``.
``rows``, ``date_range`` and ``latest_price`` describe the bars of the requested ``interval``: the
curated 1-minute bars resampled to 1h or 1d by ``get_curated_bars(frequency=...)`` (so
``interval=1h`` really reports hourly bars: 7 per regular XNYS session, 24 per crypto day).
A failed symbol carries ``error`` (our extra) saying what is missing.

Bars stored before the refresh never make it a success: a symbol with a day in the range of a run of
the refresh job that did not succeed (its market's pipeline, its symbols) failed, with that run's
error (a run stopped only by blocking DQ checks stored its bars: those days count as
``dq_blocked_days``), and when the job failed without such a run (its worker died, runs never started) every
symbol failed. A refresh whose source is down so reports failures, not yesterday's data as new.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG
from platform_api.errors import NoDataError
from platform_api.retrieval import get_curated_bars
from platform_assets.automation.jobs import CRYPTO_PIPELINE_JOB
from platform_assets.calendars import CRYPTO, STOCKS, Market, sessions_in_range
from platform_assets.partitions import SYMBOLS_TAG
from platform_assets.quality.checks import is_blocked
from platform_assets.universe import asset_types, market_of
from resources.lake import CURATED_BARS, ParquetLake
from resources.settings import PlatformSettings

# Measured on this 2-core machine with the offline source, sync refreshes of one symbol through the
# whole graph: 22 XNYS sessions 6.9 s and 30 crypto days 2.8 s when the machine was quiet; 24-35 s
# and 13-14 s at a load average of 6-8 (other jobs sharing the cores). An async job also starts a
# worker process (a few seconds of imports). Estimate: 5 s + 0.3 s per stock session + 0.1 s per
# crypto day, the quiet figures: the guide's "140 seconds" for 70 symbols is the same order.
START_UP_S = 5.0
PER_STOCK_DAY_S = 0.3
PER_CRYPTO_DAY_S = 0.1


def estimate_seconds(symbols: list[str], types: dict[str, str], start: dt.date, end: dt.date) -> int:
    total = START_UP_S
    for symbol in symbols:
        market = market_of(symbol, types)
        days = len(sessions_in_range(market, start, end))
        total += days * (PER_CRYPTO_DAY_S if market.name == "crypto" else PER_STOCK_DAY_S)
    return int(round(total))


@dataclass(frozen=True)
class FailedRun:
    """A run of a refresh job that did not succeed: the market of its pipeline, its dates (inclusive),
    its symbols (None: every symbol of the market) and why."""

    market: Market
    start: dt.date
    end: dt.date
    symbols: frozenset[str] | None
    error: str

    def covers(self, symbol: str, market: Market, days: list[dt.date]) -> bool:
        if market != self.market or (self.symbols is not None and symbol not in self.symbols):
            return False
        return any(self.start <= day <= self.end for day in days)


DQ_BLOCK_ERROR = "DagsterAssetCheckFailedError"


def _only_dq_blocked(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run failed only because blocking DQ checks failed: its bars were stored and the
    blocked days are reported as ``dq_blocked_days``, not as a failed refresh."""
    failures = [r.dagster_event.step_failure_data for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE) if r.dagster_event]
    return bool(failures) and all(f is not None and f.error is not None and f.error.cls_name == DQ_BLOCK_ERROR for f in failures)


def failed_runs(instance: dg.DagsterInstance, run_ids: list[str], error: str) -> tuple[list[FailedRun], int]:
    """The runs among ``run_ids`` that did not succeed for another reason than blocking DQ checks
    (``error``: the job's error text), and how many runs did not succeed at all."""
    out, unsuccessful = [], 0
    for record in instance.get_run_records(dg.RunsFilter(run_ids=run_ids)) if run_ids else []:
        run = record.dagster_run
        if run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        unsuccessful += 1
        if RANGE_START_TAG not in run.tags or _only_dq_blocked(instance, run.run_id):
            continue
        symbols = frozenset(run.tags[SYMBOLS_TAG].split(",")) if run.tags.get(SYMBOLS_TAG) else None
        market = CRYPTO if run.job_name == CRYPTO_PIPELINE_JOB else STOCKS
        start, end = dt.date.fromisoformat(run.tags[RANGE_START_TAG]), dt.date.fromisoformat(run.tags[RANGE_END_TAG])
        out.append(FailedRun(market, start, end, symbols, f"the refresh run {run.run_id} for {start} to {end} ended {run.status.value}: {error}"))
    return out, unsuccessful


def _failure(symbol: str, error: str) -> dict:
    return {"symbol": symbol, "success": False, "rows": 0, "date_range": None, "latest_price": None, "dq_blocked_days": 0, "error": error}


def symbol_result(
    symbol: str, market, start: dt.date, end: dt.date, interval: str, lake: ParquetLake, settings: PlatformSettings,
    run_failures: list[FailedRun] | None = None,
) -> dict:
    """``{symbol, success, rows, date_range, latest_price, dq_blocked_days}`` (+ ``error`` when it failed)."""
    expected = sessions_in_range(market, start, end)
    run_errors = [run.error for run in run_failures or [] if run.covers(symbol, market, expected)]
    missing = [d for d in expected if not lake.has_partition(CURATED_BARS, symbol, d)]
    blocked = [d for d in expected if d not in missing and is_blocked(lake, "curated_bars", symbol, d)]
    try:
        bars = get_curated_bars([symbol], start, end + dt.timedelta(days=1), frequency=interval, settings=settings)
    except NoDataError as error:
        return _failure(symbol, str(error))
    if bars.empty:
        return _failure(symbol, f"no curated bars between {start} and {end}")
    dates = bars["date"].astype(str).str[:10]
    out = {
        "symbol": symbol,
        "success": not missing and not run_errors,
        "rows": int(len(bars)),
        "date_range": f"{dates.min()} to {dates.max()}",
        "latest_price": round(float(bars["close"].iloc[-1]), 6),
        "dq_blocked_days": len(blocked),
    }
    problems = ([f"no curated bars for {len(missing)} day(s): " + ", ".join(d.isoformat() for d in missing[:10])] if missing else []) + run_errors
    if problems:
        out["error"] = "; ".join(problems)
    return out


def refresh_result(
    symbols: list[str], types: dict[str, str], start: dt.date, end: dt.date, interval: str, settings: PlatformSettings,
    run_failures: list[FailedRun] | None = None, job_error: str | None = None,
) -> dict:
    """``{success: [...], failed: [...], summary: {total_symbols, successful, failed, success_rate}}``;
    ``run_failures``: the job's runs that did not succeed; ``job_error``: the job failed as a whole
    (every symbol failed with it)."""
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    rows = [symbol_result(s, market_of(s, types), start, end, interval, lake, settings, run_failures) for s in symbols]
    if job_error:
        rows = [{**row, "success": False, "error": "; ".join(filter(None, [row.get("error"), job_error]))} for row in rows]
    success = [r for r in rows if r["success"]]
    failed = [r for r in rows if not r["success"]]
    rate = round(100.0 * len(success) / len(rows), 2) if rows else 0.0
    return {
        "success": success,
        "failed": failed,
        "summary": {"total_symbols": len(rows), "successful": len(success), "failed": len(failed), "success_rate": rate},
    }


class RefreshFailedError(RuntimeError):
    """A refresh job failed and no symbol succeeded: the HTTP guide's 500 ("Data refresh failed: ...")."""


def refresh_outcome(status, interval: str, instance: dg.DagsterInstance, settings: PlatformSettings) -> dict:
    """What a finished refresh job did, per symbol (``refresh_result`` with the job's failed runs
    applied); raises ``RefreshFailedError`` when the job failed and no symbol succeeded."""
    params = status.params
    start, end = dt.date.fromisoformat(params["start"]), dt.date.fromisoformat(params["end"])
    errors = "; ".join(status.summary.get("errors") or []) or "the refresh job failed"
    run_failures, unsuccessful = failed_runs(instance, status.run_ids, errors) if status.state == "FAILED" else ([], 0)
    job_error = f"the refresh job failed: {errors}" if status.state == "FAILED" and not unsuccessful else None  # failed outside its runs
    result = refresh_result(params["symbols"], asset_types(instance), start, end, interval, settings, run_failures, job_error)
    if status.state == "FAILED" and not result["success"]:
        raise RefreshFailedError(f"Data refresh failed: {errors}")
    return result
