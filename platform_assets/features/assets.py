"""Versioned feature groups and labels."""

import datetime as dt
from collections import Counter

import dagster as dg
import pandas as pd

from platform_assets.calendars import STOCKS, elapsed_session_minutes
from platform_assets.curation.assets import curated_bars
from platform_assets.features.labels import LABEL_DEFINITIONS, compute_labels, compute_labels_many
from platform_assets.features.registry import FEATURE_GROUPS, curated_columns_of
from platform_assets.ingestion.assets import L2_DQ_DATASET, l2_snapshots_sim
from platform_assets.ingestion.databento_assets import l2_snapshots_databento
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions, follow_upstream
from platform_assets.quality.checks import DataQuality, QualityRecorder, check_groups, dq_check_specs, dq_tables, is_blocked
from platform_assets.curated_input import curated_day, curated_days, rows_of_dates, write_by_date
from platform_assets.run_options import keep_existing, versions_to_compute_by_day, versions_to_compute_on
from platform_assets.symbol_days import Outcome, StepEvents, SymbolDayStep, blocked, complete_check_spec, kept, no_input, written
from platform_assets.universe import run_symbols, tracked_symbols
from resources.l2_store import L2DayIndex, L2SnapshotStore
from resources.lake import ParquetLake, feature_table, labels_table

BAR_GROUP, L2_GROUP = "bar_features", "l2_features"
BAR_DQ_CHECKS = dq_check_specs("bar_features", BAR_GROUP)
L2_FEATURE_DQ_CHECKS = dq_check_specs("l2_features", L2_GROUP)
LABEL_DQ_CHECKS = dq_check_specs("labels", "labels")


