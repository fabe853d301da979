"""Curated, gap-aware 1-minute bars."""


import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from platform_assets.calendars import STOCKS, elapsed_session_minutes, sessions_in_range
from platform_assets.curation.gap_engine import GapStats, ImputationPolicy, curate_bars, curate_sessions, l2_minute_activity
from platform_assets.ingestion.assets import l2_snapshots_sim, raw_bars_sim
from platform_assets.ingestion.databento_assets import l2_snapshots_databento, raw_bars_databento
from platform_assets.ingestion.ib_assets import raw_bars_ib
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions, follow_upstream
from platform_assets.symbol_days import FAILED, WRITTEN, Outcome, StepEvents, SymbolDayStep, blocked, complete_check_spec, kept, no_input, written
from platform_assets.curated_input import date_slices, write_by_date
from platform_assets.run_options import keep_existing
from platform_assets.reference.actions import ADJUSTMENT_COLUMNS, adjustment_columns, day_factor
from platform_assets.quality.checks import DataQuality, check_groups, dq_check_specs, dq_tables, is_blocked, raw_dq_dataset
from platform_assets.universe import run_symbols, tracked_symbols
from resources.adapters import AdapterRegistry
from resources.l2_store import L2DayIndex, L2SnapshotStore
from resources.offline_source import SIM_SOURCE as SIMULATED_SOURCE
from resources.lake import CURATED_BARS, CorruptLakeFileError, ParquetLake, quarantine_table, raw_bars_table
from resources.reference_store import read_actions
from resources.schemas import L2Book

TIMELINE_CHECK = "timeline_complete"
# Per-partition metadata sums these curation statistics over the date's symbols.
CURATION_STAT_KEYS = ("expected_minutes", "real_minutes", "imputed_minutes", "missing_minutes", "invalid_rows", "gap_runs")
CURATION_OUTCOME_KEYS = frozenset(GapStats().as_dict()) - {"gap_ratio"}  # a written partition's outcome carries these
# raw-bars assets of sources registered beyond the built-in ones (resources.adapters.registry)
_REGISTERED_RAW_BARS = [
    dg.AssetKey(key) for key in AdapterRegistry.raw_bars_asset_keys() if key not in ("raw_bars_sim", "raw_bars_databento", "raw_bars_ib")
]
CURATED_DQ_CHECKS = dq_check_specs("curated_bars", "curated_bars")


def _with_live_bars(priority: list[str]) -> list[str]:
    """``ib_live`` right after ``ib``: intraday live bars count until the historical pull lands."""
    out = [s for s in priority if s != "ib_live"]
    return out[: out.index("ib") + 1] + ["ib_live"] + out[out.index("ib") + 1 :] if "ib" in out else out + ["ib_live"]


def default_source_priority() -> list[str]:
    """databento, ib, ib_live (IB live bars, superseded by the end-of-day IB pull), sim, then
    registered sources; without ``sim`` when ``INGESTION_SOURCES`` names a real vendor: simulated
    bars never fill a vendor's gap (a day the vendor did not deliver stays missing, named by the
    date's check and retried, instead of entering curated data and training sets as if real)."""
    from platform_assets.ingestion.sources import configured_sources

    priority = _with_live_bars(AdapterRegistry.source_priority())
    if set(configured_sources()) - {SIMULATED_SOURCE}:
        priority = [source for source in priority if source != SIMULATED_SOURCE]
    return priority


class CurationConfig(dg.Config):
    """Which raw source wins when several delivered the same (symbol, date), and halt detection."""

    source_priority: list[str] | None = None
    """Sources in order of preference; None: ``default_source_priority()`` (an explicit list is used as given)."""
    halt_min_minutes: int = 5

    def priority(self) -> list[str]:
        return list(self.source_priority) if self.source_priority is not None else default_source_priority()


def pick_raw_source(lake: ParquetLake, symbol: str, day: dt.date, priority: list[str]) -> tuple[str | None, pd.DataFrame | None]:
    """The newest batch of the highest-priority source that delivered this (symbol, date); a
    corrupt one is quarantined and raises (``pick_raw_sources`` for one date)."""
    found = pick_raw_sources(lake, symbol, [day], priority).get(day)
    if isinstance(found, CorruptLakeFileError):
        raise found
    return (found[0], found[1].to_pandas()) if found is not None else (None, None)


