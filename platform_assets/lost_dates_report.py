"""Dagster status for dates a derived table lost to a quarantined file that no step re-computed.

The step that owns a table re-computes the dates it loses (``SymbolDayStep(heals=...)``). A loss
found by anyone else (a downstream step reading its input, the compaction job merging a corrupt
day file) cannot be re-computed there; it is reported instead, so the UI stops showing those dates
green: each lost (asset, date) gets a failing ``symbols_complete`` evaluation (ERROR) naming the
symbol and the quarantined file, recorded on its own partition. Re-running the date heals it (and
its next evaluation passes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import dagster as dg

from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.symbol_days import COMPLETE_CHECK
from platform_assets.universe import detect_asset_type
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake, feature_table, labels_table
from resources.lost_dates import LostDates

def asset_of(table: str, symbol: str) -> str | None:
    """The asset that writes lake table ``table`` for ``symbol`` (None: no symbol-day asset)."""
    if table == str(CURATED_BARS):
        return "crypto_curated_bars" if detect_asset_type(symbol) == "crypto" else "curated_bars"
    if table == str(ALIGNED_BARS):
        return "aligned_bars"
    for group, versions in FEATURE_GROUPS.items():
        if any(table == str(feature_table(group, version)) for version in versions):
            return group
    if any(table == str(labels_table(version)) for version in LABEL_DEFINITIONS):
        return "labels"
    return None


def report_lost_dates(instance: dg.DagsterInstance, lake: ParquetLake, log: Callable[[str], None] | None = None) -> list[LostDates]:
    """Take every loss this process recorded under ``lake`` and fail the completeness check of
    each lost (asset, date) in Dagster. A loss whose file's footer did not say which dates it held
    is reported on the month's dates Dagster has materialized. Returns the losses reported."""
    losses = lake.take_lost_dates(None)
    for lost in losses:
        asset = asset_of(lost.table, lost.symbol)
        if asset is None:
            continue
        key = dg.AssetKey(asset)
        days = lost.dates if lost.dates is not None else _materialized_in_month(instance, key, lost.month)
        if log:
            log(f"{lost.table} {lost.symbol}: {len(days)} date(s) of {lost.month} lost with the corrupt file moved to {lost.moved_to}; "
                f"{asset}'s completeness check now fails on them until they are re-run")
        for day in sorted(days):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=COMPLETE_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR, partition=day.isoformat(),
                metadata={
                    "date": day.isoformat(), "missing_symbols": 1,
                    "missing": f"{lost.symbol} (lost with the corrupt file moved to {lost.moved_to}; re-run this date)",
                },
            ))
    return losses


def _materialized_in_month(instance: dg.DagsterInstance, key: dg.AssetKey, month: str) -> set[dt.date]:
    days = set()
    for partition in instance.get_materialized_partitions(key):
        try:
            day = dt.date.fromisoformat(partition)
        except ValueError:
            continue
        if f"{day:%Y-%m}" == month:
            days.add(day)
    return days