def _versions(group: str) -> str:
    return ", ".join(sorted(FEATURE_GROUPS[group]))


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="features",
    kinds={"parquet", "pandas"},
    deps=[curated_bars],
    metadata={"feature_group": BAR_GROUP, "versions": _versions(BAR_GROUP)},
    check_specs=[complete_check_spec(BAR_GROUP, stock_date_partitions), *BAR_DQ_CHECKS],
)
def bar_features(context: dg.AssetExecutionContext, lake: ParquetLake, data_quality: DataQuality) -> StepEvents:
    """Feature group ``bar_features`` (every registered version: v1, v2) from curated bars.

    v1: 1-min log return, trailing mean and volatility of returns over 5/20/60 bars, return lags
    1/5/10, log volume and volume ratio to its 20-bar mean. Windows reset each session and use only
    bars at or before ``ts`` (no look-ahead); ``available_ts = ts + 1 min``. Each version is its own
    table (``lake/features/bar_features/version=v1``), one file per (symbol, date); the rows carry
    feature_group and feature_version. The ``bar_features`` DQ rules run on every version as the
    ``dq_*`` checks; a (symbol, date) whose curated bars failed an error rule is skipped.
    Partitioned by trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    versions = FEATURE_GROUPS[BAR_GROUP]
    keep = keep_existing(context, "features")
    quality = {v: data_quality.recorder(lake, BAR_GROUP, stored_as=f"{BAR_GROUP}_{v}", asset_key="bar_features") for v in versions}

    def stored(symbol: str, day: dt.date) -> bool:
        return all(lake.has_partition(feature_table(BAR_GROUP, v), symbol, day) for v in versions)

    def table_of(version: str):
        return feature_table(BAR_GROUP, version)

    def compute(symbol: str, day: dt.date) -> Outcome:
        todo = versions_to_compute_on(lake, table_of, versions, keep, symbol, day)
        if not todo:
            return kept()
        bars = curated_day(lake, symbol, day)
        if isinstance(bars, Outcome):
            return bars
        rows = 0
        for version in todo:
            features = versions[version].compute(bars).assign(feature_group=BAR_GROUP, feature_version=version)
            lake.write_partition(feature_table(BAR_GROUP, version), symbol, day, features)
            quality[version].add(symbol, day, features)
            rows += len(features)
        return written(rows)

    def compute_days(symbol: str, days: list[dt.date]) -> dict[dt.date, Outcome]:
        todo = versions_to_compute_by_day(lake, table_of, versions, keep, symbol, days)
        columns = curated_columns_of(spec for v, spec in versions.items() if any(v in t for t in todo.values()))  # only what they read
        bars, outcomes = curated_days(lake, symbol, days, is_kept=lambda day: not todo[day], columns=columns)
        rows: Counter = Counter()
        if len(bars):
            for version, spec in versions.items():
                sessions = rows_of_dates(bars, [day for day in days if version in todo[day]])  # a new version: only where it is missing
                if len(sessions):
                    features = spec.compute_sessions(sessions).assign(feature_group=BAR_GROUP, feature_version=version)
                    rows.update(write_by_date(lake, feature_table(BAR_GROUP, version), symbol, features, quality[version]))
        return {**outcomes, **{day: written(n) for day, n in rows.items()}}

    step = SymbolDayStep(
        context, "bar_features", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS), is_stored=stored, lake=lake, quality=quality.values(),
        heals=[*(table_of(v) for v in versions), *(t for v in versions for t in dq_tables(f"{BAR_GROUP}_{v}"))],
    )
    step = step.run_by_symbol(compute_days, compute)
    yield from step.finish(QualityRecorder.merged(list(quality.values())).finish(check_groups(BAR_DQ_CHECKS)))


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="features",
    kinds={"parquet", "pandas"},
    deps=[l2_snapshots_sim, l2_snapshots_databento],
    metadata={"feature_group": L2_GROUP, "versions": _versions(L2_GROUP)},
    check_specs=[complete_check_spec(L2_GROUP, stock_date_partitions), *L2_FEATURE_DQ_CHECKS],
)
def l2_features(
    context: dg.AssetExecutionContext, lake: ParquetLake, l2_store: L2SnapshotStore, data_quality: DataQuality
) -> StepEvents:
    """Feature group ``l2_features`` (every registered version: v1, v2) from L2 snapshots.

    v1, one row per session minute: spread_bps, imbalance_1, imbalance_10, microprice_offset_bps,
    bid/ask depth over 10 levels, non-empty level counts and the snapshot age, all as of the last
    snapshot strictly before the bar end (no look-ahead). Minutes without a usable snapshot are
    NaN. Table ``lake/features/l2_features/version=v1``, one file per (symbol, date). The
    ``l2_features`` DQ rules run as the ``dq_*`` checks; a day whose L2 snapshots failed an error
    rule is skipped. Partitioned by trading date.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    versions = FEATURE_GROUPS[L2_GROUP]
    keep = keep_existing(context, "features")
    quality = {v: data_quality.recorder(lake, L2_GROUP, stored_as=f"{L2_GROUP}_{v}", asset_key="l2_features") for v in versions}

    def stored(symbol: str, day: dt.date) -> bool:
        return all(lake.has_partition(feature_table(L2_GROUP, v), symbol, day) for v in versions)

    def session_of(symbol: str, day: dt.date, index: L2DayIndex | None = None) -> Outcome | tuple[list[str], tuple]:
        """The versions to compute on the day (with keep-existing only those not stored) and its
        ``(day, timeline, book)`` session, or the outcome saying why there are none; ``index``: the
        symbol's L2 ``day_index`` when many of its days are read."""
        todo = versions_to_compute_on(lake, lambda v: feature_table(L2_GROUP, v), versions, keep, symbol, day)
        if not todo:
            return kept()
        if is_blocked(lake, L2_DQ_DATASET, symbol, day):
            return blocked("L2 snapshots failed an error DQ rule")
        book, _ = l2_store.read_day(symbol, day, index)
        if len(book) == 0:
            return no_input("no L2 snapshots")
        timeline = elapsed_session_minutes(STOCKS, day)  # a session under way: the minutes so far
        if not len(timeline):
            return no_input("the session has not begun")
        return todo, (day, timeline, book)

    def features_of(version: str, symbol: str, sessions: list[tuple]) -> pd.DataFrame:
        return versions[version].compute_l2_sessions(sessions, symbol=symbol).assign(feature_group=L2_GROUP, feature_version=version)

    def compute(symbol: str, day: dt.date) -> Outcome:
        found = session_of(symbol, day)
        if isinstance(found, Outcome):
            return found
        todo, session = found
        rows = 0
        for version in todo:
            features = features_of(version, symbol, [session])
            lake.write_partition(feature_table(L2_GROUP, version), symbol, day, features)
            quality[version].add(symbol, day, features)
            rows += len(features)
        return written(rows)

    def compute_days(symbol: str, days: list[dt.date]) -> dict[dt.date, Outcome]:
        """Every version over all of the symbol's sessions that need it, in one pass per version."""
        outcomes, sessions = {}, {version: [] for version in versions}
        index = l2_store.day_index(symbol)
        for day in days:
            found = session_of(symbol, day, index)
            if isinstance(found, Outcome):
                outcomes[day] = found
                continue
            todo, session = found
            for version in todo:
                sessions[version].append(session)
        rows: Counter = Counter()
        for version, todo_sessions in sessions.items():
            if todo_sessions:
                rows.update(write_by_date(lake, feature_table(L2_GROUP, version), symbol, features_of(version, symbol, todo_sessions), quality[version]))
        return {**outcomes, **{day: written(n) for day, n in rows.items()}}

    step = SymbolDayStep(
        context, "l2_features", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS), is_stored=stored, lake=lake, quality=quality.values(),
        heals=[*(feature_table(L2_GROUP, v) for v in versions), *(t for v in versions for t in dq_tables(f"{L2_GROUP}_{v}"))],
    )
    step = step.run_by_symbol(compute_days, compute)
    yield from step.finish(QualityRecorder.merged(list(quality.values())).finish(check_groups(L2_FEATURE_DQ_CHECKS)))


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="features",
    kinds={"parquet", "pandas"},
    deps=[curated_bars],
    metadata={"label_definitions": ", ".join(sorted(LABEL_DEFINITIONS))},
    check_specs=[complete_check_spec("labels", stock_date_partitions), *LABEL_DQ_CHECKS],
)
def labels(context: dg.AssetExecutionContext, lake: ParquetLake, data_quality: DataQuality) -> StepEvents:
    """Forward-return labels under every registered label definition (v1: 1/5/15-minute horizons).

    The only asset that looks ahead, by design, and stored apart from the features
    (``lake/labels/version=v1``) so labels never leak into a feature row. ``fwd_ret_h`` is the log
    return of close from ``ts`` to ``ts + h`` in the same session; ``valid_h`` is false when either
    bar is imputed/missing; ``available_ts`` is when the longest horizon is known. Partitioned by
    trading date; one file per (symbol, date). Skips a (symbol, date) whose curated bars failed an
    error DQ rule. The ``labels`` DQ rules (one row per (symbol, ts), increasing ts) run on every
    definition's rows as the ``dq_*`` checks (results stored per definition, ``labels_v1``).
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    keep = keep_existing(context, "features")
    quality = {v: data_quality.recorder(lake, "labels", stored_as=f"labels_{v}", asset_key="labels") for v in LABEL_DEFINITIONS}

    def stored(symbol: str, day: dt.date) -> bool:
        return all(lake.has_partition(labels_table(v), symbol, day) for v in LABEL_DEFINITIONS)

    def compute(symbol: str, day: dt.date) -> Outcome:
        todo = versions_to_compute_on(lake, labels_table, LABEL_DEFINITIONS, keep, symbol, day)
        if not todo:
            return kept()
        bars = curated_day(lake, symbol, day)
        if isinstance(bars, Outcome):
            return bars
        rows = 0
        for version in todo:
            frame = compute_labels(bars, LABEL_DEFINITIONS[version])
            lake.write_partition(labels_table(version), symbol, day, frame)
            quality[version].add(symbol, day, frame)
            rows += len(frame)
        return written(rows)

    def compute_days(symbol: str, days: list[dt.date]) -> dict[dt.date, Outcome]:
        todo = versions_to_compute_by_day(lake, labels_table, LABEL_DEFINITIONS, keep, symbol, days)
        bars, outcomes = curated_days(lake, symbol, days, is_kept=lambda day: not todo[day])
        rows: Counter = Counter()
        if len(bars):
            for version, definition in LABEL_DEFINITIONS.items():
                sessions = rows_of_dates(bars, [day for day in days if version in todo[day]])
                if len(sessions):
                    rows.update(write_by_date(lake, labels_table(version), symbol, compute_labels_many(sessions, definition), quality[version]))
        return {**outcomes, **{day: written(n) for day, n in rows.items()}}

    step = SymbolDayStep(
        context, "labels", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS), is_stored=stored, lake=lake,
        quality=quality.values(), heals=[*(labels_table(v) for v in LABEL_DEFINITIONS), *(t for v in LABEL_DEFINITIONS for t in dq_tables(f"labels_{v}"))],
    )
    step = step.run_by_symbol(compute_days, compute)
    yield from step.finish(QualityRecorder.merged(list(quality.values())).finish(check_groups(LABEL_DQ_CHECKS)))
