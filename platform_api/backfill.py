"""Ranged backfills of the asset graph on a Dagster instance.

A backfill request (symbols x inclusive date range) is validated up front, then split into a few
contiguous date ranges (cut on the first session of a month where one is near, so each month file
of a symbol is written by one run) or, with several workers and many symbols, its symbols into
one group per worker (runs of equal size; ``plan_backfill``); each (range, group) is materialized as **one**
Dagster run (partition range tags), so the runs show up in the Dagster UI like any other. Runs execute in this process (``workers=1``) or in
``workers`` child processes on the same instance; each run covers at most
``MAX_DATES_PER_RUN`` dates.

Symbols pick their graph: stocks run the XNYS ``offline_pipeline``, crypto pairs (BTC-USD) the 24/7
``crypto_pipeline``; a request mixing both is refused before anything starts (it used to report
success and store nothing for the crypto symbol). Every run carries its process's pid/host tags,
and a backfill first fails the runs whose process died (``platform_assets.automation.run_reaper``),
so a killed backfill never leaves runs STARTED that block the run queue.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import dagster as dg

from platform_api.process_life import die_with_parent
from platform_assets.automation.jobs import CRYPTO_PIPELINE_JOB, OFFLINE_PIPELINE_JOB
from platform_assets.automation.run_reaper import own_process_tags, reap_dead_runs
from platform_assets.calendars import CRYPTO, STOCKS, Market, sessions_in_range
from platform_assets.partitions import MAX_DATES_PER_RUN, SYMBOL_GROUP_TAG, SYMBOLS_TAG, date_partitions_of
from platform_assets.symbol_days import COMPLETE_CHECK
from platform_assets.universe import add_symbols, detect_asset_type, removed_symbols, require_tracked, tracked_symbols
from resources.validation import InvalidDateRangeError, InvalidInputError, normalize_symbols, parse_date_range

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
LAUNCHED_BY_TAG = "platform/launched_by"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillPlan:
    """A validated backfill: symbols, trading dates, the date chunks and the symbol groups; one run
    per (chunk, group). One group (every symbol) unless symbol groups keep several workers busy for less time (``plan_backfill``)."""

    symbols: list[str]
    dates: list[dt.date]
    chunks: list[list[dt.date]]
    job_name: str = OFFLINE_PIPELINE_JOB
    market: Market = STOCKS
    symbol_groups: list[list[str]] | None = None  # None: one group, every symbol

    @property
    def partitions(self) -> int:
        return len(self.symbols) * len(self.dates)

    @property
    def runs(self) -> list[tuple[list[dt.date], list[str]]]:
        """(dates, symbols) of each run, in launch order."""
        return [(chunk, group) for chunk in self.chunks for group in (self.symbol_groups or [self.symbols])]


@dataclass
class RunOutcome:
    run_id: str
    start: dt.date
    end: dt.date
    success: bool
    seconds: float
    error: str = ""
    partitions: dict[str, list[str]] = field(default_factory=dict)  # asset -> the partition keys this run materialized
    symbol_group: str = ""  # "k/n" when the backfill is split by symbols
    failed_symbol_days: dict[str, str] = field(default_factory=dict)
    """asset -> one line on the symbol-days whose transform raised (the run still succeeds: one bad
    symbol-day never sinks the others; its date's ``symbols_complete`` evaluation fails at ERROR)."""

    @property
    def complete(self) -> bool:
        """The run succeeded and every symbol-day it processed landed or was skipped on purpose."""
        return self.success and not self.failed_symbol_days

    @property
    def materializations(self) -> dict[str, int]:
        """Asset -> how many partitions this run materialized."""
        return {name: len(keys) for name, keys in self.partitions.items()}


@dataclass
class BackfillReport:
    plan: BackfillPlan
    runs: list[RunOutcome]
    seconds: float

    @property
    def success(self) -> bool:
        return all(r.success for r in self.runs)

    @property
    def complete(self) -> bool:
        """Every run succeeded and no symbol-day failed (``RunOutcome.complete``)."""
        return all(r.complete for r in self.runs)

    def failures(self) -> list[str]:
        """One line per failed run and per asset of a run with failed symbol-days."""
        return [f"run {r.run_id[:8]}: {r.error}" for r in self.runs if not r.success] + [
            f"run {r.run_id[:8]}: {asset}: {line}" for r in self.runs for asset, line in sorted(r.failed_symbol_days.items())
        ]

    @property
    def materialized(self) -> dict[str, int]:
        """Asset -> the partitions its runs materialized, each counted once (a date is materialized
        by every symbol group's run)."""
        return materialized_partitions(self.runs)


def materialized_partitions(runs: list[RunOutcome]) -> dict[str, int]:
    """Asset -> distinct partitions materialized by ``runs``."""
    keys: dict[str, set[str]] = {}
    for run in runs:
        for name, partitions in run.partitions.items():
            keys.setdefault(name, set()).update(partitions)
    return {name: len(partitions) for name, partitions in keys.items()}


def market_of_symbols(symbols: list[str]) -> Market:
    """STOCKS or CRYPTO for a request whose symbols all belong to one market; refuses a mix."""
    crypto = [s for s in symbols if detect_asset_type(s) == "crypto"]
    if crypto and len(crypto) < len(symbols):
        stocks = [s for s in symbols if s not in crypto]
        raise InvalidInputError(
            f"cannot backfill stock and crypto symbols together: {', '.join(crypto)} (crypto, 24/7 UTC days, crypto_pipeline) "
            f"vs {', '.join(stocks)} (stocks, XNYS sessions, offline_pipeline); run one backfill per market"
        )
    return CRYPTO if crypto else STOCKS


def require_stock_symbols(symbols: list[str]) -> None:
    """Refuse crypto pairs where only the stock graph runs (they would silently store nothing)."""
    if market_of_symbols(symbols) != STOCKS:
        crypto = [s for s in symbols if detect_asset_type(s) == "crypto"]
        raise InvalidInputError(f"{', '.join(crypto)}: crypto symbols are not processed by this stock job; use a crypto refresh or `mdp backfill` with crypto symbols only")


def plan_backfill(
    symbols, start, end, *, max_dates_per_run: int = MAX_DATES_PER_RUN, min_chunks: int = 1, market: Market | None = None
) -> BackfillPlan:
    """Validate the request and split it into runs, one per (date chunk, symbol group): its trading
    dates into contiguous chunks of at most ``max_dates_per_run`` dates cut on month starts, and
    for ``min_chunks`` (the workers) > 1 either the dates into at least one chunk per worker, or
    the symbols into one group per worker, whichever keeps the workers busy for less time
    (``makespan``). Month-aligned date cuts are uneven (60 dates: 35 + 25, one worker idle ~6 s of
    27 s), symbol groups are not, but every group's run writes each date's Dagster events: symbol
    groups win with many symbols (60 x 40 dates: 20.8 s vs 23.5 s cut by dates) and always for a
    daily run (one date: 500 symbols in two runs of 250), dates with few (10 x 60).

    ``market``: STOCKS (XNYS sessions, the ``offline_pipeline`` job) or CRYPTO (every UTC day, the
    ``crypto_pipeline`` job); None (default) picks it from the symbols (``market_of_symbols``:
    crypto pairs such as BTC-USD are crypto) and refuses a request mixing both.
    """
    symbols = normalize_symbols(symbols)
    if market is None:
        market = market_of_symbols(symbols)
    start_date, end_date = parse_date_range(start, end)
    partitions = date_partitions_of(market)
    first_partition = dt.date.fromisoformat(partitions.get_first_partition_key())
    last_partition = dt.date.fromisoformat(partitions.get_last_partition_key())
    if start_date < first_partition:
        raise InvalidDateRangeError(f"start date {start_date} is before the first partition {first_partition} (PARTITIONS_START_DATE)")
    dates = sessions_in_range(market, start_date, end_date)
    if dates and dates[-1] > last_partition:  # a range ending on a weekend or holiday is fine
        raise InvalidDateRangeError(f"end date {end_date} is after the last available partition {last_partition}")
    if not dates:
        raise InvalidDateRangeError(f"no {market.calendar_name} trading day between {start_date} and {end_date}")
    needed = math.ceil(len(dates) / max_dates_per_run)  # date chunks the run size asks for
    by_dates = month_aligned_chunks(dates, min(max(min_chunks, needed), len(dates)), max_dates_per_run)
    by_symbols = month_aligned_chunks(dates, needed, max_dates_per_run)
    groups = min_chunks if min_chunks > 1 and len(symbols) >= min_chunks else 1
    if groups > 1 and makespan(by_symbols, len(symbols), groups, min_chunks) < makespan(by_dates, len(symbols), 1, min_chunks):
        chunks, symbol_groups = by_symbols, split_symbols(symbols, groups)
    else:
        chunks, symbol_groups = by_dates, None
    job_name = CRYPTO_PIPELINE_JOB if market == CRYPTO else OFFLINE_PIPELINE_JOB
    return BackfillPlan(symbols=symbols, dates=dates, chunks=chunks, job_name=job_name, market=market, symbol_groups=symbol_groups)


DATE_COST_IN_SYMBOL_DAYS = 2.5
"""What one date of a run costs beyond its symbol-days, in symbol-days: the Dagster events of each
(asset, date) (~3 ms each, ~60 ms per date over the graph) against ~25 ms of work per symbol-day
(``bench.throughput``, 2 workers)."""


def makespan(chunks: list[list[dt.date]], symbols: int, groups: int, workers: int) -> float:
    """Predicted length of a plan, in symbol-days: its runs (each chunk x ``groups`` equal symbol
    groups) handed in launch order to the least busy of ``workers``; a run of ``d`` dates and ``s``
    symbols costs ``d * (s + DATE_COST_IN_SYMBOL_DAYS)``."""
    busy = [0.0] * workers
    for chunk in chunks:
        for _ in range(groups):
            busy[busy.index(min(busy))] += len(chunk) * (symbols / groups + DATE_COST_IN_SYMBOL_DAYS)
    return max(busy)


def split_symbols(symbols: list[str], groups: int) -> list[list[str]] | None:
    """``symbols`` in ``groups`` groups of near-equal size (None: one group). Each (table, symbol)
    is written by one run only; a date partition then gets one materialization per group, and its
    ``symbols_complete`` check judges every tracked symbol whichever run wrote it."""
    if groups <= 1:
        return None
    size, larger = divmod(len(symbols), groups)  # the first ``larger`` groups hold one more symbol
    bounds = [0, *itertools.accumulate(size + (k < larger) for k in range(groups))]
    return [symbols[bounds[k] : bounds[k + 1]] for k in range(groups)]


def month_aligned_chunks(dates: list[dt.date], count: int, max_size: int) -> list[list[dt.date]]:
    """Split sorted dates into about ``count`` contiguous chunks of at most ``max_size`` dates, each
    cut on the first session of a month when one lies within a quarter chunk of the even cut.

    The lake stores a (table, symbol) month as one file: a cut inside a month makes two runs write
    (and the second one merge and rewrite) the same month file of every symbol, concurrently when
    the runs go to parallel workers; cuts on month starts write each month once per backfill. Falls
    back to the even cut where no month start is near (short ranges split for parallel workers).
    """
    month_starts = [i for i in range(1, len(dates)) if (dates[i].year, dates[i].month) != (dates[i - 1].year, dates[i - 1].month)]
    chunks: list[list[dt.date]] = []
    start = 0
    while start < len(dates):
        left, chunks_left = len(dates) - start, max(1, count - len(chunks))
        if chunks_left == 1 and left <= max_size:
            cut = len(dates)
        else:
            even = start + min(math.ceil(left / chunks_left), max_size)
            slack = max(1, (even - start) // 4)
            near = [m for m in month_starts if start < m <= start + max_size and abs(m - even) <= slack]
            cut = min(near, key=lambda m: (abs(m - even), -m)) if near else even
        chunks.append(dates[start:cut])
        start = cut
    return chunks


def without_removed_symbols(instance: dg.DagsterInstance, plan: BackfillPlan) -> BackfillPlan:
    """``plan`` without the symbols removed from the universe since it was made (a queued refresh
    when ``DELETE /data/symbols/X`` came): the others run; a plan left with none keeps them (and
    fails as untracked, naming them)."""
    gone = set(removed_symbols(instance, plan.symbols))
    if not gone or gone >= set(plan.symbols):
        return plan
    _LOG.warning("backfill: skipping %s, removed from the universe since the backfill was planned", ", ".join(sorted(gone)))
    groups = [[s for s in group if s not in gone] for group in plan.symbol_groups] if plan.symbol_groups else None
    return replace(plan, symbols=[s for s in plan.symbols if s not in gone], symbol_groups=[g for g in groups if g] if groups else None)


def run_tags(plan: BackfillPlan, chunk: list[dt.date], universe: list[str], launched_by: str, symbols: list[str] | None = None) -> dict[str, str]:
    """The tags of the run of ``chunk`` for ``symbols`` (default: the plan's)."""
    symbols = symbols or plan.symbols
    tags = {
        RANGE_START_TAG: chunk[0].isoformat(),
        RANGE_END_TAG: chunk[-1].isoformat(),
        LAUNCHED_BY_TAG: launched_by,
    }
    if set(symbols) != set(universe):
        tags[SYMBOLS_TAG] = ",".join(symbols)
    if plan.symbol_groups:
        tags[SYMBOL_GROUP_TAG] = f"{plan.symbol_groups.index(symbols) + 1}/{len(plan.symbol_groups)}"
    return tags


def configured_backfill(plan: BackfillPlan, sources: list[str], defs: dg.Definitions | None = None) -> tuple[BackfillPlan, list[str] | None, str]:
    """A stock plan run from the configured ingestion sources (``INGESTION_SOURCES``): the
    simulator alone keeps ``offline_pipeline``; any vendor runs ``stock_pipeline`` over those
    sources' raw assets and what is derived from them. Returns (plan, asset selection or None,
    a line naming the sources). Crypto plans run the crypto pipeline (simulated) as they are."""
    from platform_assets.ingestion.sources import pipeline_job_of, sources_selection

    if plan.market != STOCKS or not sources or pipeline_job_of(sources) == OFFLINE_PIPELINE_JOB:
        return plan, None, "offline source, simulated data"
    selection = sources_selection((defs or _project_definitions()).resolve_asset_graph(), sources)
    return replace(plan, job_name=pipeline_job_of(sources)), selection, f"sources: {', '.join(sources)} (INGESTION_SOURCES)"


def _project_definitions() -> dg.Definitions:
    from definitions import defs  # imported lazily: worker processes load the code location themselves

    return defs


def root_cause(error) -> str:
    """The first line of the innermost cause of a Dagster ``SerializableErrorInfo`` (a step's own
    error, e.g. ``MissingApiKeyError: ...``, not the wrapping "Error occurred while executing op")."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (error.message or "").strip().splitlines()
    line = lines[0] if lines else (error.cls_name or "error")
    wrapper = "dagster._core.definitions.events.Failure: "  # a step's own dg.Failure: its description is the cause
    return line[len(wrapper):] if line.startswith(wrapper) else line


def _execute_chunk(
    instance: dg.DagsterInstance,
    job_name: str,
    tags: dict[str, str],
    log_level: str,
    defs: dg.Definitions | None = None,
    asset_selection: list[str] | None = None,
) -> RunOutcome:
    defs = defs or _project_definitions()
    started = time.monotonic()
    job = defs.resolve_job_def(job_name)
    try:
        result = job.execute_in_process(
            instance=instance,
            tags={**tags, **own_process_tags()},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            asset_selection=[dg.AssetKey(name) for name in asset_selection] if asset_selection else None,
        )
    finally:
        forget_run_memories()  # they serve one run's later steps: a long-lived caller (the HTTP service) keeps none
    partitions: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        partitions.setdefault(event.asset_key.to_user_string(), set()).add(event.partition or "")
    failed_symbol_days = {}
    for evaluation in result.get_asset_check_evaluations():  # the run-level completeness result of each table
        failed = evaluation.metadata.get("symbol_days_failed") if evaluation.partition is None and evaluation.check_name == COMPLETE_CHECK else None
        if failed is not None and failed.value:
            summary = evaluation.metadata.get("summary")
            failed_symbol_days[evaluation.asset_key.to_user_string()] = f"{failed.value} symbol-day(s) failed: {summary.value if summary else ''}"
    error = ""
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = "; ".join(f"{e.step_key}: {root_cause(e.step_failure_data.error)}" for e in failures if e.step_failure_data and e.step_failure_data.error) or "run failed"
    return RunOutcome(
        run_id=result.run_id,
        start=dt.date.fromisoformat(tags[RANGE_START_TAG]),
        end=dt.date.fromisoformat(tags[RANGE_END_TAG]),
        success=result.success,
        seconds=time.monotonic() - started,
        error=error,
        partitions={name: sorted(keys) for name, keys in partitions.items()},
        symbol_group=tags.get(SYMBOL_GROUP_TAG, ""),
        failed_symbol_days=failed_symbol_days,
    )


def forget_run_memories() -> None:
    """Empty the process-wide memories a run fills for its own later steps (``resources.file_memory``:
    the L2 days and lake files it wrote, the top of book it read)."""
    from resources import l2_store, lake

    for memory in (l2_store.WRITTEN_BOOKS, l2_store.TOP_OF_BOOK, lake.WRITTEN_TABLES):
        memory.clear()


def _sweep_temp_files(defs: dg.Definitions, plan: BackfillPlan) -> None:
    """Remove temp files that crashed writers left in the folders this backfill writes (lake and L2)."""
    lake, l2_store = defs.resources.get("lake"), defs.resources.get("l2_store")
    if lake is not None:
        lake.sweep_temp_files(plan.symbols, plan.dates)
    for symbol in plan.symbols if l2_store is not None else []:
        l2_store.sweep_temp_files(symbol)


WORKER_PRELOAD = "platform_api.worker_preload"


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of backfill workers: forked from a server process (``forkserver``) that
    imported the heavy libraries once (``platform_api.worker_preload``). A spawned worker spent
    ~5 s importing them before its first run, in every backfill; the server is started by the
    first backfill of a process and serves every later one (measured: 2 workers ready in 3.7 s,
    then 0.75 s; spawned: 5.1-5.5 s each time). Workers get the caller's environment with
    each task (``_execute_chunk_in_worker``), not the server's."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WORKER_PRELOAD])  # replaces the default ['__main__']: the server never runs the caller's script
    return context


def _execute_chunk_in_worker(instance_ref, job_name: str, tags: dict[str, str], log_level: str, asset_selection, env: dict[str, str]) -> RunOutcome:
    """One run in a worker process, under ``env``: the caller's environment when it submitted the
    run plus its settings (``worker_env``). The worker was forked from the preload server, whose
    environment is from when it started, so the caller's replaces it before the platform's modules
    (which read it when imported) load."""
    defs = None  # the project's definitions, imported under ``env``
    if os.environ != env:
        from resources.settings import get_settings, load_settings

        os.environ.clear()
        os.environ.update(env)
        get_settings.cache_clear()
        if "definitions" in sys.modules:  # built under another environment (a worker serves one backfill: rare)
            from definitions import build_definitions

            defs = build_definitions(load_settings())
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return _execute_chunk(instance, job_name, tags, log_level, defs, asset_selection=asset_selection)


def run_backfill(
    instance: dg.DagsterInstance,
    plan: BackfillPlan,
    *,
    defs: dg.Definitions | None = None,
    add_missing_symbols: bool = False,
    workers: int = 1,
    launched_by: str = "python-api",
    log_level: str = "WARNING",
    on_run_done: Callable[[RunOutcome, int, int], None] | None = None,
    asset_selection: list[str] | None = None,
    extra_tags: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
) -> BackfillReport:
    """Materialize the plan's runs on ``instance``; ``on_run_done(outcome, done, total)`` reports progress.

    ``defs`` defaults to the project's ``definitions.defs``; worker processes (``workers > 1``)
    always load the project's definitions, configured from the environment they inherit plus
    ``worker_env`` (the settings as environment variables, see ``resources.settings.settings_env``).
    """
    reap_dead_runs(instance)  # runs of an earlier killed backfill must not stay STARTED
    _sweep_temp_files(defs or _project_definitions(), plan)
    if add_missing_symbols:
        add_symbols(instance, plan.symbols)
    else:
        plan = without_removed_symbols(instance, plan)
        require_tracked(instance, plan.symbols)
    universe = tracked_symbols(instance, plan.market)
    all_tags = [{**(extra_tags or {}), **run_tags(plan, chunk, universe, launched_by, symbols)} for chunk, symbols in plan.runs]
    started = time.monotonic()
    outcomes: list[RunOutcome] = []

    def record(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        if on_run_done:
            on_run_done(outcome, len(outcomes), len(all_tags))

    if workers <= 1 or len(all_tags) == 1:
        for tags in all_tags:
            record(_execute_chunk(instance, plan.job_name, tags, log_level, defs, asset_selection))
    else:
        env = {**os.environ, **(worker_env or {})}
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(all_tags)), mp_context=worker_context(), initializer=die_with_parent) as pool:
            futures = [pool.submit(_execute_chunk_in_worker, instance.get_ref(), plan.job_name, tags, log_level, asset_selection, env) for tags in all_tags]
            for future in cf.as_completed(futures):
                record(future.result())
    outcomes.sort(key=lambda o: o.start)
    return BackfillReport(plan=plan, runs=outcomes, seconds=time.monotonic() - started)
