"""Throughput of the whole offline graph at two sizes: batched data path vs the per-date path, and
the machine's Parquet floor for the same bytes, all measured in one run.

    python -m bench.throughput                          # 10 x 60 and 20 x 60 symbol-days, 2 workers
    python -m bench.throughput --symbols 10 20 40 --days 120

For each size (symbols x trading days) on a fresh lake and Dagster instance:

* **ours**: the ranged backfill of the whole offline graph (raw -> DQ -> curated -> aligned ->
  features -> labels) with the batched data path (``LAKE_BATCH_WRITES=true``: one file per table,
  symbol and month per run step; bar features and labels computed over all of a symbol's sessions
  in one vectorised pass);
* **baseline**: the same backfill on the per-date path (``LAKE_BATCH_WRITES=false``: one Parquet
  file per table and symbol-day, one transform call per symbol-day), today's figures before this work;
* **floor**: every Parquet file the run left in the lake read into Arrow and written back as one
  file per table (pyarrow, same codec): the I/O the graph cannot avoid, on this machine;
* **feature versions over stored history**: only ``bar_features`` (both versions) re-computed over
  the stored curated bars, batched vs per-date; then **a new version**: v2 removed as if just
  registered and the feature backfill re-run with keep-existing (what ``backfill_dataset`` does by
  default), which computes v2 alone; the extrapolation to 500 symbols x 5 years (630,000
  symbol-days) at the measured rates.

* **daily run**: the whole graph for one session of 500 symbols (the daily ingestion), both paths.

The new-version extrapolation (``scale_minutes``) rests on runs on the largest size's lake, medians
of 3: a third, two thirds and all of its symbols (the rate: least-squares slope), all symbols over
half the days (the per-date cost) and in two runs per worker (the per-run cost).

Linearity: the seconds per symbol-day at the larger size over those at the smaller one (1.0 =
linear), and the marginal rate between the two sizes (symbol-days added / seconds added) with the
fixed cost per backfill it implies, which is what the 500 x 5 years extrapolation uses. The figures
are single runs on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.backfill import END_DATE, SYMBOLS, _fresh_instance, trading_days_ending
from bench.common import Result, format_table, isolated_platform

SCALE_DATES = 1260  # 5 years of sessions
SCALE_SYMBOL_DAYS = 500 * SCALE_DATES  # 500 symbols
NEW_VERSION_REPS = 3


@contextlib.contextmanager
def _batching(on: bool):
    from resources.settings import get_settings

    saved = os.environ.get("LAKE_BATCH_WRITES")
    os.environ["LAKE_BATCH_WRITES"] = "true" if on else "false"
    get_settings.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LAKE_BATCH_WRITES", None)
        else:
            os.environ["LAKE_BATCH_WRITES"] = saved
        get_settings.cache_clear()


def parquet_floor(lake_root: Path) -> tuple[float, int, int]:
    """Seconds to read every Parquet file under ``lake_root`` and write each table back as one file;
    also the number of files and their bytes."""
    import pyarrow.parquet as pq

    tables: dict[Path, list[Path]] = {}
    for path in lake_root.rglob("*.parquet"):
        parts = path.relative_to(lake_root).parts
        table_parts = [p for p in parts if not p.startswith(("symbol=", "date=", "month=", "batch-", "part."))]
        tables.setdefault(Path(*table_parts), []).append(path)
    files = sum(len(v) for v in tables.values())
    size = sum(p.stat().st_size for v in tables.values() for p in v)
    out = Path(tempfile.mkdtemp(prefix="mdp-floor-"))
    try:
        started = time.perf_counter()
        for index, (_, paths) in enumerate(sorted(tables.items())):
            read = [pq.read_table(p) for p in paths]
            import pyarrow as pa

            merged = pa.concat_tables(read, promote_options="default")
            pq.write_table(merged, out / f"table-{index}.parquet")
        return time.perf_counter() - started, files, size
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _backfill(symbols: list[str], days, workers: int, asset_selection: list[str] | None = None, instance=None, defs=None, tags=None,
              chunks: int | None = None, steps: dict[str, float] | None = None) -> float:
    """Seconds of the backfill; ``steps`` (when given) receives each asset step's seconds summed
    over the backfill's runs (from the runs' Dagster events)."""
    from platform_api.backfill import plan_backfill, run_backfill

    plan = plan_backfill(symbols, days[0], days[-1], min_chunks=chunks or workers)
    started = time.perf_counter()
    report = run_backfill(instance, plan, defs=defs, add_missing_symbols=True, workers=workers, asset_selection=asset_selection, extra_tags=tags)
    seconds = time.perf_counter() - started
    if not report.success:
        raise RuntimeError(f"backfill failed: {[r.error for r in report.runs if not r.success][:2]}")
    if steps is not None:
        for run in report.runs:
            for step, step_seconds in step_durations(instance, run.run_id).items():
                steps[step] = steps.get(step, 0.0) + step_seconds
    return seconds


def start_worker_server() -> float:
    """Start the backfill workers' preload server (``platform_api.backfill.worker_context``) before
    any timed backfill; returns its seconds. The first backfill of a process starts it (~3 s): left
    in the first size's time only, it made the marginal rate between the sizes look better than it
    is (sessions 15-18 up to their last run). Every timed backfill now finds it running; a process
    running one backfill (``mdp backfill``) pays it once, as reported beside the rates."""
    import concurrent.futures as cf

    from platform_api.backfill import worker_context

    started = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=worker_context()) as pool:
        pool.submit(os.getpid).result()  # returns once the server has imported its preload and forked a worker
    return time.perf_counter() - started


def step_durations(instance, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS of each step of a run."""
    started, out = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = record.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and event.step_key in started:
            out[event.step_key] = record.timestamp - started[event.step_key]
    return out