def pick_raw_sources(
    lake: ParquetLake, symbol: str, days: list[dt.date], priority: list[str]
) -> dict[dt.date, tuple[str, pa.Table] | CorruptLakeFileError]:
    """``pick_raw_source`` for many of a symbol's dates: {date: (source, newest batch as Arrow)}
    for the dates some source delivered; a source's files are read only for the dates no
    higher-priority source has. A date whose chosen batch is corrupt maps to the error (the file
    is quarantined; the date must fail, as ``pick_raw_source`` raises, not fall to another source)."""
    picked: dict[dt.date, tuple[str, pa.Table] | CorruptLakeFileError] = {}
    for source in priority:
        wanted = [day for day in days if day not in picked]
        if not wanted:
            break
        tables, corrupt = lake.read_latest_batches(raw_bars_table(source), symbol, wanted)
        picked.update({day: (source, batch) for day, batch in tables.items()})
        picked.update(corrupt)
    return picked


def last_real_close(bars: pd.DataFrame) -> float | None:
    """Close of the latest bar with ``dq_status == "ok"`` (every bar without the column); None if none."""
    real = bars["dq_status"].to_numpy() == "ok" if "dq_status" in bars.columns else np.ones(len(bars), dtype=bool)
    if not real.any():
        return None
    ts = pd.DatetimeIndex(bars["ts"]).asi8[real]
    return float(bars["close"].to_numpy()[real][np.argmax(ts)])


def previous_close(lake: ParquetLake, symbol: str, day: dt.date, seen: dict | None = None) -> float | None:
    """Last real close of the previous session's curated bars (None when not stored); ``seen``
    (symbol -> (day, close)) answers without a read when this run curated that session."""
    earlier = [s for s in sessions_in_range(STOCKS, day - dt.timedelta(days=10), day) if s < day]
    if not earlier:
        return None
    if seen is not None and symbol in seen and seen[symbol][0] == earlier[-1]:
        return seen[symbol][1]
    if not lake.has_partition(CURATED_BARS, symbol, earlier[-1]):
        return None
    return last_real_close(lake.read(CURATED_BARS, [symbol], [earlier[-1]]))


def book_activity(book: L2Book, timeline: pd.DatetimeIndex) -> pd.DataFrame | None:
    if len(book) == 0:
        return None
    top = np.stack([book.bid_prices[:, 0], book.ask_prices[:, 0], book.bid_sizes[:, 0], book.ask_sizes[:, 0]], axis=1)
    return l2_minute_activity(book.timestamp, top, timeline)


def _consecutive_groups(items: list, same) -> list[list]:
    """``items`` split into runs of neighbours for which ``same(previous, item)`` holds."""
    groups: list[list] = []
    for item in items:
        if groups and same(groups[-1][-1], item):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _same_batch_schema(inputs: list[tuple]) -> list[list[tuple]]:
    """Consecutive (date, source, batch, ...) inputs split where the source or the batch schema
    changes: each group's batches concatenate into one frame with the columns each batch has."""
    return _consecutive_groups(inputs, lambda a, b: a[1] == b[1] and a[2].schema.equals(b[2].schema))


