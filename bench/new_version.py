"""A new feature version over stored curated bars, at a larger symbol count than the whole-graph
bench can build (``bench.throughput`` stops at 30 symbols, its lake coming from the whole graph).

    python -m bench.new_version                         # 100 symbols x 64 sessions, 2 workers (~6 min)
    python -m bench.new_version --symbols 30 100 200 --days 64

One lake: curated bars built for every symbol (raw bars, L2 snapshots, curated bars only), then
bar_features v1+v2, then for each symbol count (first symbols of the list) v2 removed as if just
registered and the feature backfill re-run with keep-existing (``backfill_dataset``'s default),
which computes v2 alone; medians of 3 runs; then every version recomputed (an overwrite run) at the
smallest and the largest count. The rate between the smallest and the largest count (symbol-days
added / seconds added) and the 500 x 5 years extrapolation it gives (the rate alone, without the
per-run and per-date costs ``bench.throughput`` adds, ~0.4 min there).
"""

from __future__ import annotations

import argparse

from bench.backfill import END_DATE, _fresh_instance, trading_days_ending
from bench.bookkeeping import _symbols
from bench.common import Result, format_table, isolated_platform
from bench.throughput import NEW_VERSION_REPS, SCALE_SYMBOL_DAYS, _backfill, _new_version, marginal_rate

CURATED_INPUTS = ["raw_bars_sim", "l2_snapshots_sim", "curated_bars"]


def run(symbols: tuple[int, ...] = (30, 100), days: int = 64, workers: int = 2, reps: int = NEW_VERSION_REPS) -> list[Result]:
    from definitions import build_definitions
    from resources.settings import get_settings

    if len(symbols) < 2 or sorted(symbols) != list(symbols):
        raise ValueError(f"at least two growing symbol counts, got {symbols}")
    names, session_days = _symbols(symbols[-1]), trading_days_ending(END_DATE, days)
    results: list[Result] = []
    with isolated_platform() as root:
        settings = get_settings()
        defs = build_definitions(settings)
        instance = _fresh_instance(root)
        curated_s = _backfill(names, session_days, workers, asset_selection=CURATED_INPUTS, instance=instance, defs=defs)
        every_version_s = _backfill(names, session_days, workers, asset_selection=["bar_features"], instance=instance, defs=defs)
        n = len(names) * days
        results.append(Result(what=f"curated bars built, {symbols[-1]} sym x {days} days", ours_s=curated_s, rows=n * 390,
                              note="raw bars, L2 snapshots, curated bars (setup)"))
        results.append(Result(what=f"bar_features v1+v2 over stored curated, {n} symbol-days", ours_s=every_version_s, rows=n * 390 * 2,
                              note=f"{n / every_version_s:.0f} symbol-days/s; every version computed"))
        points = []
        for count in symbols:
            seconds = _new_version(names[:count], session_days, workers, instance, defs, settings, reps)
            points.append((count * days, seconds))
            results.append(Result(what=f"a new bar_features version (v2), {count} sym x {days} days", ours_s=seconds, rows=count * days * 390,
                                  note=f"median of {reps} runs; {count * days / seconds:.0f} symbol-days/s"))
        every = [(count * days, _backfill(names[:count], session_days, workers, asset_selection=["bar_features"], instance=instance, defs=defs))
                 for count in (symbols[0], symbols[-1])]  # overwrite: every version recomputed
    for label, measured, target in (("new version", points, "500 x 5 y < 15 min"), ("every version recomputed (v1+v2, one run each)", every, "")):
        rate = marginal_rate(measured[0], measured[-1])
        results.append(Result(
            what=f"{label}: rate {symbols[0]} -> {symbols[-1]} symbols", ours_s=measured[-1][1], target=target,
            note=f"{rate:.0f} symbol-days/s; 500 x 5 years at this rate: {SCALE_SYMBOL_DAYS / rate / 60:.1f} min (plus per-run and per-date costs)",
        ))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--days", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(format_table(run(tuple(args.symbols), args.days, args.workers)))


if __name__ == "__main__":
    main()
