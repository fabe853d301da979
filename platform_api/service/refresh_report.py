"""What a refresh did, per symbol, in the HTTP guide's shape; and how long one is expected to take.

A symbol succeeded when every expected day of the window (XNYS sessions for stocks, UTC days for
crypto) has curated bars stored after the refresh. Days whose bars failed a blocking DQ error rule
are still stored (flagged, not fed to features): their count is our extra ``dq_blocked_days``.
``rows``, ``date_range`` and ``latest_price`` describe the bars of the requested ``interval``: the
curated 1-minute bars resampled to 1h or 1d by ``get_curated_bars(frequency=...)`` (so
``interval=1h`` really reports hourly bars: 7 per regular XNYS session, 24 per crypto day).
A failed symbol carries ``error`` (our extra) saying what is missing.
"""

from __future__ import annotations

import datetime as dt

from platform_api.errors import NoDataError
from platform_api.retrieval import get_curated_bars
from platform_assets.calendars import sessions_in_range
from platform_assets.quality.checks import is_blocked
from platform_assets.universe import market_of
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


def _failure(symbol: str, error: str) -> dict:
    return {"symbol": symbol, "success": False, "rows": 0, "date_range": None, "latest_price": None, "dq_blocked_days": 0, "error": error}


def symbol_result(symbol: str, market, start: dt.date, end: dt.date, interval: str, lake: ParquetLake, settings: PlatformSettings) -> dict:
    """``{symbol, success, rows, date_range, latest_price, dq_blocked_days}`` (+ ``error`` when it failed)."""
    expected = sessions_in_range(market, start, end)
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
        "success": not missing,
        "rows": int(len(bars)),
        "date_range": f"{dates.min()} to {dates.max()}",
        "latest_price": round(float(bars["close"].iloc[-1]), 6),
        "dq_blocked_days": len(blocked),
    }
    if missing:
        out["error"] = f"no curated bars for {len(missing)} day(s): " + ", ".join(d.isoformat() for d in missing[:10])
    return out


def refresh_result(symbols: list[str], types: dict[str, str], start: dt.date, end: dt.date, interval: str, settings: PlatformSettings) -> dict:
    """``{success: [...], failed: [...], summary: {total_symbols, successful, failed, success_rate}}``."""
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    rows = [symbol_result(s, market_of(s, types), start, end, interval, lake, settings) for s in symbols]
    success = [r for r in rows if r["success"]]
    failed = [r for r in rows if not r["success"]]
    rate = round(100.0 * len(success) / len(rows), 2) if rows else 0.0
    return {
        "success": success,
        "failed": failed,
        "summary": {"total_symbols": len(rows), "successful": len(success), "failed": len(failed), "success_rate": rate},
    }
