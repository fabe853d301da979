"""Data quality inside asset runs: the DataQuality resource, per-run recorders and asset check specs.

An asset adds each (symbol, date) frame it produced to a ``QualityRecorder``; the recorder
evaluates the dataset's rules over batches of partitions (one GX validation per batch, not per
partition), then for every partition:

* replaces its results in ``dq_metrics`` (value, unexpected count, status, thresholds);
* copies rows failing an error-status rule to ``quarantine/dq/{dataset}`` (kept, never deleted);
* sets or clears its ``dq_blocked`` marker, which downstream assets consult to skip that
  (symbol, date) only.

At the end of the run it returns one ``AssetCheckResult`` per rule group. Dagster runs a whole
date range in one step, so the per-partition outcome lives in the metadata; the result has ERROR
severity (and, the spec being blocking, stops downstream steps) only when every partition of the
run is blocked. When some partitions are blocked it fails with WARN severity and downstream assets
skip exactly those partitions.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from platform_assets.quality.config import DEFAULT_RULES_FILE, RuleSet, cached_rule_sets, default_rule_sets
from platform_assets.quality.engine import ENGINES, Evaluation, Rows, batch_from_frames, evaluate, row_count
from platform_assets.quality.metrics import (
    BLOCKED_SCHEMA,
    DQ_METRICS_SCHEMA,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_RANK,
    STATUS_WARN,
    dq_blocked_table,
    dq_metrics_table,
)
from platform_assets.quality.rules import QualityBatch
from platform_assets.symbol_days import listing
from resources.lake import CorruptLakeFileError, ParquetLake, Table, month_of

CHECK_PREFIX = "dq_"
SAMPLE_ROWS = 5


def dq_quarantine_table(dataset: str) -> Table:
    return Table(f"quarantine/dq/{dataset}")


def check_name(group: str) -> str:
    return f"{CHECK_PREFIX}{group}"


def dq_check_specs(asset_name: str, dataset: str) -> list[dg.AssetCheckSpec]:
    """One check per rule group of ``dataset`` in the repo's rule file (blocking if it can error)."""
    rule_set = default_rule_sets()[dataset]
    return [
        dg.AssetCheckSpec(
            check_name(group),
            asset=asset_name,
            blocking=rule_set.group_can_error(group),
            description=f"{group} rules for {dataset}: " + ", ".join(rule.name for rule in rule_set.rules_in(group)),
        )
        for group in rule_set.groups()
    ]


def check_groups(specs: list[dg.AssetCheckSpec]) -> list[str]:
    """The rule groups behind an asset's ``dq_*`` check specs."""
    return [spec.name.removeprefix(CHECK_PREFIX) for spec in specs if spec.name.startswith(CHECK_PREFIX)]


def log_blocked(context, upstream: str, blocked: list[str]) -> None:
    if blocked:
        context.log.warning(f"skipped {len(blocked)} symbol-days whose {upstream} failed an error DQ rule: {', '.join(blocked[:20])}")


def raw_dq_dataset(source: str) -> str:
    """Name under which a raw source's DQ results are stored (one per source)."""
    return f"raw_bars_{source}"


def dq_tables(dataset: str) -> list[Table]:
    """The lake tables the DQ recorder of ``dataset`` writes (results, block markers, failing rows):
    a symbol-day step heals them with its own tables (``SymbolDayStep(heals=...)``)."""
    return [dq_metrics_table(dataset), dq_blocked_table(dataset), dq_quarantine_table(dataset)]


def is_blocked(lake: ParquetLake, dataset: str, symbol: str, day: dt.date) -> bool:
    """True when (symbol, day) of ``dataset`` failed an error rule at its last check.

    Fails closed: when the marker file does not read (it is left in place for the DQ writer, which
    quarantines it and restores the markers it held), the date's stored DQ results decide (an
    error result = blocked), and without readable results the date counts as blocked: a lost
    marker never opens the gate. Nor does a marker file already quarantined whose dates were not
    re-evaluated yet (a record in the lake's lost-dates journal): those dates count as blocked
    until the owning asset's next run re-evaluates them (``platform_assets.quality.heal``)."""
    try:
        if lake.has_partition(dq_blocked_table(dataset), symbol, day, quarantine=False):
            return True
    except CorruptLakeFileError:
        return blocked_by_results(lake, dataset, symbol, day) is not False
    return any(day in lost.dates if lost.dates is not None else month_of(day) == lost.month
               for lost in lake.pending_lost_dates(dq_blocked_table(dataset), symbol))


def blocked_by_results(lake: ParquetLake, dataset: str, symbol: str, day: dt.date) -> bool | None:
    """Whether the stored DQ results of (symbol, day) hold an error (None: no readable results)."""
    try:
        source = lake.day_source(dq_metrics_table(dataset), symbol, day)
        if source is None:
            return None
        results = lake.read(dq_metrics_table(dataset), [symbol], [day], columns=["status"])
    except (CorruptLakeFileError, FileNotFoundError):
        return None
    return bool((results["status"] == STATUS_ERROR).any()) if len(results) else None


