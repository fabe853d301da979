"""Data-quality cost: per-partition rule time (GX vs vectorised) and the checks' share of a curated run.

    python -m bench.dq_overhead [--symbols 20] [--days 60] [--repeat 3]

1. The curated_bars rule set on one partition of 390 rows and on a 100k-row frame, through the
   Great Expectations engine and through the plain vectorised engine (same results, tested).
2. The curated_bars asset over ``symbols`` x ``days`` (raw + L2 materialized once), run with the
   DQ checks (GX engine, the default) and with an empty rule file (no checks): the checks' share of
   the asset's run time. Target: under 10%.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import pandas as pd

from bench.common import Result, format_table, isolated_platform, median_time

END_DATE = dt.date(2024, 12, 6)


def _curated_partition(symbol: str, day: dt.date) -> tuple[pd.DataFrame, dict]:
    from platform_assets.calendars import STOCKS, session_minutes
    from platform_assets.curation.gap_engine import curate_bars
    from resources.sim_market import simulate_day

    sim = simulate_day(7, symbol, day)
    curated, stats, _ = curate_bars(sim.bars, session_minutes(STOCKS, day), symbol=symbol, day=day, source="sim")
    return curated, stats.as_dict()


def _per_partition(repeat: int) -> list[Result]:
    from platform_assets.quality.config import default_rule_sets
    from platform_assets.quality.engine import batch_from_frames, evaluate

    rules = default_rule_sets()["curated_bars"]
    one, stats = _curated_partition("AAPL", END_DATE)
    # 100k rows: 257 sessions of one symbol, evaluated as one frame (one partition per session)
    from bench.backfill import trading_days_ending

    days = trading_days_ending(END_DATE, 257)
    frames, keys, all_stats = [], [], []
    for day in days:
        shift = pd.Timestamp(day) - pd.Timestamp(END_DATE)
        frames.append(one.assign(date=day, ts=one["ts"] + shift))
        keys.append(("AAPL", day))
        all_stats.append(stats)
    small = batch_from_frames([one], [("AAPL", END_DATE)], None, [stats])
    large = batch_from_frames(frames, keys, None, all_stats)
    evaluate(rules, small, "gx")  # warm up: GX import and context
    out = []
    for label, batch in (("390 rows", small), (f"{len(large.frame):,} rows", large)):
        gx = median_time(lambda: evaluate(rules, batch, "gx"), repeat)
        vec = median_time(lambda: evaluate(rules, batch, "vectorised"), repeat)
        out.append(
            Result(f"DQ curated rules, {label}: vectorised vs GX", vec, gx, "GX 1.x engine", rows=len(batch.frame),
                   note=f"{len(rules.rules)} rules; GX runs the {sum(r.runs_in_gx for r in rules.rules)} with an expectation")
        )
    return out


def _curated_run_share(symbols: int, days: int, repeat: int) -> Result:
    from bench.backfill import trading_days_ending
    from definitions import build_definitions
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_assets.quality.checks import DataQuality
    from resources.settings import get_settings

    day_list = trading_days_ending(END_DATE, days)
    names = [f"S{i:03d}" for i in range(symbols)]
    with isolated_platform() as root:
        import dagster as dg

        empty_rules = root / "no_rules.yaml"  # removed with the isolated platform
        empty_rules.write_text("version: 1\ndatasets: {}\n")
        settings = get_settings()
        plan = plan_backfill(names, day_list[0], day_list[-1])
        with dg.DagsterInstance.get() as instance:
            base = build_definitions(settings)
            run_backfill(instance, plan, defs=base, add_missing_symbols=True, asset_selection=["raw_bars_sim", "l2_snapshots_sim"])

            def defs_with(quality: DataQuality) -> dg.Definitions:
                return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs,
                                      resources={**base.resources, "data_quality": quality}, executor=dg.in_process_executor)

            with_checks = defs_with(DataQuality(engine="gx"))
            without = defs_with(DataQuality(rules_file=str(empty_rules)))

            def curated(defs):
                report = run_backfill(instance, plan, defs=defs, asset_selection=["curated_bars"])
                assert report.success, [r.error for r in report.runs]

            curated(with_checks)  # warm up (GX import, file cache)
            ours = median_time(lambda: curated(with_checks), repeat)
            baseline = median_time(lambda: curated(without), repeat)
    share = (ours - baseline) / baseline * 100
    return Result(
        f"curated_bars {symbols} sym x {days} days: with DQ checks vs none", ours, baseline, "no rules",
        rows=symbols * days * 390, target="checks < 10% of the run",
        note=f"checks add {share:+.1f}% to the curated_bars run ({ours:.2f} s vs {baseline:.2f} s; {root.name})",
    )


def run(symbols: int = 20, days: int = 60, repeat: int = 2) -> list[Result]:
    return _per_partition(repeat) + [_curated_run_share(symbols, days, repeat)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    print(format_table(run(args.symbols, args.days, args.repeat)))
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
