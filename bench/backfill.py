"""Ranged backfill vs one run per (date, symbol) partition, through the whole offline graph.

    python -m bench.backfill                       # 5 symbols x 10 days side by side, then 20 x 60
    python -m bench.backfill --big-symbols 0       # only the side-by-side comparison

The baseline launches one Dagster run per (trading date, symbol) -- what a date x symbol
multi-partitioned asset with a per-partition backfill does. Ours is ``platform_api.backfill``:
contiguous date ranges, all symbols of a date in one run. Both run on a fresh SQLite instance and
lake, in this process, one after the other; the ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from bench.common import Result, format_table, isolated_platform

SYMBOLS = [
    "AAPL", "MSFT", "NVDA", "AMZN", "SPY", "GOOGL", "META", "TSLA", "JPM", "V",
    "XOM", "UNH", "JNJ", "WMT", "PG", "MA", "HD", "CVX", "KO", "PEP",
    "COST", "AVGO", "ADBE", "CRM", "NFLX", "AMD", "INTC", "CSCO", "ORCL", "QCOM",
]  # fmt: skip
END_DATE = dt.date(2024, 12, 6)


def trading_days_ending(end: dt.date, count: int) -> list[dt.date]:
    from platform_assets.calendars import STOCKS, sessions_in_range

    days = sessions_in_range(STOCKS, end - dt.timedelta(days=2 * count + 10), end)
    return days[-count:]


def _fresh_instance(root):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(root / "dagster_home"))


def time_ranged(symbols: list[str], days: list[dt.date], workers: int, adjust_plan=None) -> tuple[float, int]:
    """Wall time of the ranged backfill (seconds) and the number of runs it used, on a fresh lake and
    instance; ``adjust_plan`` (plan -> plan) changes the plan before it runs (a baseline's plan)."""
    from definitions import build_definitions
    from platform_api.backfill import plan_backfill, run_backfill
    from resources.settings import get_settings

    with isolated_platform() as root:
        defs = build_definitions(get_settings())
        instance = _fresh_instance(root)
        plan = plan_backfill(symbols, days[0], days[-1], min_chunks=workers)
        plan = adjust_plan(plan) if adjust_plan else plan
        started = time.perf_counter()
        report = run_backfill(instance, plan, defs=defs, add_missing_symbols=True, workers=workers)
        seconds = time.perf_counter() - started
        if not report.success:
            raise RuntimeError(f"ranged backfill failed: {[r.error for r in report.runs if not r.success]}")
        return seconds, len(report.runs)


def time_per_partition(symbols: list[str], days: list[dt.date]) -> tuple[float, int]:
    """Wall time of one run per (date, symbol) partition, sequentially on one instance."""
    from definitions import build_definitions
    from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG, _execute_chunk
    from platform_assets.automation.jobs import OFFLINE_PIPELINE_JOB
    from platform_assets.partitions import SYMBOLS_TAG
    from platform_assets.universe import add_symbols
    from resources.settings import get_settings

    with isolated_platform() as root:
        defs = build_definitions(get_settings())
        instance = _fresh_instance(root)
        add_symbols(instance, symbols)
        started = time.perf_counter()
        runs = 0
        for day in days:
            for symbol in symbols:
                tags = {RANGE_START_TAG: day.isoformat(), RANGE_END_TAG: day.isoformat(), SYMBOLS_TAG: symbol}
                outcome = _execute_chunk(instance, OFFLINE_PIPELINE_JOB, tags, "WARNING", defs)
                if not outcome.success:
                    raise RuntimeError(f"per-partition run {day} {symbol} failed: {outcome.error}")
                runs += 1
        return time.perf_counter() - started, runs


def _one_run_in_subprocess(day: dt.date, symbol: str) -> None:
    """One run in a fresh Python process, as Dagster's run launcher does for every run it starts."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "bench.backfill", "--one-run", day.isoformat(), symbol],
        env=os.environ.copy(), capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"per-partition subprocess run {day} {symbol} failed: {done.stderr[-2000:]}")


def _execute_one_run(day: str, symbol: str) -> None:
    import dagster as dg

    from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG, _execute_chunk
    from platform_assets.automation.jobs import OFFLINE_PIPELINE_JOB
    from platform_assets.partitions import SYMBOLS_TAG

    tags = {RANGE_START_TAG: day, RANGE_END_TAG: day, SYMBOLS_TAG: symbol}
    with dg.DagsterInstance.get() as instance:
        outcome = _execute_chunk(instance, OFFLINE_PIPELINE_JOB, tags, "WARNING")
    if not outcome.success:
        raise SystemExit(outcome.error)


def time_per_partition_subprocess(symbols: list[str], days: list[dt.date], sample: int) -> tuple[float, int, int]:
    """Seconds for one process-launched run per partition: (estimated total, measured runs, total runs).

    Measures ``sample`` partitions (all when ``sample`` <= 0) and scales to the full range.
    """
    from platform_assets.universe import add_symbols

    partitions = [(day, symbol) for day in days for symbol in symbols]
    measured = partitions if sample <= 0 else partitions[:sample]
    with isolated_platform() as root:
        with _fresh_instance(root) as instance:
            add_symbols(instance, symbols)
        started = time.perf_counter()
        for day, symbol in measured:
            _one_run_in_subprocess(day, symbol)
        seconds = time.perf_counter() - started
    return seconds * len(partitions) / len(measured), len(measured), len(partitions)


def time_ranged_subprocess(symbols: list[str], days: list[dt.date]) -> float:
    """The ranged backfill as one process-launched run (``mdp backfill`` in a fresh process)."""
    import os
    import subprocess
    import sys

    with isolated_platform():
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "platform_api.cli", "backfill", "--symbols", ",".join(symbols),
             "--start", days[0].isoformat(), "--end", (days[-1] + dt.timedelta(days=1)).isoformat()],
            env=os.environ.copy(), capture_output=True, text=True,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ranged subprocess backfill failed: {done.stderr[-2000:]}")
    return seconds


def run(symbols: int = 5, days: int = 10, big_symbols: int = 20, big_days: int = 60, workers: int = 2,
        subprocess_sample: int | None = 6) -> list[Result]:
    """Measure and return the table lines (printed by ``python -m bench``)."""
    results: list[Result] = []
    small_symbols, small_days = SYMBOLS[:symbols], trading_days_ending(END_DATE, days)
    per_partition_s, per_partition_runs = time_per_partition(small_symbols, small_days)
    ranged_s, ranged_runs = time_ranged(small_symbols, small_days, workers=1)
    results.append(
        Result(
            what=f"backfill {symbols} sym x {days} days, ranged (1 worker)",
            ours_s=ranged_s,
            baseline_s=per_partition_s,
            baseline=f"{per_partition_runs} runs, one per partition",
            rows=symbols * days * 390,
            target=">= 10x",
            note=f"ranged used {ranged_runs} run(s); rows = 1-min bars through 7 assets",
        )
    )
    if subprocess_sample is not None:
        estimated_s, measured, total = time_per_partition_subprocess(small_symbols, small_days, subprocess_sample)
        ranged_process_s = time_ranged_subprocess(small_symbols, small_days)
        results.append(
            Result(
                what=f"backfill {symbols} sym x {days} days, ranged, run in a new process",
                ours_s=ranged_process_s,
                baseline_s=estimated_s,
                baseline=f"{total} runs, each in a new process" + (f"; {measured} measured, scaled" if measured < total else ""),
                rows=symbols * days * 390,
                target=">= 10x",
                note="as Dagster's run launcher starts runs: one process per run (includes the CLI's summary)",
            )
        )
    if big_symbols and big_days:
        big_days_list = trading_days_ending(END_DATE, big_days)
        big_s, big_runs = time_ranged(SYMBOLS[:big_symbols], big_days_list, workers=workers)
        results.append(
            Result(
                what=f"backfill {big_symbols} sym x {big_days} days, ranged ({workers} workers)",
                ours_s=big_s,
                rows=big_symbols * big_days * 390,
                target="< 60 s",
                note=f"{big_runs} runs; {big_symbols * big_days} symbol-days through the whole graph",
            )
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--big-symbols", type=int, default=20)
    parser.add_argument("--big-days", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subprocess-sample", type=int, default=6,
                        help="process-launched baseline: partitions measured (0 = all; -1 = skip)")
    parser.add_argument("--one-run", nargs=2, metavar=("DATE", "SYMBOL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_run:
        _execute_one_run(*args.one_run)
        return
    sample = None if args.subprocess_sample < 0 else args.subprocess_sample
    print(format_table(run(args.symbols, args.days, args.big_symbols, args.big_days, args.workers, sample)))


if __name__ == "__main__":
    main()
