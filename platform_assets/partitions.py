"""Partitions of the asset graph.

Design (measured on dagster 1.13 with the SQLite instance, see README "Partitioning"):

* Time-series assets are partitioned by **trading date** only. The date partitions follow the XNYS
  calendar exactly: a weekday cron with every XNYS holiday and ad-hoc closure excluded, so the
  partition keys are the exchange's sessions (half days included, holidays absent).
* **Symbols are dynamic partitions** (``symbols``) held in the Dagster instance: the tracked
  universe, added and removed at run time without a deploy. Per-symbol reference assets are
  partitioned by them; a date partition of a time-series asset holds every tracked symbol (or the
  subset named by the ``platform/symbols`` run tag), one Parquet file per (symbol, date).

Why not a date x symbol ``MultiPartitionsDefinition``: Dagster writes two event-log records per
partition key and asset (planned + materialized), ~12 ms each on SQLite here, so 20 symbols x 60
days x 7 assets spends ~170 s in bookkeeping, and a ranged backfill of a multi-partitioned asset is
split into one run per symbol. Date-only partitions cost 60 x 7 keys for the same work, a date range
runs as one run (``BackfillPolicy``), and 500 symbols x 5 years is ~1,260 keys per asset instead of
630k.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

from platform_assets.calendars import CRYPTO, STOCKS, Market, holidays_between
from resources.settings import get_settings

SYMBOLS_PARTITION_NAME = "symbols"
SYMBOLS_TAG = "platform/symbols"
SYMBOL_GROUP_TAG = "platform/symbol_group"  # "k/n": the run is symbol group k of n of a backfill split by symbols
# Dagster's tags for a ranged run of date partitions (what a backfill with a BackfillPolicy sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
MAX_DATES_PER_RUN = 64

symbols_partitions = dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITION_NAME)


def trading_date_partitions(market: Market, start: dt.date) -> dg.TimeWindowPartitionsDefinition:
    """Daily partitions whose keys are exactly the market's trading sessions (``YYYY-MM-DD``)."""
    if market.calendar_name == "24/7":
        return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)
    horizon = (pd.Timestamp.today() + pd.Timedelta(days=370)).date()
    closures = [dt.datetime.combine(day, dt.time()) for day in holidays_between(market, start, horizon)]
    return dg.TimeWindowPartitionsDefinition(
        start=start.isoformat(),
        fmt="%Y-%m-%d",
        cron_schedule="0 0 * * 1-5",
        timezone=market.timezone,
        end_offset=1,
        exclusions=closures,
    )


stock_date_partitions = trading_date_partitions(STOCKS, get_settings().partitions_start_date)
crypto_date_partitions = trading_date_partitions(CRYPTO, get_settings().partitions_start_date)


def date_partitions_of(market: Market) -> dg.TimeWindowPartitionsDefinition:
    return crypto_date_partitions if market == CRYPTO else stock_date_partitions


def market_of_asset(asset: str) -> Market:
    """The market whose dates partition ``asset`` (the crypto assets' names start with ``crypto_``)."""
    return CRYPTO if asset.startswith("crypto_") else STOCKS


def last_partition_date(market: Market) -> dt.date:
    """The newest date partition of ``market`` now (today's session once its day has begun in the
    market's time zone)."""
    return dt.date.fromisoformat(date_partitions_of(market).get_last_partition_key())

# A ranged backfill materializes a date range in as few runs as possible; the cap bounds the memory
# and the blast radius of one run (64 dates x 500 symbols of 1-min bars is ~12.5M rows streamed).
ranged_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DATES_PER_RUN)


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The trading dates a (possibly ranged) run of a date-partitioned asset covers."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def follow_upstream() -> dg.AutomationCondition:
    """Derived assets follow their upstream automatically (the default automation sensor, running
    under ``make ui``): a newly updated upstream partition of the latest day requests the same
    partition here, once, unless a run of it is already in progress. Sources are alternatives
    (sim, Databento, IB), so a never-materialized source does not hold the others back: the
    condition is ``eager()``'s parts minus "no dependency missing", waiting only when every
    dependency is missing. Blocked (symbol, date) partitions are skipped by the assets themselves
    (DQ gating), so warnings never stop the automation. Older days are refreshed by ranged runs
    of the whole graph (schedules, backfills)."""
    ac = dg.AutomationCondition
    every_dep_missing = ac.all_deps_match(ac.missing() & ~ac.will_be_requested())
    return (
        ac.in_latest_time_window()
        & (ac.newly_missing() | ac.any_deps_updated()).since_last_handled()
        & ~every_dep_missing
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
    ).with_label("eager, any source")


def materialized_dates(instance: dg.DagsterInstance, asset_key: dg.AssetKey, month: str | None = None) -> set[dt.date]:
    """The date partitions of ``asset_key`` Dagster has materialized (of ``month``, YYYY-MM, when given)."""
    days = set()
    for key in instance.get_materialized_partitions(asset_key):
        try:
            day = dt.date.fromisoformat(key)
        except ValueError:
            continue
        if month is None or f"{day:%Y-%m}" == month:
            days.add(day)
    return days