def measure(symbols: int, days: int, workers: int, batched: bool, scale_points: bool = False) -> dict:
    """Whole graph, then bar_features alone over the stored curated bars; floor on the batched lake;
    ``scale_points``: also the new-version runs the 500 x 5 years extrapolation rests on."""
    return _measure(SYMBOLS[:symbols], trading_days_ending(END_DATE, days), workers, batched, details=True, scale_points=scale_points)


def _measure(names: list[str], session_days, workers: int, batched: bool, details: bool, scale_points: bool = False) -> dict:
    from definitions import build_definitions
    from resources.settings import get_settings

    with isolated_platform() as root, _batching(batched):
        settings = get_settings()
        defs = build_definitions(settings)
        instance = _fresh_instance(root)
        steps: dict[str, float] = {}
        graph_s = _backfill(names, session_days, workers, instance=instance, defs=defs, steps=steps)
        if not details:
            return {"graph_s": graph_s, "steps": steps}
        features_s = _backfill(names, session_days, workers, asset_selection=["bar_features"], instance=instance, defs=defs)
        floor_s, files, size = parquet_floor(Path(settings.base_path) / "lake")
        reps = NEW_VERSION_REPS if batched else 1  # the baseline path is slow and only a ratio
        new_version_s = _new_version(names, session_days, workers, instance, defs, settings, reps)
        runs = None
        if scale_points:
            runs = _scale_runs(names, session_days, workers, instance, defs, settings, (len(names) * len(session_days), new_version_s))
    return {"graph_s": graph_s, "features_s": features_s, "new_version_s": new_version_s, "scale_runs": runs,
            "floor_s": floor_s, "files": files, "bytes": size, "steps": steps}


def _scale_runs(names: list[str], session_days, workers: int, instance, defs, settings, full: tuple[int, float]) -> "NewVersionRuns":
    """The new-version backfill on one lake at the points of the extrapolation (medians of
    NEW_VERSION_REPS runs): a third and two thirds of the symbols (``full``: all of them, measured),
    every symbol over the last half of the days, every symbol in two runs per worker."""
    by_symbols = []
    for share in (1 / 3, 2 / 3):
        subset = names[: max(1, round(len(names) * share))]
        by_symbols.append((len(subset) * len(session_days), _new_version(subset, session_days, workers, instance, defs, settings, NEW_VERSION_REPS)))
    half = session_days[len(session_days) // 2 :]
    return NewVersionRuns(
        by_symbols=[*by_symbols, full],
        days=len(session_days),
        half=(len(names) * len(half), _new_version(names, half, workers, instance, defs, settings, NEW_VERSION_REPS)),
        half_days=len(half),
        two_rounds=_new_version(names, session_days, workers, instance, defs, settings, NEW_VERSION_REPS, chunks=2 * workers),
    )


def _new_version(names: list[str], session_days, workers: int, instance, defs, settings, reps: int = 1, chunks: int | None = None) -> float:
    """A newly registered feature version over the stored history: ``bar_features`` v2 removed (as
    if just registered), then the feature backfill with keep-existing, which computes only v2.
    The median of ``reps`` runs: a run is ~10 s here, and the marginal rate between two sizes is a
    difference of two such runs, so one slow run would skew the extrapolation."""
    from platform_assets.run_options import KEEP_EXISTING_TAG
    from resources.lake import ParquetLake, feature_table

    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    seconds = []
    for _ in range(reps):
        shutil.rmtree(lake.table_dir(feature_table("bar_features", "v2")), ignore_errors=True)
        seconds.append(_backfill(names, session_days, workers, asset_selection=["bar_features"], instance=instance, defs=defs,
                                 tags={KEEP_EXISTING_TAG: "features"}, chunks=chunks))
    return statistics.median(seconds)


def _per_symbol_day(steps: dict[str, float], symbol_days: int) -> str:
    return ", ".join(f"{step} {seconds / symbol_days * 1000:.1f}" for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1]))


