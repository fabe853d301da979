"""How long a backfill's workers take to be ready, and what splitting a daily run by symbols buys.

    python -m bench.worker_start                      # pools of 2, a daily run of 500 symbols
    python -m bench.worker_start --daily-symbols 100

Rows (one process, each measured once, in this order):

* **worker pool ready**: a pool of ``workers`` processes each loading what a run worker loads
  before its first step (the platform's definitions and the GX engine): spawned (the start method
  before session 14) against forked from the preload server (``platform_api.backfill.worker_context``)
  for the first backfill of a process (the server starts) and for a later one.
* **daily run**: the whole graph for one session of N symbols on 2 workers, split into symbol groups
  (what ``plan_backfill`` does when there are fewer date chunks than workers) against the same plan
  as one run (the plan before session 14), each on a fresh lake and instance.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import multiprocessing
import time

from bench.backfill import END_DATE, time_ranged, trading_days_ending
from bench.common import Result, format_table


def load_like_a_run_worker(_: int) -> int:
    """What a run worker loads before its first step: the definitions and the GX engine."""
    import os

    import definitions  # noqa: F401
    from platform_assets.quality.gx_engine import gx_runner

    gx_runner()
    return os.getpid()


def pool_ready_seconds(context, workers: int) -> float:
    started = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        list(pool.map(load_like_a_run_worker, range(workers)))
    return time.perf_counter() - started


def worker_rows(workers: int) -> list[Result]:
    from platform_api.backfill import worker_context

    spawned = pool_ready_seconds(multiprocessing.get_context("spawn"), workers)
    first = pool_ready_seconds(worker_context(), workers)
    later = pool_ready_seconds(worker_context(), workers)
    return [
        Result(what=f"{workers} backfill workers ready, first backfill of a process: preload server vs spawned",
               ours_s=first, baseline_s=spawned, baseline="spawned", note="the server imports the libraries once, then forks"),
        Result(what=f"{workers} backfill workers ready, a later backfill: preload server vs spawned",
               ours_s=later, baseline_s=spawned, baseline="spawned", note="the libraries are loaded; each worker imports the platform's modules (~0.7 s)"),
    ]


def _one_run(plan):
    """The plan before session 14: every symbol in one run per date chunk."""
    return dataclasses.replace(plan, symbol_groups=None)


def daily_row(symbols: int, workers: int) -> Result:
    from bench.bookkeeping import _symbols
    from platform_assets.quality.gx_engine import gx_runner

    gx_runner()  # the one-run baseline runs in this process: GX loaded beforehand, as in the workers
    names = _symbols(symbols)
    day = trading_days_ending(END_DATE, 1)
    split_s, runs = time_ranged(names, day, workers)
    one_s, _ = time_ranged(names, day, workers, adjust_plan=_one_run)
    return Result(
        what=f"daily run, whole graph, {symbols} symbols x 1 day, {workers} workers: split by symbols vs one run",
        ours_s=split_s, baseline_s=one_s, baseline="one run", rows=symbols, target="< 60 s for 500 symbols",
        note=f"{runs} runs of symbol groups; {symbols / split_s:.1f} symbol-days/s (one run: {symbols / one_s:.1f})",
    )


def run(workers: int = 2, daily_symbols: int = 500) -> list[Result]:
    results = worker_rows(workers)
    if daily_symbols:
        results.append(daily_row(daily_symbols, workers))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--daily-symbols", type=int, default=500, help="symbols of the daily-run rows (0: skip)")
    args = parser.parse_args(argv)
    print(format_table(run(args.workers, args.daily_symbols)))


if __name__ == "__main__":
    main()