class _BlockedByCheck:
    """``blocked_dates`` when the marker folder does not read: each date asked ``is_blocked``."""

    def __init__(self, lake: ParquetLake, dataset: str, symbol: str):
        self.lake, self.dataset, self.symbol = lake, dataset, symbol

    def __contains__(self, day) -> bool:
        return is_blocked(self.lake, self.dataset, self.symbol, day)


def blocked_dates(lake: ParquetLake, dataset: str, symbol: str):
    """Every date ``is_blocked`` is true for (one folder scan for all of a symbol's dates): a set,
    or, when a marker file does not read or lost markers wait in the journal, a container asking
    ``is_blocked`` date by date."""
    try:
        stored = lake.stored_dates(dq_blocked_table(dataset), symbol, quarantine=False)
    except CorruptLakeFileError:
        return _BlockedByCheck(lake, dataset, symbol)
    return _BlockedByCheck(lake, dataset, symbol) if lake.pending_lost_dates(dq_blocked_table(dataset), symbol) else stored


class DataQuality(dg.ConfigurableResource):
    """Which rule file and engine the asset checks use (``gx`` = Great Expectations, or ``vectorised``)."""

    rules_file: str = str(DEFAULT_RULES_FILE)
    engine: str = "gx"
    batch_rows: int = 500_000

    def rule_set(self, dataset: str) -> RuleSet:
        if self.engine not in ENGINES:
            raise ValueError(f"DataQuality.engine must be one of {ENGINES}, got {self.engine!r}")
        rule_sets = cached_rule_sets(self.rules_file)
        return rule_sets.get(dataset, RuleSet(dataset, ()))

    def recorder(self, lake: ParquetLake, rules_dataset: str, stored_as: str | None = None, asset_key: str | None = None) -> "QualityRecorder":
        return QualityRecorder(lake, self.rule_set(rules_dataset), self.engine, self.batch_rows, stored_as or rules_dataset, asset_key)


