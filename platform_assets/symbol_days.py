"""One step pattern for every date-partitioned table built per (symbol, date), with truthful status.

A derived asset (curated bars, aligned bars, feature groups, labels, crypto curated bars) runs a
date range in one Dagster step and, inside it, one pure transform per (symbol, date). This module
owns everything around that transform, so every table behaves the same in the UI:

* **Failure isolation.** An exception in one (symbol, date) is caught, logged with its traceback,
  and recorded as that symbol-day's failure; every other symbol-day is still computed and written.
* **Per-partition numbers.** Each date partition's materialization carries its own metadata
  (symbols expected / written / kept / without input / DQ-blocked / failed, rows), never the whole
  run's totals (``context.add_asset_metadata(..., partition_key=...)``).
* **Completeness per date, per symbol.** Each date gets its own evaluation of the
  ``symbols_complete`` check (a partitioned check): it passes only when every *tracked* symbol of
  the market has this table's data stored for that date (whoever wrote it), and otherwise names
  the missing symbols and why (no input, DQ-blocked, failed). Severity is ERROR when a symbol is
  missing for a reason other than a DQ block, WARN when every gap is a DQ block (a blocked day is
  the DQ system working as designed). Runs sharing a date (symbol groups of a backfill) judge it in
  the order Dagster ranks their evaluations (the order they were planned): a run waits for the
  runs planned before it to judge first (``earlier_judges``), so the date's latest evaluation is
  made with every run's symbols landed.
* **No green without data.** A date for which this run wrote nothing although it had symbols to
  process is *not* reported as materialized: the dates that did land are recorded as materialized
  one by one (with their own metadata), then the step fails with a one-line summary naming the real
  cause (the first failing symbol-day's exception, or "no input data"), so Dagster shows exactly
  those dates as failed. Steps downstream of a failed step do not run in that run (Dagster's rule);
  re-running the range once the cause is fixed is idempotent.
* **One bad symbol-day never sinks the others.** A date on which some symbols landed and another
  raised stays materialized for the symbols that landed, its ``symbols_complete`` evaluation fails
  at ERROR naming the symbol and the exception, its metadata lists ``symbols_failed``, and the run
  goes on through every downstream layer. The run-level check result carries the one-line summary.

Why a check and not the partition status for "a tracked symbol is missing": with date partitions a
ranged run can only mark whole dates; failing a date because one of 500 symbols had no vendor data
(or was DQ-blocked on purpose) would hold back every other symbol's downstream layers. The check
makes the gap visible per date, naming the symbols, at a bookkeeping cost of one record per date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from platform_assets.automation.run_reaper import run_process_gone
from platform_assets.check_targets import targeting
from platform_assets.event_batches import log_check_evaluations
from platform_assets.calendars import session_under_way
from platform_assets.partitions import SYMBOL_GROUP_TAG, market_of_asset, materialized_dates
from platform_assets.progress import Progress
from resources.lake import month_of
from resources.lost_dates import hand_back as hand_back_lost_dates
from resources.lake_batch import FlushError

COMPLETE_CHECK = "symbols_complete"
SESSION_UNDER_WAY_KEY = "session_under_way"  # on an evaluation made before the session closed
MISSING_NAMES_KEY = "missing_symbol_names"  # every missing symbol, comma-separated (what a retry re-runs)
INCOMPLETE_TAG_PREFIX = "platform/incomplete."  # + asset name: a run that left symbol-days missing (ERROR)
StepEvents = Iterator[dg.MaterializeResult | dg.AssetMaterialization]
"""What an asset built on ``SymbolDayStep`` yields (``yield from step.finish(...)``)."""
JUDGE_WAIT_SECONDS = 600.0  # the longest a run waits for earlier-planned runs to judge its dates
JUDGE_POLL_SECONDS = 0.2
PLANNED_ROWS_LOOKED_AT = 5000  # the newest planned evaluations of a check (runs in progress are among them)

WRITTEN, KEPT, NO_INPUT, BLOCKED, FAILED = "written", "kept", "no_input", "blocked", "failed"
MAX_LISTED = 50
MAX_TRACEBACKS = 5


@dataclass(frozen=True)
class Outcome:
    """What one (symbol, date) transform did."""

    status: str
    rows: int = 0
    detail: str = ""
    stats: dict = field(default_factory=dict)


def written(rows: int, **stats) -> Outcome:
    return Outcome(WRITTEN, rows=rows, stats=stats)


def kept(rows: int = 0, **stats) -> Outcome:
    return Outcome(KEPT, rows=rows, stats=stats)


def stored_batch(new: bool, rows: int, **stats) -> Outcome:
    """An ingested batch: written when new, kept when the same batch was stored already."""
    return (written if new else kept)(rows, **stats)


def no_input(detail: str = "") -> Outcome:
    return Outcome(NO_INPUT, detail=detail)


def blocked(detail: str = "") -> Outcome:
    return Outcome(BLOCKED, detail=detail)


def complete_check_spec(asset_name: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    """The per-date completeness check every symbol-day table carries."""
    return dg.AssetCheckSpec(
        COMPLETE_CHECK,
        asset=asset_name,
        partitions_def=partitions_def,
        blocking=False,
        description=(
            "Per date: every tracked symbol has this table's data stored for the date. Fails naming "
            "the missing symbols and why (no input, DQ-blocked, failed); ERROR unless every gap is a DQ block."
        ),
    )


@dataclass
class DateReport:
    """Outcomes of one date partition."""

    day: dt.date
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def symbols_with(self, status: str) -> list[str]:
        return sorted(s for s, o in self.outcomes.items() if o.status == status)

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.outcomes.values())

    @property
    def landed(self) -> bool:
        """Something was written (or kept) for this date."""
        return bool(self.symbols_with(WRITTEN) or self.symbols_with(KEPT))

    def metadata(self, stats_keys: tuple[str, ...] = ()) -> dict:
        failed = {s: self.outcomes[s].detail for s in self.symbols_with(FAILED)}
        meta: dict = {
            "date": self.day.isoformat(),
            "symbols_processed": len(self.outcomes),
            "symbols_written": len(self.symbols_with(WRITTEN)),
            "symbols_kept": len(self.symbols_with(KEPT)),
            "rows": self.rows,
            "symbols_without_input": listing(self.symbols_with(NO_INPUT)),
            "symbols_dq_blocked": listing(self.symbols_with(BLOCKED)),
            "symbols_failed": listing([f"{s}: {cause}" for s, cause in failed.items()]),
        }
        for key in stats_keys:
            meta[key] = sum(int(o.stats.get(key, 0)) for o in self.outcomes.values())
        return meta


def earlier_judges(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, run_id: str, dates: Sequence[dt.date]) -> set[str]:
    """Runs in progress (STARTED, their process alive) other than ``run_id`` whose evaluation of
    ``check_key`` on one of ``dates`` is still planned and was planned before ``run_id``'s (a lower
    row id)."""
    running = {  # usually none: one run at a time; then no look at the planned evaluations
        record.dagster_run.run_id
        for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if record.dagster_run.run_id != run_id and run_process_gone(instance, record.dagster_run) is None  # a killed run never judges
    }
    if not running:
        return set()
    planned = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=PLANNED_ROWS_LOOKED_AT, status={AssetCheckExecutionRecordStatus.PLANNED}
    )
    days = {day.isoformat() for day in dates}
    own = {record.partition: record.id for record in planned if record.run_id == run_id and record.partition in days}
    return {record.run_id for record in planned if record.run_id in running and record.partition in own and record.id < own[record.partition]}


def listing(items: list[str]) -> str:
    """Up to ``MAX_LISTED`` items, comma-separated, and how many more (for check metadata)."""
    if not items:
        return ""
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} (+{len(items) - MAX_LISTED} more)"


class SymbolDayStep:
    """Runs ``transform(symbol, day) -> Outcome`` over a run's dates x symbols (or takes the outcomes
    a producer ``record``s), then reports truthfully.

    ``is_stored(symbol, day)`` tells whether the table holds the data of a (symbol, date) after the
    run (for the completeness check over every tracked symbol, ``tracked``).
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        asset_name: str,
        symbols: list[str],
        dates: list[dt.date],
        *,
        tracked: list[str] | None = None,
        is_stored: Callable[[str, dt.date], bool] | None = None,
        stats_keys: tuple[str, ...] = (),
        lake=None,
        quality: Sequence = (),
        heals: Sequence = (),
    ):
        self.context, self.asset_name = context, asset_name
        self.symbols, self.dates = symbols, dates
        self.tracked = sorted(set(tracked if tracked is not None else symbols))
        self.is_stored = is_stored
        self.stats_keys = stats_keys
        self.lake = lake
        self.quality = list(quality)  # DQ recorders: told when a symbol-day's data did not land
        self.reports = {day: DateReport(day) for day in dates}
        self.heals = list(heals)  # lake tables this step writes: dates they lose to a quarantined file are re-computed
        self.healed: dict[dt.date, DateReport] = {}  # dates outside the run re-computed after such a loss
        self._healed_from: dict[tuple[str, dt.date], str] = {}  # (symbol, date) -> where the file that held it went
        self._handed_back: set = set()  # lost-dates records whose re-computation failed: back in the journal for the next run
        self._per_date: Callable[[str, dt.date], Outcome] | None = None
        self._materialized: set[dt.date] | None = None
        self._tracebacks = 0
        group = context.run.tags.get(SYMBOL_GROUP_TAG)
        self._not_in_run = (  # why a tracked symbol this run did not process is missing
            f"not in this run (symbol group {group} of a backfill split by symbols; another group's run may not have stored it yet), nothing stored"
            if group else "not in this run, nothing stored"
        )

    def run(self, transform: Callable[[str, dt.date], Outcome]) -> "SymbolDayStep":
        """Symbol by symbol, date by date. With a ``lake``, writes are batched: each symbol's
        partitions are written once its dates are done, one file per (table, month)
        (``ParquetLake.batched_writes``); a partition whose write fails makes its symbol-day FAILED."""
        self._per_date = transform
        progress = Progress(self.context, self.asset_name, len(self.symbols) * len(self.dates))
        with self._batching():
            for symbol in self.symbols:
                for day in self.dates:
                    progress.step()
                    self.reports[day].outcomes[symbol] = self._attempt(transform, symbol, day)
                self._clear_blocked(symbol)
                self._flush(symbol)
            self._heal_lost_dates()
        return self

    def record(self, symbol: str, day: dt.date, outcome: Outcome) -> None:
        """Record the outcome of a (symbol, date) a producer handled itself (a vendor stream that
        yields its symbol-days in its own order), for ``finish`` to report like ``run``'s."""
        self.reports[day].outcomes[symbol] = outcome

    def run_by_symbol(
        self,
        transform_days: Callable[[str, list[dt.date]], dict[dt.date, Outcome]],
        fallback: Callable[[str, dt.date], Outcome],
    ) -> "SymbolDayStep":
        """Like ``run``, but ``transform_days(symbol, dates)`` does all of a symbol's dates at once
        (one read, one vectorised computation, one write per month) and returns every date's outcome.
        If it raises, that symbol's dates are done again one by one with ``fallback`` (the per-date
        transform), so one bad symbol-day still fails alone, with its own exception. Without a lake
        that batches writes (``LAKE_BATCH_WRITES=false``) this is ``run(fallback)``: the per-date path."""
        if not self._batches:
            return self.run(fallback)
        self._per_date = fallback
        progress = Progress(self.context, self.asset_name, len(self.symbols) * len(self.dates))
        with self._batching():
            for symbol in self.symbols:
                try:
                    outcomes = transform_days(symbol, list(self.dates))
                    if set(outcomes) != set(self.dates):
                        raise RuntimeError(f"batched transform answered {len(set(outcomes) & set(self.dates))} of the {len(self.dates)} dates (and {len(set(outcomes) - set(self.dates))} others)")
                except Exception as exc:  # noqa: BLE001 - redo the symbol per date to isolate the bad day
                    self.context.log.warning(f"{self.asset_name} {symbol}: batched pass failed ({type(exc).__name__}: {exc}); redoing its dates one by one")
                    outcomes = {day: self._attempt(fallback, symbol, day) for day in self.dates}
                for day, outcome in outcomes.items():
                    self.reports[day].outcomes[symbol] = outcome
                progress.step(len(self.dates))
                self._clear_blocked(symbol)
                self._flush(symbol)
            self._heal_lost_dates()
        return self

    def _clear_blocked(self, symbol: str) -> None:
        """Remove what this step had stored for the symbol's DQ-blocked dates: data derived from an
        input now known to fail an error rule (an earlier delivery, or one stored before it was
        judged) must neither be served nor count the date as stored in the completeness check. The
        step's DQ datasets mark those dates blocked upstream, so the steps reading them skip the
        dates as blocked (and clear theirs) rather than as a quiet "no input"."""
        blocked_days = {day: o.detail for day, report in self.reports.items() if (o := report.outcomes.get(symbol)) is not None and o.status == BLOCKED}
        if self.lake is None or not blocked_days:
            return
        for recorder in self.quality:
            for day, reason in blocked_days.items():
                recorder.block_upstream(symbol, day, reason)
        tables = self._data_tables()
        if tables is None:
            return
        cleared = [day for day in blocked_days if any([self.lake.delete_partition(table, symbol, day) for table in tables])]
        if cleared:
            self.context.log.warning(f"{self.asset_name} {symbol}: removed the data stored for {len(cleared)} date(s) whose input is now "
                                     f"DQ-blocked: {', '.join(d.isoformat() for d in cleared[:10])}")

    # -- dates lost to a quarantined file ---------------------------------------------------------

    def _heal_lost_dates(self) -> None:
        """Re-compute, with the per-date transform, the dates of this step's tables (``heals``)
        that left the lake with a corrupt file quarantined during the step (a month file holds
        dates the run was not asked for: without this they would be gone while Dagster shows them
        materialized). ``finish`` records each as materialized (or failing its completeness
        check) on its own partition. Rounds repeat while re-computing finds more such files."""
        if self.lake is None or not self.heals or self._per_date is None:
            return
        for _ in range(3):
            with self.lake.taking_lost_dates(self.heals, {*self.tracked, *self.symbols}, where=lambda lost: lost not in self._handed_back) as losses:
                if not losses:
                    return
                todo: dict[str, set[dt.date]] = {}
                record_days = {}
                for lost in losses:
                    days = record_days[lost] = self._lost_days(lost)
                    for day in days:
                        self._healed_from.setdefault((lost.symbol, day), lost.moved_to)
                    todo.setdefault(lost.symbol, set()).update(days)
                    self.context.log.warning(
                        f"{self.asset_name}: {lost.table} {lost.symbol} {lost.month}: a corrupt file was moved to {lost.moved_to}; "
                        f"re-computing the {len(days)} date(s) it held outside this run" + ("" if lost.dates is not None else " (its footer did not read: the month's materialized dates)")
                    )
                for symbol, days in todo.items():
                    for day in sorted(days):
                        report = self.healed.setdefault(day, DateReport(day))
                        outcome = self._attempt(self._per_date, symbol, day)
                        if outcome.status == NO_INPUT:  # it was stored, and now it is gone: a failure of this run, not a quiet gap
                            outcome = Outcome(FAILED, detail=f"lost with the corrupt file moved to {self._healed_from[(symbol, day)]} and not re-computed: no input ({outcome.detail})")
                        report.outcomes[symbol] = outcome
                    self._flush(symbol)
                for recorder in self.quality:  # their DQ results stored now (the records leave the journal as the block ends): ``finish`` heals after the asset finished its recorders
                    recorder.flush()
                failed = [lost for lost, days in record_days.items()
                          if any(self._failed_again(lost.symbol, day) for day in (*days, *(lost.dates or ())))]
                if failed:  # back to the journal: the next run re-computes them (settled, the loss would be forgotten behind a green re-run)
                    hand_back_lost_dates(failed)
                    self._handed_back.update(failed)

    def _failed_again(self, symbol: str, day: dt.date) -> bool:
        """Whether this step's (re-)computation of (symbol, day) failed (a run date or a healed one)."""
        report = self.healed.get(day) or self.reports.get(day)
        outcome = report.outcomes.get(symbol) if report is not None else None
        return outcome is not None and outcome.status == FAILED

    def _lost_days(self, lost) -> list[dt.date]:
        """The dates of ``lost`` not already computed by this step for its symbol."""
        days = lost.dates if lost.dates is not None else {d for d in self._materialized_dates() if month_of(d) == lost.month}
        done = {day for day, report in (*self.reports.items(), *self.healed.items()) if lost.symbol in report.outcomes}
        return sorted(day for day in days if day not in done)

    def _materialized_dates(self) -> set[dt.date]:
        if self._materialized is None:
            self._materialized = materialized_dates(self.context.instance, dg.AssetKey(self.asset_name))
        return self._materialized

    @property
    def _batches(self) -> bool:
        """Whether this step batches its lake writes: a lake with ``batch_writes`` on and several
        dates. One date per symbol (a daily run) writes each partition directly: buffering one file
        per table and symbol saves nothing and measured ~8% slower on a 500-symbol daily run."""
        return self.lake is not None and self.lake.batch_writes and len(self.dates) > 1

    def _batching(self):
        return self.lake.batched_writes() if self._batches else contextlib.nullcontext()

    def _attempt(self, transform: Callable[[str, dt.date], Outcome], symbol: str, day: dt.date) -> Outcome:
        try:
            return transform(symbol, day)
        except Exception as exc:  # noqa: BLE001 - isolate one symbol-day's failure, report it below
            if self._tracebacks < MAX_TRACEBACKS:
                self._tracebacks += 1
                self.context.log.error(f"{self.asset_name} {symbol}@{day} failed:\n{traceback.format_exc()}")
            return Outcome(FAILED, detail=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])

    def _flush(self, symbol: str) -> None:
        if self.lake is None:
            return
        try:
            self.lake.flush_pending(symbol=symbol)
        except FlushError as error:
            self.context.log.error(f"{self.asset_name}: {error}")
            tables = self._data_tables()
            data_tables = None if tables is None else {str(table) for table in tables}
            for (table, _, day), exc in error.failures.items():
                report = self.reports.get(day) if day in self.reports else self.healed.get(day)
                if report is not None and symbol in report.outcomes:
                    report.outcomes[symbol] = Outcome(FAILED, detail=f"writing {table} failed: {type(exc).__name__}: {exc}".splitlines()[0][:300])
                if data_tables is None or str(table) in data_tables:  # the data did not land: no DQ result for it
                    for recorder in self.quality:  # (a side table's failure keeps them: they judged data that is stored, markers included)
                        recorder.discard(symbol, day)

    def _data_tables(self) -> list | None:
        """The step's data tables (``lake_status.tables_of``); None when it has no such entry."""
        from platform_assets.lake_status import tables_of  # it imports this module

        try:
            return tables_of(self.asset_name)
        except ValueError:
            return None

    # -- reporting -------------------------------------------------------------------------------

    def outcomes_of(self, status: str) -> list[str]:
        return [f"{s}@{r.day}" for r in self._all_reports() for s in r.symbols_with(status)]

    def _all_reports(self) -> list[DateReport]:
        """The run's dates, then the dates re-computed after a quarantined file."""
        return [*self.reports.values(), *(r for day, r in sorted(self.healed.items()) if day not in self.reports)]

    def _check_evaluation(self, report: DateReport) -> tuple[bool, dg.AssetCheckSeverity, dict]:
        missing = []
        for symbol in self.tracked:
            outcome = report.outcomes.get(symbol)
            if outcome is not None and outcome.status in (WRITTEN, KEPT):
                continue
            if outcome is not None and outcome.status == FAILED:
                missing.append((symbol, f"failed: {outcome.detail}"))
            elif self.is_stored is not None and self.is_stored(symbol, report.day):
                continue
            elif outcome is None:
                missing.append((symbol, self._not_in_run))
            elif outcome.status == BLOCKED:
                missing.append((symbol, "DQ-blocked"))
            else:
                missing.append((symbol, f"no input data: {outcome.detail}" if outcome.detail else "no input data"))
        only_blocked = bool(missing) and all(reason == "DQ-blocked" for _, reason in missing)
        # a session still under way (an intraday run, live capture) is partial by nature: symbols not
        # there yet warn; a symbol whose source raised is an error whenever it happens
        under_way = bool(missing) and not report.symbols_with(FAILED) and session_under_way(market_of_asset(self.asset_name), report.day)
        severity = dg.AssetCheckSeverity.WARN if only_blocked or under_way else dg.AssetCheckSeverity.ERROR
        meta = {
            "date": report.day.isoformat(),
            "tracked_symbols": len(self.tracked),
            "missing_symbols": len(missing),
            "missing": listing([f"{s} ({why})" for s, why in missing]),
            **({MISSING_NAMES_KEY: ",".join(s for s, _ in missing)} if missing else {}),
            **({SESSION_UNDER_WAY_KEY: "the session has not closed: symbols may still arrive (WARN until the close)"} if under_way else {}),
        }
        return not missing, severity, meta

    def finish(self, check_results: list[dg.AssetCheckResult] | None = None) -> StepEvents:
        """Per-date metadata and checks; fails the step for dates that did not land (see module doc).

        A generator (``yield from step.finish(...)``): each date's completeness evaluation is logged
        after the materialization it judges is stored, pointing at it (``check_targets``), so the
        check's Partitions tab and the date's page show it (an evaluation logged before its date's
        materialization counts as stale in Dagster and the date showed "Missing", red or not)."""
        context, asset_key = self.context, dg.AssetKey(self.asset_name)
        # one date launched as that partition: Dagster files the check result under it; a one-date
        # range (our backfills, daily refreshes) has no partition key, so its date is logged explicitly
        single = len(self.dates) == 1 and context.has_partition_key
        self._wait_for_earlier_judges()
        evaluations = {day: self._check_evaluation(report) for day, report in self.reports.items()}
        self._heal_lost_dates()  # judging may have met (and quarantined) a corrupt file of another symbol
        healed = {day: self._check_evaluation(report) for day, report in sorted(self.healed.items()) if day not in self.reports}
        self._report_other_losses()
        not_landed = [r for r in self.reports.values() if self.symbols and not r.landed]
        failed = self.outcomes_of(FAILED)
        self._log_summary()
        yield from self._healed_materializations(healed)
        if not_landed:
            for report in self.reports.values():
                if report.landed:
                    yield dg.AssetMaterialization(asset_key=asset_key, partition=report.day.isoformat(), metadata=report.metadata(self.stats_keys))
            self._log_evaluations({**evaluations, **healed})
            raise dg.Failure(description=self._failure_line(not_landed, failed), metadata={"dates_not_landed": ", ".join(r.day.isoformat() for r in not_landed)})
        for report in self.reports.values():
            context.add_asset_metadata(report.metadata(self.stats_keys), partition_key=report.day.isoformat())
        overall = self._overall_result({**evaluations, **({} if single else healed)}, single)
        self._tag_incomplete_run(overall)
        yield dg.MaterializeResult(check_results=[overall, *(check_results or [])])
        self._log_evaluations({**({} if single else evaluations), **healed})

    def _tag_incomplete_run(self, overall: dg.AssetCheckResult) -> None:
        """A run that stored some symbols but missed others (a source raised, no input) succeeds, as
        the other symbols' data is there and good; the missing ones fail their dates' checks (ERROR)
        and the run carries ``platform/incomplete.<asset>`` (the summary), shown in the Runs list
        and on the run's page, so a green run with red symbol-days is visible where runs are watched."""
        if overall.passed or overall.severity != dg.AssetCheckSeverity.ERROR:
            return
        meta = overall.metadata or {}
        found = meta.get("summary") or meta.get("missing")  # a range's run summary, or the one date's missing symbols
        text = str(getattr(found, "value", found) or "symbol-days missing")
        self.context.instance.add_run_tags(self.context.run_id, {f"{INCOMPLETE_TAG_PREFIX}{self.asset_name}": text[:240]})

    def _log_evaluations(self, judged: dict) -> None:
        """Each date's completeness evaluation, pointed at the date's latest stored materialization."""
        if not judged:
            return
        asset_key = dg.AssetKey(self.asset_name)
        log_check_evaluations(self.context, targeting(self.context.instance, [
            dg.AssetCheckEvaluation(asset_key=asset_key, check_name=COMPLETE_CHECK, passed=passed, severity=severity, metadata=meta, partition=day.isoformat())
            for day, (passed, severity, meta) in sorted(judged.items())
        ]))

    def _healed_materializations(self, healed: dict) -> Iterator[dg.AssetMaterialization]:
        """Each re-computed date that landed is recorded as materialized on its own partition,
        its metadata naming the quarantined file its data had been lost with."""
        for day in healed:
            report = self.healed[day]
            if report.landed:
                moved = sorted({self._healed_from[(s, day)] for s in report.outcomes if (s, day) in self._healed_from})
                meta = {**report.metadata(self.stats_keys), "recomputed_after_quarantine": ", ".join(moved)}
                yield dg.AssetMaterialization(asset_key=dg.AssetKey(self.asset_name), partition=day.isoformat(), metadata=meta)

    def _report_other_losses(self) -> None:
        """Losses of tables this step does not write (its inputs, read and found corrupt): their
        dates fail their own asset's completeness check (``platform_assets.lake_status``)."""
        if self.lake is None:
            return
        from platform_assets.lake_status import report_lost_dates  # it imports this module

        report_lost_dates(self.context.instance, self.lake, self.context.log.warning)

    def _wait_for_earlier_judges(self) -> None:
        """Wait until every run still in progress that was *planned* before this one on one of this
        run's dates (symbol groups of a backfill, a daily refresh beside a backfill) has judged that
        date. Dagster takes a date's latest evaluation from the run planned last, whenever it judged;
        a later-planned run judging before an earlier one's symbols landed would name them missing
        for good. Waiting, the later-planned run judges with every earlier run's data landed. A run
        waits only for runs planned before it (each run plans all its dates at once: no cycles),
        never for queued runs, and at most ``JUDGE_WAIT_SECONDS`` (then judges, with a warning)."""
        check_key = dg.AssetCheckKey(dg.AssetKey(self.asset_name), COMPLETE_CHECK)
        waiting = earlier_judges(self.context.instance, check_key, self.context.run_id, self.dates)
        if not waiting:
            return
        self.context.log.info(f"{self.asset_name}: waiting for run(s) {', '.join(sorted(r[:8] for r in waiting))}, planned before this one on these dates, to judge them first")
        deadline = time.monotonic() + JUDGE_WAIT_SECONDS
        while waiting and time.monotonic() < deadline:
            time.sleep(JUDGE_POLL_SECONDS)
            waiting = earlier_judges(self.context.instance, check_key, self.context.run_id, self.dates)
        if waiting:
            self.context.log.warning(f"{self.asset_name}: run(s) {', '.join(sorted(waiting))} still have not judged after {JUDGE_WAIT_SECONDS:g} s; judging now")

    def _overall_result(self, evaluations: dict, single: bool) -> dg.AssetCheckResult:
        if single:
            passed, severity, meta = next(iter(evaluations.values()))
            return dg.AssetCheckResult(check_name=COMPLETE_CHECK, passed=passed, severity=severity, metadata=meta)
        failing = [day.isoformat() for day, (passed, _, _) in evaluations.items() if not passed]
        errors = [day for day, (passed, sev, _) in evaluations.items() if not passed and sev == dg.AssetCheckSeverity.ERROR]
        failed = self.outcomes_of(FAILED)
        summary = self._first_failure() or (f"{len(failing)} of {len(evaluations)} date(s) miss tracked symbols" if failing else "every tracked symbol stored on every date")
        return dg.AssetCheckResult(
            check_name=COMPLETE_CHECK,
            passed=not failing,
            severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
            metadata={
                "dates_checked": len(evaluations), "dates_incomplete": len(failing), "incomplete": listing(failing),
                "symbol_days_failed": len(failed), "summary": summary,
            },
            description=f"run summary: {summary}; each date's own evaluation is recorded on its partition",
        )

    def _first_failure(self) -> str:
        for report in self._all_reports():
            for symbol in report.symbols_with(FAILED):
                return f"{len(self.outcomes_of(FAILED))} symbol-day(s) failed, first {symbol}@{report.day}: {report.outcomes[symbol].detail}"
        return ""

    def _failure_line(self, not_landed: list[DateReport], failed: list[str]) -> str:
        parts = [self._first_failure()] if failed else []
        empty = [r.day.isoformat() for r in not_landed if not r.symbols_with(FAILED)]
        if empty:
            parts.append(f"nothing to write for {len(empty)} date(s) (no input data: {listing(empty)})")
        landed = len(self.dates) - len(not_landed)
        return f"{self.asset_name}: " + "; ".join(parts) + f"; {landed} of {len(self.dates)} date(s) landed and are recorded as materialized"

    def _log_summary(self) -> None:
        if self.outcomes_of(FAILED):
            self.context.log.error(f"{self.asset_name}: {self._first_failure()}")
        for status, label in ((NO_INPUT, "without input data"), (BLOCKED, "DQ-blocked upstream, skipped")):
            items = self.outcomes_of(status)
            if items:
                self.context.log.warning(f"{self.asset_name}: {len(items)} symbol-day(s) {label}: {listing(items[:20])}")