def marginal_rate(smaller: tuple[int, float], larger: tuple[int, float]) -> float:
    """Symbol-days added per second added between two (symbol-days, seconds) measurements."""
    (n1, t1), (n2, t2) = smaller, larger
    return (n2 - n1) / (t2 - t1) if t2 > t1 else float("inf")


@dataclass
class NewVersionRuns:
    """Median seconds of the new-version backfill on one lake, as (symbol-days, seconds)."""

    by_symbols: list[tuple[int, float]]  # growing symbol subsets, every day, one run per worker
    days: int
    half: tuple[int, float]  # every symbol, the last ``half_days`` days, one run per worker
    half_days: int
    two_rounds: float  # every symbol, every day, two runs per worker


def scale_minutes(runs: NewVersionRuns, workers: int) -> dict:
    """The 500 x 5 years extrapolation of the new-version backfill from measured runs.

    Model: seconds = start + rounds x per_round + dates x per_date + symbol_days / rate, where a
    round is one run per worker (a run covers at most MAX_DATES_PER_RUN dates: 500 x 5 years is
    20 runs, 10 rounds on 2 workers). The symbol subsets give the rate (least-squares slope; same
    dates and runs); the two date counts the per-date cost (Dagster's event-log records per date
    partition); one more run per worker the per-round cost (run start, resources, step
    bookkeeping); the rest is the start (process spawn, imports)."""
    import numpy as np

    from platform_assets.partitions import MAX_DATES_PER_RUN

    symbol_days, seconds = zip(*runs.by_symbols)
    slope = float(np.polyfit(symbol_days, seconds, 1)[0]) if len(set(symbol_days)) > 1 else 0.0
    rate = 1 / slope if slope > 0 else float("inf")
    (n_full, t_full), (n_half, t_half) = runs.by_symbols[-1], runs.half
    fixed_full, fixed_half = t_full - n_full / rate, t_half - n_half / rate
    per_date = max(0.0, (fixed_full - fixed_half) / (runs.days - runs.half_days))
    per_round = max(0.0, runs.two_rounds - t_full)
    start = max(0.0, fixed_full - runs.days * per_date - per_round)
    rounds = math.ceil(math.ceil(SCALE_DATES / MAX_DATES_PER_RUN) / workers)
    total = start + rounds * per_round + SCALE_DATES * per_date + SCALE_SYMBOL_DAYS / rate
    return {"rate": rate, "per_date": per_date, "per_round": per_round, "rounds": rounds, "start": start, "minutes": total / 60}


def daily_run(symbols: int, workers: int) -> Result:
    """The whole graph for one session of ``symbols`` symbols (the daily ingestion), both paths."""
    from bench.bookkeeping import _symbols

    names, day = _symbols(symbols), trading_days_ending(END_DATE, 1)
    new, old = _measure(names, day, workers, True, details=False), _measure(names, day, workers, False, details=False)
    return Result(
        what=f"daily run, whole graph, {symbols} symbols x 1 day ({workers} workers)", ours_s=new["graph_s"],
        baseline_s=old["graph_s"], baseline="per-date path", rows=symbols, target="< 60 s for 500 symbols",
        note=f"{symbols / new['graph_s']:.1f} symbol-days/s; one date per symbol: steps write directly, as the per-date path (rows/s = symbol-days/s)",
    )