@dg.asset(
    partitions_def=stock_date_partitions,
    backfill_policy=ranged_backfill_policy,
    automation_condition=follow_upstream(),
    group_name="curation",
    kinds={"parquet", "pandas"},
    deps=[raw_bars_sim, l2_snapshots_sim, raw_bars_databento, l2_snapshots_databento, raw_bars_ib, *_REGISTERED_RAW_BARS],
    metadata={"lake_table": str(CURATED_BARS)},
    check_specs=[
        dg.AssetCheckSpec(TIMELINE_CHECK, asset="curated_bars", blocking=True, description="every curated partition holds exactly the session's minutes, each once"),
        complete_check_spec("curated_bars", stock_date_partitions),
        *CURATED_DQ_CHECKS,
    ],
)
def curated_bars(
    context: dg.AssetExecutionContext, config: CurationConfig, lake: ParquetLake, l2_store: L2SnapshotStore, data_quality: DataQuality
) -> StepEvents:
    """Canonical gap-aware 1-minute bars, one row per minute of the exchange session.

    Built from the newest raw batch of the preferred source (config ``source_priority``), validated
    (bad ticks and inconsistent OHLC removed and counted, duplicate minutes dropped), aligned to
    the XNYS session timeline (390 minutes, 210 on half days, DST-aware UTC stamps) and gap-filled:
    close forward-filled, volume 0, with the gap mask ``is_imputed``/``gap_type``/
    ``gap_run_minutes`` and ``dq_status`` (ok|imputed|missing).

    Feed gap vs no-trade minute: a missing bar whose minute still has moving L2 snapshots is a
    ``no_trade`` minute (the feed was alive, nobody traded); a long frozen-book quiet run is a
    ``halt``; a missing bar with no L2 snapshot either is a ``feed_gap``; without any L2 data for
    the day the gap is ``unknown``. Rejected raw rows are kept in ``quarantine/curated_bars``.
    The ``curated_bars`` rules of the DQ rule file run as the ``dq_*`` asset checks; per-partition
    results go to ``dq_metrics/dataset=curated_bars`` and a partition with an error result is
    skipped by the downstream assets. A (symbol, date) whose raw batch failed an error rule is not
    curated. Partitioned by trading date; one Parquet file per (symbol, date) in ``lake/curated_bars``.

    Prices stay as traded. Each bar carries the corporate-action adjustment factor known on its
    session (``adj_factor_split``, ``adj_factor``: multiply raw prices by it for a series continuous
    across every split / split and dividend announced by then; see
    ``platform_assets.reference.actions``), and the DQ return-jump rule compares the session's
    first close with the previous close times the factor of the actions going ex that day.
    """
    symbols, dates = run_symbols(context), partition_dates(context)
    policy = ImputationPolicy(halt_min_minutes=config.halt_min_minutes)
    timeline_problems, sources = [], set()
    quality = data_quality.recorder(lake, "curated_bars", asset_key="curated_bars")
    keep = keep_existing(context, "curated")
    closes: dict[str, tuple[dt.date, float | None]] = {}  # symbol -> (session, last real close) curated by this run
    priority = config.priority()
    no_raw_reason = "no raw bars from any source" + ("" if SIMULATED_SOURCE in priority else " (simulated bars are not used: INGESTION_SOURCES names a vendor)")

    def session_of(symbol: str, day: dt.date, index: L2DayIndex | None = None) -> Outcome | tuple[str, pd.DataFrame, GapStats, pd.DataFrame, int]:
        """One (symbol, session) curated in memory, no side effect: (source, curated bars without
        the adjustment columns, stats, rejected raw rows, expected minutes), or the outcome saying
        why there is nothing to curate; ``index``: the symbol's L2 ``day_index`` when many of its
        days are read."""
        if keep and lake.has_partition(CURATED_BARS, symbol, day):
            return kept()
        source, raw = pick_raw_source(lake, symbol, day, priority)
        if raw is None:
            return no_input(no_raw_reason)
        if is_blocked(lake, raw_dq_dataset(source), symbol, day):
            return blocked(f"raw bars ({source}) failed an error DQ rule")
        timeline = elapsed_session_minutes(STOCKS, day)  # a session under way: the minutes so far
        if not len(timeline):
            return no_input("the session has not begun")
        book, _ = l2_store.read_day_top(symbol, day, index)
        curated, stats, rejected = curate_bars(
            raw, timeline, symbol=symbol, day=day, source=source, activity=book_activity(book, timeline), policy=policy
        )
        return source, curated, stats, rejected, len(timeline)

    def checked(symbol: str, day: dt.date, curated: pd.DataFrame, stats: GapStats, expected: int, actions: pd.DataFrame, seen: dict) -> dict:
        """The session's DQ statistics (with the previous close for the return-jump rule; ``seen``
        holds the last session curated per symbol) and its timeline check."""
        prev = previous_close(lake, symbol, day, seen)
        seen[symbol] = (day, last_real_close(curated))
        if len(curated) != expected or curated["ts"].duplicated().any():
            timeline_problems.append(f"{symbol}@{day}")
        jump_stats = {"prev_close": prev, "corporate_action_factor": day_factor(actions, day)} if prev is not None else {}
        return {**stats.as_dict(), **jump_stats}

    def quarantine(symbol: str, day: dt.date, rejected: pd.DataFrame) -> None:
        """Keep the session's rejected raw rows (and drop those of an earlier run when there are
        none now)."""
        if len(rejected):
            lake.write_partition(quarantine_table(CURATED_BARS), symbol, day, rejected)
        else:
            lake.delete_partition(quarantine_table(CURATED_BARS), symbol, day)

    def quarantine_days(symbol: str, done: list[tuple]) -> None:
        """``quarantine`` for many curated sessions (date order): the rejected rows of each run of
        sessions sharing columns (one source) converted to Arrow once and written per date."""
        quarantined = lake.stored_dates(quarantine_table(CURATED_BARS), symbol)
        for day, _, _, _, rejected, _ in done:
            if not len(rejected) and day in quarantined:
                lake.delete_partition(quarantine_table(CURATED_BARS), symbol, day)
        rejected = [entry[4] for entry in done if len(entry[4])]
        for frames in _consecutive_groups(rejected, lambda a, b: list(a.columns) == list(b.columns) and a.dtypes.equals(b.dtypes)):
            write_by_date(lake, quarantine_table(CURATED_BARS), symbol, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])

    def outcome(curated_rows: int, stats: dict) -> Outcome:
        return written(curated_rows, **{k: v for k, v in stats.items() if k in CURATION_OUTCOME_KEYS})

    def curate(symbol: str, day: dt.date) -> Outcome:
        found = session_of(symbol, day)
        if isinstance(found, Outcome):
            return found
        source, curated, stats, rejected, expected = found
        sources.add(source)
        actions = read_actions(lake.root, [symbol])
        curated = curated.assign(**adjustment_columns(actions, day))
        lake.write_partition(CURATED_BARS, symbol, day, curated)
        quarantine(symbol, day, rejected)
        values = checked(symbol, day, curated, stats, expected, actions, closes)
        quality.add(symbol, day, curated, stats=values)
        return outcome(len(curated), values)

    def sessions_of(symbol: str, days: list[dt.date]) -> tuple[dict[dt.date, Outcome], list[tuple], list[pd.DataFrame]]:
        """``session_of`` for all of a symbol's dates at once: the outcome of each date with nothing
        to curate, and the curated sessions (date, source, curated bars, stats, rejected rows,
        expected minutes) in date order, and the curated frames holding them (one per group, in
        date order). Sessions from one source (and batch schema) in a row are
        curated by one ``curate_sessions`` call over their raw batches concatenated."""
        outcomes, inputs = {}, []
        todo = [day for day in days if not (keep and lake.has_partition(CURATED_BARS, symbol, day))]
        outcomes.update({day: kept() for day in days if day not in todo})
        raw = pick_raw_sources(lake, symbol, todo, priority)
        index = l2_store.day_index(symbol) if raw else None
        for day in todo:
            if day not in raw:
                outcomes[day] = no_input(no_raw_reason)
            elif isinstance(raw[day], CorruptLakeFileError):
                context.log.error(f"curated_bars {symbol}@{day} failed: {raw[day]}")
                outcomes[day] = Outcome(FAILED, detail=f"CorruptLakeFileError: {raw[day]}".splitlines()[0][:300])
            elif is_blocked(lake, raw_dq_dataset(raw[day][0]), symbol, day):
                outcomes[day] = blocked(f"raw bars ({raw[day][0]}) failed an error DQ rule")
            elif not len(timeline := elapsed_session_minutes(STOCKS, day)):  # a session under way: the minutes so far
                outcomes[day] = no_input("the session has not begun")
            else:
                book, _ = l2_store.read_day_top(symbol, day, index)
                inputs.append((day, *raw[day], timeline, book_activity(book, timeline)))
        done, frames = [], []
        for group in _same_batch_schema(inputs):
            days_, sources_, batches, timelines, activities = zip(*group)
            frame, stats, rejected = curate_sessions(
                pa.concat_tables(batches).to_pandas(), [len(b) for b in batches], timelines,
                symbol=symbol, days=days_, sources=sources_, activities=activities, policy=policy,
            )
            frames.append(frame)
            bounds = np.concatenate([[0], np.cumsum([len(t) for t in timelines])])
            done += [
                (day, source, frame.iloc[bounds[i] : bounds[i + 1]], stats[i], rejected[i], len(timelines[i]))
                for i, (day, source) in enumerate(zip(days_, sources_))
            ]
        return outcomes, done, frames

    def curate_days(symbol: str, days: list[dt.date]) -> dict[dt.date, Outcome]:
        """All of a symbol's sessions: curated together in memory (``sessions_of``), then written as
        one frame (converted once, one DQ batch); nothing is written if any session fails."""
        outcomes, done, frames = sessions_of(symbol, days)
        if not done:
            return outcomes
        actions = read_actions(lake.root, [symbol])
        seen = dict(closes)
        values = [checked(symbol, day, curated, stats, expected, actions, seen) for day, _, curated, stats, _, expected in done]
        lengths = [len(curated) for _, _, curated, *_ in done]
        factors = [adjustment_columns(actions, day) for day, *_ in done]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        frame = frame.assign(**{column: np.repeat([f[column] for f in factors], lengths) for column in ADJUSTMENT_COLUMNS})
        write_by_date(lake, CURATED_BARS, symbol, frame)
        quarantine_days(symbol, done)
        quality.add_dates(symbol, frame, date_slices(frame), stats=values)
        closes.update(seen)
        sources.update(source for _, source, *_ in done)
        return {**outcomes, **{day: outcome(n, v) for (day, *_), n, v in zip(done, lengths, values)}}

    step = SymbolDayStep(
        context, "curated_bars", symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
        is_stored=lambda s, d: lake.has_partition(CURATED_BARS, s, d), stats_keys=CURATION_STAT_KEYS, lake=lake, quality=[quality],
        heals=[CURATED_BARS, quarantine_table(CURATED_BARS), *dq_tables("curated_bars")],
    ).run_by_symbol(curate_days, curate)
    dq_results = quality.finish(check_groups(CURATED_DQ_CHECKS))
    timeline_result = dg.AssetCheckResult(
        check_name=TIMELINE_CHECK,
        passed=not timeline_problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"partitions_checked": len(step.outcomes_of(WRITTEN)), "failing": ", ".join(timeline_problems[:50]), "sources": ", ".join(sorted(sources))},
    )
    yield from step.finish([timeline_result, *dq_results])
