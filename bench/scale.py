"""Partition scale: 500 symbols x 5 years of XNYS sessions (~630k date x symbol combinations).

Generates only the partition keys (no data): registers the symbols in a fresh instance, then times
what users feel: loading the definitions, listing the date partitions, planning a full-range
backfill, and the daily schedule-style lookup of tracked symbols.
"""

from __future__ import annotations

import datetime as dt
import time

from bench.common import Result, format_table, isolated_platform


def run(symbols: int = 500, years: int = 5) -> list[Result]:
    import dagster as dg

    from definitions import build_definitions
    from platform_api.backfill import plan_backfill
    from platform_assets.partitions import trading_date_partitions
    from platform_assets.calendars import STOCKS
    from platform_assets.universe import add_symbols, tracked_symbols
    from resources.settings import get_settings

    names = [f"S{i:03d}" for i in range(symbols)]
    start = get_settings().partitions_start_date  # 2021-01-04 by default
    end = dt.date(start.year + years, 1, 1)
    results = []
    with isolated_platform() as root:
        with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
            t0 = time.perf_counter()
            add_symbols(instance, names)
            add_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            partitions = trading_date_partitions(STOCKS, start)
            keys = [k for k in partitions.get_partition_keys() if k < end.isoformat()]
            keys_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            defs = build_definitions(get_settings())
            defs.resolve_asset_graph()
            defs_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            plan = plan_backfill(names, keys[0], keys[-1])
            plan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            tracked = tracked_symbols(instance, STOCKS)
            tracked_s = time.perf_counter() - t0
            ticks = _tick_times(defs, instance)
            t0 = time.perf_counter()
            statuses = _asset_page(defs, instance)
            page_s = time.perf_counter() - t0
    combos = len(keys) * len(tracked)
    results += [
        Result(what=f"register {symbols} symbols (dynamic partitions)", ours_s=add_s),
        Result(what=f"list {len(keys)} XNYS date partition keys", ours_s=keys_s),
        Result(what=f"load Definitions ({combos:,} date x symbol combinations)", ours_s=defs_s, target="< 5 s"),
        Result(what=f"plan full-range backfill ({plan.partitions:,} symbol-days, {len(plan.runs)} runs)", ours_s=plan_s),
        Result(what=f"read the universe ({len(tracked)} symbols)", ours_s=tracked_s),
        Result(what=f"asset page data: partition keys + materialized status of curated_bars ({statuses} keys)", ours_s=page_s),
        *[Result(what=f"{name} tick ({len(tracked)} symbols)", ours_s=seconds) for name, seconds in ticks.items()],
    ]
    return results


def _tick_times(defs, instance) -> dict[str, float]:
    """One evaluation of each schedule and of the L2 file sensor against the full universe."""
    import dagster as dg

    repo = defs.get_repository_def()
    when = dt.datetime(2025, 12, 5, 17, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    out = {}
    for schedule in defs.schedules:
        # A context enters its own instance; closing it (with) restores Dagster's current defs-state storage.
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=repo, resources=defs.resources) as context:
            t0 = time.perf_counter()
            schedule.evaluate_tick(context)
            out[schedule.name] = time.perf_counter() - t0
    for sensor in [s for s in defs.sensors if not isinstance(s, dg.AutomationConditionSensorDefinition)]:  # automation: evaluated by the daemon
        with dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources) as context:
            t0 = time.perf_counter()
            sensor.evaluate_tick(context)
            out[sensor.name] = time.perf_counter() - t0
    return out


def _asset_page(defs, instance) -> int:
    """What the UI's asset page reads for a partitioned asset: its keys and materialized subset."""
    import dagster as dg

    asset = defs.resolve_assets_def("curated_bars")
    keys = asset.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    instance.get_materialized_partitions(dg.AssetKey("curated_bars"))
    return len(keys)


if __name__ == "__main__":
    print(format_table(run()))