def run(sizes: tuple[int, ...] = (10, 20), days: int = 60, workers: int = 2, daily_symbols: int = 500) -> list[Result]:
    results: list[Result] = []
    if max(sizes) > len(SYMBOLS):
        raise ValueError(f"at most {len(SYMBOLS)} symbols (bench.backfill.SYMBOLS); asked for {max(sizes)}")
    per_symbol_day: list[float] = []
    measured: dict[str, list[tuple[int, float]]] = {"graph_s": [], "features_s": [], "new_version_s": []}
    server_s = start_worker_server() if workers > 1 else 0.0
    for symbols in sizes:
        n = symbols * days
        new, old = measure(symbols, days, workers, True, scale_points=symbols == sizes[-1]), measure(symbols, days, workers, False)
        for key in measured:
            measured[key].append((n, new[key]))
        per_symbol_day.append(new["graph_s"] / n)
        results.append(Result(
            what=f"whole graph {symbols} sym x {days} days ({n} symbol-days, {workers} workers)",
            ours_s=new["graph_s"], baseline_s=old["graph_s"], baseline="per-date path",
            rows=n * 390, target=">= 10x, >= 175 symbol-days/s",
            note=(f"{n / new['graph_s']:.1f} symbol-days/s (per-date path {n / old['graph_s']:.1f}); lake files "
                  f"{new['files']} vs {old['files']}; 500 x 5 years at this rate: {SCALE_SYMBOL_DAYS / (n / new['graph_s']) / 3600:.1f} h; "
                  f"asset steps, summed over the runs (ms per symbol-day): {_per_symbol_day(new['steps'], n)}"),
        ))
        results.append(Result(
            what=f"  Parquet I/O floor, same bytes ({new['bytes'] / 1e6:.0f} MB, {new['files']} files)",
            ours_s=new["floor_s"], baseline_s=new["graph_s"], baseline="whole graph, batched",
            target="graph <= 3x floor", note="read every lake file, write one file per table; ratio = graph / floor",
        ))
        results.append(Result(
            what=f"  bar_features v1+v2 over stored curated, {n} symbol-days",
            ours_s=new["features_s"], baseline_s=old["features_s"], baseline="per-date path",
            rows=n * 390 * 2, target="",
            note=f"{n / new['features_s']:.0f} symbol-days/s; every version recomputed (overwrite)",
        ))
        results.append(Result(
            what=f"  a new bar_features version (v2) over stored history, {n} symbol-days",
            ours_s=new["new_version_s"], baseline_s=old["new_version_s"], baseline="per-date path",
            rows=n * 390, target="500 x 5 y < 15 min",
            note=(f"{n / new['new_version_s']:.0f} symbol-days/s; keep-existing: only the missing version computed; "
                  f"500 x 5 years at this rate: {SCALE_SYMBOL_DAYS / (n / new['new_version_s']) / 60:.0f} min"),
        ))
    if len(per_symbol_day) >= 2:
        for label, key in (("whole graph", "graph_s"), ("bar_features v1+v2 over stored curated", "features_s")):
            (n1, t1), (n2, t2) = measured[key][0], measured[key][-1]
            marginal = marginal_rate(measured[key][0], measured[key][-1])
            fixed = t1 - n1 / marginal
            results.append(Result(
                what=f"{label}: marginal rate between the sizes", ours_s=t2, target="",
                note=(f"{marginal:.0f} symbol-days/s beyond a fixed {fixed:.1f} s per backfill (run processes, imports, "
                      f"run bookkeeping; the workers' preload server, started once per process before the timed runs: "
                      f"{server_s:.1f} s); 500 x 5 years: {(server_s + fixed + SCALE_SYMBOL_DAYS / marginal) / 60:.0f} min"),
            ))
        results.append(Result(
            what=f"linearity {sizes[0]} -> {sizes[-1]} symbols (s per symbol-day, larger / smaller)",
            ours_s=per_symbol_day[-1] * sizes[-1] * days, baseline_s=per_symbol_day[0] * sizes[-1] * days,
            baseline=f"{sizes[0]}-symbol rate scaled", target="~1.0x",
            note=f"{per_symbol_day[0] * 1000:.1f} ms -> {per_symbol_day[-1] * 1000:.1f} ms per symbol-day",
        ))
    runs = new["scale_runs"]
    scale = scale_minutes(runs, workers)
    points = ", ".join(f"{n // days} x {days}: {t:.2f} s" for n, t in runs.by_symbols)
    results.append(Result(
        what="a new bar_features version: 500 x 5 years extrapolated", ours_s=runs.by_symbols[-1][1], target="< 15 min",
        note=(f"{scale['minutes']:.1f} min = {scale['start']:.1f} s start + {scale['rounds']} rounds of runs x {scale['per_round']:.1f} s "
              f"+ {SCALE_DATES} dates x {scale['per_date'] * 1000:.0f} ms + {SCALE_SYMBOL_DAYS} symbol-days at {scale['rate']:.0f}/s; "
              f"medians of {NEW_VERSION_REPS} runs on the {sizes[-1]}-symbol lake (symbols x days: {points}; "
              f"{sizes[-1]} x {runs.half_days}: {runs.half[1]:.2f} s; {sizes[-1]} x {days} in two runs per worker: {runs.two_rounds:.2f} s)"),
    ))
    if daily_symbols:
        results.append(daily_run(daily_symbols, workers))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--daily-symbols", type=int, default=500, help="symbols of the one-day whole-graph run (0: skip)")
    args = parser.parse_args(argv)
    print(format_table(run(tuple(args.symbols), args.days, args.workers, args.daily_symbols)))


if __name__ == "__main__":
    main()
