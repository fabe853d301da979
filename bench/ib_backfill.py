"""IB 1-minute-bar backfill throughput: the strict policy (before) vs pacing by bar size (now).

    python -m bench.ib_backfill [--symbols 10] [--days 126]

The real ib_async client against the local TWS-protocol server with IB's documented limits
simulated (``FakeTws.simulate_limits``: the hard rules for bars of 30 s and less, at most 50 open
requests) and an answer time of ``1 s + 0.5 s per day`` of bars (not documented by IB; a cautious
guess: 10 days take 6 s). Time is scaled (``time_scale``: the server's rules and latencies and the
client's pacing windows all divided by it), so hours of IB time run in seconds; results are
symbol-days per simulated hour.

* strict (old): one-day pages, at most 60 requests per rolling 10 minutes, 2 open — scale 200; the
  run includes the first window's burst of 60, so it overstates the long-run 360 symbol-days/hour
  (the ratio is conservative);
* auto (new): 10-day pages, the adaptive limiter (6 open) — scale 50.

The answers carry ``bars_per_day`` (10) bars per day: the client's CPU time is real time, not
scaled, and parsing 390 bars per day would otherwise count 50-200 times over. The real cost of a
full day is measured separately (``parse ms per symbol-day``, one 10-day answer of 390-bar days
through ib_async) and is small against IB's answer time.

Target: >= 10x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import pandas as pd

from bench.common import Result, format_table

OLD_SCALE, NEW_SCALE = 200.0, 50.0
THIN_DAY = 10
YEAR_OF_500 = 500 * 252  # symbol-days in a 500-symbol year


def _measure(policy: str, symbols: list[str], days: list[dt.date], scale: float, bars_per_day: int = THIN_DAY) -> tuple[float, int, object]:
    """(symbol-days per simulated hour, symbol-days fetched, result) for one policy at ``scale``."""
    from platform_assets_tests.tws_server import FakeTws
    from resources.ib_source import IBSource

    server = FakeTws(known_symbols=set(symbols), fast_bars=True, simulate_limits=True, time_scale=scale,
                     latency_s=1.0 / scale, latency_per_day_s=0.5 / scale, bars_per_day=bars_per_day)
    try:
        source = IBSource(port=server.port, connect_timeout_s=10, pacing_policy=policy, pacing_window_s=600 / scale, identical_gap_s=15 / scale,
                          per_contract_window_s=2 / scale, pacing_backoff_s=2 / scale, pacing_max_backoff_s=60 / scale, base_delay_s=2 / scale)
        started = time.perf_counter()
        result = source.fetch_bars(symbols, days)
        elapsed = time.perf_counter() - started
    finally:
        server.close()
    if result.errors:
        raise RuntimeError(f"IB bench ({policy}) failed: {result.errors}")
    fetched = len(result.bars)
    if server.pacing_errors or fetched != len(symbols) * len(days):
        raise RuntimeError(f"IB bench ({policy}): {server.pacing_errors} pacing errors, {fetched} of {len(symbols) * len(days)} symbol-days")
    return fetched / (elapsed * scale / 3600), fetched, result


def _parse_cost(days: list[dt.date]) -> float:
    """Real seconds per symbol-day to fetch and parse full 390-bar days (no latency, no scaling)."""
    from platform_assets_tests.tws_server import FakeTws
    from resources.ib_source import IBSource

    server = FakeTws(known_symbols={"S000"}, fast_bars=True)
    try:
        source = IBSource(port=server.port, connect_timeout_s=10, identical_gap_s=0)
        started = time.perf_counter()
        result = source.fetch_bars(["S000"], days)
        return (time.perf_counter() - started) / max(1, len(result.bars))
    finally:
        server.close()


def run(symbols: int = 10, days: int = 126, old_symbols: int = 20, old_days: int = 9) -> list[Result]:
    trading = [d.date() for d in pd.bdate_range("2024-01-02", periods=400)]
    names = [f"S{i:03d}" for i in range(max(symbols, old_symbols))]
    old_rate, old_n, old = _measure("strict", names[:old_symbols], trading[:old_days], OLD_SCALE)
    new_rate, new_n, new = _measure("auto", names[:symbols], trading[:days], NEW_SCALE)
    parse_s = _parse_cost(trading[:8])
    note = (f"symbol-days per simulated hour: {new_rate:,.0f} now ({new_n} symbol-days in {new.requests} requests of up to 10 D, "
            f"peak {new.peak_open} open) vs {old_rate:,.0f} strict ({old_n} in {old.requests} one-day requests); "
            f"the 500-symbol year projected from each rate; a full 390-bar day costs {parse_s * 1000:.1f} ms to fetch and parse here")
    return [Result(what="IB 1-min backfill, 500 symbols x 1 year (simulated IB time)", ours_s=YEAR_OF_500 / new_rate * 3600,
                   baseline_s=YEAR_OF_500 / old_rate * 3600, baseline="strict 60/10 min, 1 D pages", rows=None, target=">= 10x", note=note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=126)
    args = parser.parse_args()
    print(format_table(run(symbols=args.symbols, days=args.days)))


if __name__ == "__main__":
    main()
