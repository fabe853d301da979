"""Dagster bookkeeping as a share of a run: a 500-symbol daily run and a 50-symbol backfill.

    python -m bench.bookkeeping                                  # 500 x 1 daily run, 50 x 60 backfill
    python -m bench.bookkeeping --backfill-days 250              # the issue's 50 x 250 (about 10 min)

"Bookkeeping" is the wall time spent writing Dagster's event log and run records (every event a
run writes goes through ``DagsterInstance.handle_new_event``: planned and materialized partitions,
check evaluations, step events, logs), measured by timing that method on the real SQLite instance
while the whole offline graph runs in this process. The rest of the run is data work (simulator,
Parquet, transforms, DQ). Target: bookkeeping under 10% of each run.
"""

from __future__ import annotations

import argparse
import time

from bench.backfill import SYMBOLS, END_DATE, trading_days_ending
from bench.common import Result, format_table, isolated_platform


def _symbols(count: int) -> list[str]:
    base = list(SYMBOLS)
    extra = [f"S{i:03d}" for i in range(max(0, count - len(base)))]  # the simulator makes any valid symbol
    return (base + extra)[:count]


def measure(symbols: list[str], days) -> tuple[float, float, int]:
    """(run wall seconds, seconds inside event-log writes, events written) for one ranged backfill."""
    from definitions import build_definitions
    from platform_api.backfill import plan_backfill, run_backfill
    from resources.settings import get_settings

    import dagster as dg

    with isolated_platform() as root:
        defs = build_definitions(get_settings())
        instance = dg.DagsterInstance.from_config(str(root / "dagster_home"))
        original = instance.handle_new_event
        spent = {"s": 0.0, "n": 0}

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent["s"] += time.perf_counter() - started
                spent["n"] += 1

        instance.handle_new_event = timed  # type: ignore[method-assign]
        plan = plan_backfill(symbols, days[0], days[-1])
        started = time.perf_counter()
        report = run_backfill(instance, plan, defs=defs, add_missing_symbols=True, workers=1)
        wall = time.perf_counter() - started
        if not report.success:
            raise RuntimeError(f"backfill failed: {[r.error for r in report.runs if not r.success]}")
        return wall, spent["s"], spent["n"]


def run(daily_symbols: int = 500, backfill_symbols: int = 50, backfill_days: int = 60) -> list[Result]:
    results = []
    for label, symbols, days in (
        (f"daily run {daily_symbols} symbols x 1 day, whole graph", _symbols(daily_symbols), trading_days_ending(END_DATE, 1)),
        (f"backfill {backfill_symbols} symbols x {backfill_days} days, whole graph", _symbols(backfill_symbols), trading_days_ending(END_DATE, backfill_days)),
    ):
        wall, book, events = measure(symbols, days)
        share = book / wall
        results.append(
            Result(
                what=f"{label}: Dagster bookkeeping share",
                ours_s=wall,
                rows=len(symbols) * len(days),
                target="bookkeeping < 10%",
                note=f"{book:.2f} s of {wall:.2f} s in event-log writes ({events} events) = {share:.1%}; data work {wall - book:.2f} s; rows/s column = symbol-days/s",
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daily-symbols", type=int, default=500)
    parser.add_argument("--backfill-symbols", type=int, default=50)
    parser.add_argument("--backfill-days", type=int, default=60)
    args = parser.parse_args()
    print(format_table(run(args.daily_symbols, args.backfill_symbols, args.backfill_days)))


if __name__ == "__main__":
    main()