class QualityRecorder:
    def __init__(self, lake: ParquetLake, rule_set: RuleSet, engine: str, batch_rows: int, stored_as: str, asset_key: str | None):
        self.lake, self.rule_set, self.engine, self.batch_rows = lake, rule_set, engine, batch_rows
        self.stored_as, self.asset_key = stored_as, asset_key
        self._frames, self._keys, self._arrays, self._stats, self._rows = [], [], [], [], 0
        self._lengths: list[int] = []
        self.partition_status: dict[tuple[str, dt.date], str] = {}
        self._rule_rows: list[pd.DataFrame] = []
        self._samples: dict[str, pd.DataFrame] = {}
        self.quarantined_rows = 0
        self._discarded: set[tuple[str, dt.date]] = set()
        self.reevaluated: list[str] = []  # symbol@date re-evaluated after their results were lost (``quality.heal``)

    def discard(self, symbol: str, day: dt.date) -> None:
        """The data of (symbol, day) did not land (its write failed): keep no DQ result for it.

        Not yet evaluated (the usual case: results are persisted in batches), it is left out of the
        evaluation; already persisted, its metrics, blocked marker and DQ quarantine are removed."""
        key = (symbol, day)
        self._discarded.add(key)
        if key in self.partition_status:
            del self.partition_status[key]
            for table in (dq_metrics_table, dq_blocked_table, dq_quarantine_table):
                self.lake.delete_partition(table(self.stored_as), symbol, day)
            self._rule_rows = [self._landed(rows) for rows in self._rule_rows]

    def block_upstream(self, symbol: str, day: dt.date, reason: str) -> None:
        """(symbol, day) was skipped because its input is DQ-blocked: its earlier results go (they
        judged data that is gone) and a block marker naming the upstream reason is stored, so a
        step reading this dataset skips the day as blocked too (not as a quiet "no input"). The
        next evaluation of the day that passes removes the marker."""
        for table in (dq_metrics_table, dq_quarantine_table):
            self.lake.delete_partition(table(self.stored_as), symbol, day)
        self._write_marker(symbol, day, f"upstream: {reason}"[:500])

    def _write_marker(self, symbol: str, day: dt.date, rules: str) -> None:
        """Store the block marker of (symbol, day): the DQ gate (``is_blocked``) skips it."""
        marker = pd.DataFrame({"dataset": [self.stored_as], "symbol": [symbol], "date": [day], "rules": [rules]})
        self.lake.write_partition(dq_blocked_table(self.stored_as), symbol, day, marker, BLOCKED_SCHEMA)

    def _landed(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Result rows of partitions whose data landed (without the discarded ones)."""
        if not self._discarded:
            return rows
        return rows[[(s, d) not in self._discarded for s, d in zip(rows["symbol"], rows["date"])]]

    def add(self, symbol: str, day: dt.date, frame: Rows, arrays: dict | None = None, stats: dict | None = None) -> None:
        """One (symbol, day) partition's rows: a frame or its columns (``engine.Rows``)."""
        rows = row_count(frame)
        self._frames.append(frame)
        self._keys.append((symbol, day))
        self._lengths.append(rows)
        self._arrays.append(arrays or {})
        self._stats.append(stats or {})
        self._rows += rows
        if self._rows >= self.batch_rows:
            self.flush()

    def add_dates(self, symbol: str, frame: pd.DataFrame, slices: list[tuple[dt.date, int, int]], stats: list[dict] | None = None) -> None:
        """Many (symbol, date) partitions held in one frame sorted by date: ``slices`` = (date,
        start, stop) row ranges (``curated_input.date_slices``), ``stats`` the statistics of each
        (as ``add`` takes them). Same results as one ``add`` per date."""
        if stats is not None and len(stats) != len(slices):
            raise ValueError(f"{len(stats)} statistics for {len(slices)} dates")
        if self._arrays and self._arrays[0]:
            self.flush()  # partitions with 2-D arrays are batched separately
        self._frames.append(frame)
        for i, (day, start, stop) in enumerate(slices):
            self._keys.append((symbol, day))
            self._lengths.append(stop - start)
            self._arrays.append({})
            self._stats.append(stats[i] if stats is not None else {})
        self._rows += len(frame)
        if self._rows >= self.batch_rows:
            self.flush()

    def flush(self) -> Evaluation | None:
        if not self._keys:
            return None
        batch = batch_from_frames(self._frames, self._keys, self._arrays if self._arrays[0] else None, self._stats, self._lengths)
        evaluation = evaluate(self.rule_set, batch, self.engine)  # type: ignore[arg-type]
        self._persist(batch, evaluation)
        self._frames, self._keys, self._arrays, self._stats, self._rows = [], [], [], [], 0
        self._lengths = []
        return evaluation

    def _persist(self, batch: QualityBatch, evaluation: Evaluation) -> None:
        results = evaluation.results.assign(dataset=self.stored_as)
        n_parts, n_rules = batch.n_parts, len(self.rule_set.rules)
        # results are rule-major; reorder partition-major once so each partition is one Arrow slice
        order = np.arange(n_rules * n_parts).reshape(n_rules, n_parts).T.ravel()
        table = pa.Table.from_pandas(results.iloc[order], schema=DQ_METRICS_SCHEMA, preserve_index=False)
        is_error = (results["status"].to_numpy() == STATUS_ERROR).reshape(n_rules, n_parts)
        names = np.array([rule.name for rule in self.rule_set.rules], dtype=object)
        with self.lake.batched_writes():  # one file per (table, symbol, month), not per symbol-day
            self._persist_parts(batch, evaluation, table, is_error, names, n_rules)
        self._rule_rows.append(self._landed(results.drop(columns=["evaluated_at"])))
        for name, mask in evaluation.failing.items():
            if name not in self._samples and mask.any():
                self._samples[name] = _rows_of(batch, mask, SAMPLE_ROWS)

    def _persist_parts(self, batch: QualityBatch, evaluation: Evaluation, table: pa.Table, is_error: np.ndarray, names: np.ndarray, n_rules: int) -> None:
        for p, (symbol, day) in enumerate(batch.keys):
            if (symbol, day) in self._discarded:
                continue  # its data did not land
            self.lake.write_partition(dq_metrics_table(self.stored_as), symbol, day, table.slice(p * n_rules, n_rules))
            self.partition_status[(symbol, day)] = evaluation.partition_status[p] if n_rules else STATUS_OK
            if n_rules and is_error[:, p].any():
                self._write_marker(symbol, day, ",".join(sorted(names[is_error[:, p]])))
            else:
                self.lake.delete_partition(dq_blocked_table(self.stored_as), symbol, day)
        self._quarantine(batch, evaluation.error_rows(batch, self.rule_set))

    def _quarantine(self, batch: QualityBatch, error_rows: dict[str, np.ndarray]) -> None:
        """Copy each row failing an error-status rule once, with the failed rules in ``dq_rule``."""
        if not error_rows:
            return
        any_failing = np.logical_or.reduce(list(error_rows.values()))
        index = np.flatnonzero(any_failing)
        labels = np.full(len(index), "", dtype=object)
        for rule_name, mask in error_rows.items():
            hit = mask[index]
            labels[hit] = np.where(labels[hit] == "", rule_name, labels[hit] + "," + rule_name)
        failing = _rows_of(batch, any_failing, None).assign(dq_rule=labels, dq_part=batch.part[index])
        for p, rows in failing.groupby("dq_part", sort=True):
            symbol, day = batch.keys[int(p)]
            if (symbol, day) in self._discarded:
                continue
            self.lake.write_partition(dq_quarantine_table(self.stored_as), symbol, day, rows.drop(columns="dq_part").reset_index(drop=True))
            self.quarantined_rows += len(rows)

    @classmethod
    def merged(cls, recorders: list["QualityRecorder"]) -> "QualityRecorder":
        """One recorder holding the flushed results of several (e.g. one per feature version)."""
        first = recorders[0]
        out = cls(first.lake, first.rule_set, first.engine, first.batch_rows, ", ".join(r.stored_as for r in recorders), first.asset_key)
        for recorder in recorders:
            recorder.flush()
            out._rule_rows += recorder._rule_rows
            out.partition_status.update({(recorder.stored_as, *key): status for key, status in recorder.partition_status.items()})
            out._samples = {**recorder._samples, **out._samples}
            out.quarantined_rows += recorder.quarantined_rows
            out.reevaluated += recorder.reevaluated
        return out

    def finish(self, spec_groups: list[str] | None = None) -> list[dg.AssetCheckResult]:
        """Flush, then one check result per group (``spec_groups`` = the asset's declared groups)."""
        self.flush()
        results = pd.concat(self._rule_rows, ignore_index=True) if self._rule_rows else pd.DataFrame(columns=DQ_METRICS_SCHEMA.names)
        groups = spec_groups if spec_groups is not None else self.rule_set.groups()
        return [self._group_result(group, results[results["rule_group"] == group]) for group in groups]

    def _group_result(self, group: str, results: pd.DataFrame) -> dg.AssetCheckResult:
        checked = len(self.partition_status)
        rank = results["status"].map(STATUS_RANK)
        worst = rank.groupby([results["symbol"], results["date"]]).max() if len(results) else pd.Series(dtype=float)
        errors = sorted(f"{s}@{d}" for (s, d) in worst.index[worst.to_numpy() == 2])
        warns = sorted(f"{s}@{d}" for (s, d) in worst.index[worst.to_numpy() == 1])
        all_blocked = checked > 0 and all(status == STATUS_ERROR for status in self.partition_status.values())
        if errors and all_blocked:
            passed, severity = False, dg.AssetCheckSeverity.ERROR
        elif errors or warns:
            passed, severity = False, dg.AssetCheckSeverity.WARN
        else:
            passed, severity = True, dg.AssetCheckSeverity.WARN
        per_rule = _per_rule_table(results)
        samples = {name: frame for name, frame in self._samples.items() if name in set(results["metric"])}
        metadata = {
            "dataset": self.stored_as,
            "engine": self.engine,
            "partitions_checked": checked,
            "partitions_error": len(errors),
            "partitions_warn": len(warns),
            "blocked_partitions": ", ".join(errors[:50]),
            "warn_partitions": ", ".join(warns[:50]),
            "rules": dg.MetadataValue.md(per_rule),
            "quarantined_rows": self.quarantined_rows,
        }
        if self.reevaluated:
            metadata["reevaluated_after_quarantine"] = listing(self.reevaluated)
        if samples:
            metadata["sample_failing_rows"] = dg.MetadataValue.md(
                "\n\n".join(f"**{name}**\n\n{frame.head(SAMPLE_ROWS).to_markdown(index=False)}" for name, frame in samples.items())
            )
        if not len(results):
            metadata["note"] = "no rules in this group for the configured rule file"
        return dg.AssetCheckResult(asset_key=self.asset_key, check_name=check_name(group), passed=passed, severity=severity, metadata=metadata)


def _rows_of(batch: QualityBatch, mask: np.ndarray, limit: int | None) -> pd.DataFrame:
    index = np.flatnonzero(mask)[:limit] if limit else np.flatnonzero(mask)
    rows = batch.frame.iloc[index].copy()
    for name, values in batch.array_values_at(index).items():
        rows[name] = values
    if "symbol" not in rows.columns:
        rows.insert(0, "symbol", [batch.keys[p][0] for p in batch.part[index]])
    return rows.reset_index(drop=True)


def _per_rule_table(results: pd.DataFrame) -> str:
    if results.empty:
        return "no results"
    table = results.groupby("metric", sort=False).agg(
        rule_type=("rule_type", "first"),
        max_value=("value", "max"),
        unexpected=("unexpected_count", "sum"),
        warn=("warn_threshold", "first"),
        error=("error_threshold", "first"),
    )
    table["n_warn"] = (results["status"] == STATUS_WARN).groupby(results["metric"], sort=False).sum()
    table["n_error"] = (results["status"] == STATUS_ERROR).groupby(results["metric"], sort=False).sum()
    return table.reset_index().to_markdown(index=False)


