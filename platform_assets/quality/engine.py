"""Evaluating a rule set over a batch of partitions: per-(partition, rule) results and failing rows.

Pure: no I/O. ``engine="gx"`` runs rules with a Great Expectations expectation through GX and the
rest through their vectorised code; ``engine="vectorised"`` runs everything vectorised. Both give
the same results (tested), so the faster path can stand in where GX's fixed cost matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from platform_assets.quality.config import RuleSet
from platform_assets.quality.metrics import DQ_METRICS_SCHEMA, STATUS_ERROR, STATUSES
from platform_assets.quality.rules import PartitionRule, QualityBatch, RowRule

Engine = Literal["gx", "vectorised"]
ENGINES = ("gx", "vectorised")
STATUS_NAMES = np.array(STATUSES, dtype=object)


@dataclass
class Evaluation:
    """Outcome of one rule set over one batch."""

    results: pd.DataFrame  # one row per (partition, rule), DQ_METRICS_SCHEMA columns
    failing: dict[str, np.ndarray] = field(default_factory=dict)  # row rule -> failing-row mask
    partition_status: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def error_rows(self, batch: QualityBatch, rules: RuleSet) -> dict[str, np.ndarray]:
        """Failing rows of row rules in partitions where that rule's status is error."""
        out = {}
        # results are rule-major, partitions in batch order within each rule (``evaluate``)
        status = self.results["status"].to_numpy().reshape(len(rules.rules), batch.n_parts)
        for index, rule in enumerate(rules.rules):
            mask = self.failing.get(rule.name)
            if mask is None or not mask.any():
                continue
            erroring = status[index] == STATUS_ERROR
            selected = mask & erroring[batch.part]
            if selected.any():
                out[rule.name] = selected
        return out


def evaluate(rule_set: RuleSet, batch: QualityBatch, engine: Engine = "gx", evaluated_at: pd.Timestamp | None = None) -> Evaluation:
    if engine not in ENGINES:
        raise ValueError(f"unknown DQ engine {engine!r}; expected one of {ENGINES}")
    evaluated_at = evaluated_at or pd.Timestamp.now(tz="UTC")
    row_rules = [r for r in rule_set.rules if isinstance(r, RowRule)]
    gx_rules = [r for r in row_rules if engine == "gx" and r.runs_in_gx]
    failing = {}
    if gx_rules and len(batch.frame):
        from platform_assets.quality.gx_engine import gx_runner

        failing.update(gx_runner().failing_rows(gx_rules, batch.frame))
    for rule in row_rules:
        if rule.name not in failing:
            failing[rule.name] = rule.failing_rows(batch) if len(batch.frame) else np.zeros(0, dtype=bool)

    symbols = [key[0] for key in batch.keys]
    days = [key[1] for key in batch.keys]
    frames, worst = [], np.zeros(batch.n_parts, dtype=np.int8)
    for rule in rule_set.rules:
        if isinstance(rule, PartitionRule):
            values = rule.partition_values(batch).astype(float)
            unexpected = np.full(batch.n_parts, np.nan)
        else:
            unexpected = batch.count_per_part(failing[rule.name]).astype(float)
            values = rule.values_from_mask(batch, failing[rule.name])
        rank = rule.status_rank(values)
        status = STATUS_NAMES[rank]
        worst = np.maximum(worst, rank)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": rule_set.dataset,
                    "symbol": symbols,
                    "date": days,
                    "metric": rule.name,
                    "rule_type": rule.rule,
                    "rule_group": rule.group,
                    "value": values,
                    "unexpected_count": unexpected,
                    "status": status,
                    "warn_threshold": np.nan if rule.warn_threshold is None else rule.warn_threshold,
                    "error_threshold": np.nan if rule.error_threshold is None else rule.error_threshold,
                    "evaluated_at": evaluated_at,
                }
            )
        )
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DQ_METRICS_SCHEMA.names)
    return Evaluation(results[DQ_METRICS_SCHEMA.names], failing, STATUS_NAMES[worst])


Rows = pd.DataFrame | Mapping[str, object]
"""A partition's rows: a frame, or its columns (name -> 1-D array, or a scalar for every row)."""


def row_count(rows: Rows) -> int:
    if isinstance(rows, pd.DataFrame):
        return len(rows)
    return next((len(values) for values in rows.values() if np.ndim(values)), 0)


def _concat_rows(frames: list[Rows]) -> pd.DataFrame:
    """One frame of the partitions' rows, as ``pd.concat`` of their frames gives it. Column dicts
    (the ingestion's per-symbol-day inputs) are joined column by column and framed once (~0.4 ms
    per symbol-day less than a frame each)."""
    if not frames:
        return pd.DataFrame()
    if any(isinstance(rows, pd.DataFrame) for rows in frames) or len({tuple(rows) for rows in frames}) > 1:
        return pd.concat([rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(dict(rows), index=pd.RangeIndex(row_count(rows))) for rows in frames], ignore_index=True)
    columns = {}
    for name in frames[0]:
        parts = [rows[name] if np.ndim(rows[name]) else np.full(row_count(rows), rows[name], dtype=object) for rows in frames]
        first = parts[0]
        columns[name] = type(first)._concat_same_type(parts) if isinstance(first, pd.api.extensions.ExtensionArray) else np.concatenate(parts)
    return pd.DataFrame(columns)


def batch_from_frames(
    frames: list[Rows], keys: list[tuple], arrays: list[dict] | None = None, stats: list[dict] | None = None, lengths: list[int] | None = None
) -> QualityBatch:
    """Concatenate per-partition frames or column dicts (and 2-D arrays) into one batch with
    partition numbers; ``lengths`` (rows per key) when a frame holds several partitions back to back."""
    lengths = np.array(lengths if lengths is not None else [row_count(f) for f in frames], dtype=np.int64)
    frame = _concat_rows(frames)
    part = np.repeat(np.arange(len(lengths)), lengths)
    return QualityBatch(frame, part, list(keys), list(arrays) if arrays else None, stats)  # level arrays kept per partition
