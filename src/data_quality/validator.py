"""Seed 001 section 3.5.2: ``validate(df, rules) -> ValidationResult`` over any DataFrame.

    from src.data_quality.rules import RangeRule, MonotonicTimeRule
    from src.data_quality.validator import validate

    result = validate(bars, [RangeRule(field="close", min=0, severity="error"),
                             MonotonicTimeRule(entity_key="symbol", time_field="ts", severity="error")])
    result.severity          # "ok" | "warn" | "error": the worst rule status
    result.failed_records    # the rows of ``bars`` failing a row rule (+ ``failed_rules``)
    result.metrics           # {rule: {"value", "unexpected_count", "status", ...}}, plus row counts

The rules are evaluated by the platform's DQ engine (Great Expectations for the rules that have
an expectation, the same engine the ``dq_*`` asset checks use) per (symbol, date) partition: the
``symbol`` column (one partition when absent) and the ``date`` column, else the New York date of
``ts``. ``rules`` may be a list of rules, a ``RuleSet`` or a dataset name (its configured rules).
Actions on severity: ``result.raise_for_severity("error")`` raises ``DataQualityError`` (fail the
pipeline); ``failed_records`` are what a caller quarantines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from platform_assets.quality.config import RuleSet
from platform_assets.quality.engine import Engine, batch_from_frames, evaluate
from platform_assets.quality.metrics import STATUS_RANK, STATUSES
from platform_assets.quality.rules import Rule

Severity = Literal["ok", "warn", "error"]
MARKET_TZ = "America/New_York"


class DataQualityError(ValueError):
    """Data failed its rules at or above the severity a caller does not accept."""


@dataclass
class ValidationResult:
    """What ``validate`` found: failing rows, metrics per rule, the worst status."""

    failed_records: pd.DataFrame
    metrics: dict[str, Any]
    severity: Severity
    results: pd.DataFrame = field(default_factory=pd.DataFrame)  # extra: one row per (partition, rule), the dq_metrics columns

    @property
    def ok(self) -> bool:
        return self.severity == "ok"

    def raise_for_severity(self, at: Severity = "error") -> "ValidationResult":
        """Raise ``DataQualityError`` naming the rules at or above ``at``; else return self."""
        if STATUS_RANK[self.severity] < STATUS_RANK[at]:
            return self
        bad = sorted(name for name, metric in self.metrics.get("rules", {}).items() if STATUS_RANK[metric["status"]] >= STATUS_RANK[at])
        raise DataQualityError(f"data quality {self.severity}: {', '.join(bad)} ({len(self.failed_records)} failing rows)")


def _rule_set(rules: Sequence[Rule] | RuleSet | str) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, str):
        from src.data_quality.rules import rules_for

        return RuleSet(dataset=rules, rules=tuple(rules_for(rules)))
    rules = tuple(rules)
    if not all(isinstance(rule, Rule) for rule in rules):
        raise TypeError("rules must be Rule objects (src.data_quality.rules), a RuleSet or a dataset name")
    return RuleSet(dataset="validate", rules=rules)


def _partition_keys(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    symbols = df["symbol"].astype(str) if "symbol" in df.columns else pd.Series("", index=df.index)
    if "date" in df.columns:
        days = pd.to_datetime(df["date"]).dt.date
    elif "ts" in df.columns and len(df):
        ts = pd.to_datetime(df["ts"], utc=True)
        days = ts.dt.tz_convert(MARKET_TZ).dt.date
    else:
        days = pd.Series(None, index=df.index, dtype=object)
    return symbols, days


def validate(df: pd.DataFrame, rules: Sequence[Rule] | RuleSet | str, *, engine: Engine = "gx") -> ValidationResult:
    """Evaluate ``rules`` over ``df`` (see the module docstring). ``df`` is not modified."""
    rule_set = _rule_set(rules)
    missing: dict[str, list[str]] = {}
    for rule in rule_set.rules:
        for column in rule.columns():
            if column not in df.columns:
                missing.setdefault(column, []).append(rule.name)
    if missing:
        raise ValueError("columns the rules read are missing: " + "; ".join(f"{c} ({', '.join(r)})" for c, r in sorted(missing.items())))
    symbols, days = _partition_keys(df)
    keys_of_rows = list(zip(symbols, days))
    order = np.argsort(pd.factorize(pd.Series(keys_of_rows, dtype=object))[0], kind="stable") if len(df) else np.zeros(0, dtype=np.int64)
    ordered = df.iloc[order].reset_index(drop=True)
    frames, keys = [], []
    if len(ordered):
        ordered_keys = [keys_of_rows[i] for i in order]
        bounds = [0] + [i for i in range(1, len(ordered_keys)) if ordered_keys[i] != ordered_keys[i - 1]] + [len(ordered_keys)]
        for start, end in zip(bounds[:-1], bounds[1:]):
            frames.append(ordered.iloc[start:end].reset_index(drop=True))
            keys.append(ordered_keys[start])
    else:
        frames, keys = [ordered], [("", None)]
    batch = batch_from_frames(frames, keys)
    evaluation = evaluate(rule_set, batch, engine=engine)
    results = evaluation.results

    failing_any = np.zeros(len(ordered), dtype=bool)
    names = np.empty(len(ordered), dtype=object)
    names[:] = ""
    for name, mask in evaluation.failing.items():
        if mask is None or not len(mask) or not mask.any():
            continue
        failing_any |= mask
        names[mask] = [f"{current},{name}" if current else name for current in names[mask]]
    original_rows = np.asarray(order, dtype=np.int64)[failing_any]
    failed = df.iloc[original_rows].copy()
    failed["failed_rules"] = names[failing_any]

    per_rule = {}
    for name, rows in results.groupby("metric", sort=False):
        worst = rows.iloc[int(np.argmax(rows["status"].map(STATUS_RANK).to_numpy()))]
        per_rule[name] = {
            "value": float(worst["value"]) if pd.notna(worst["value"]) else None,
            "unexpected_count": int(np.nansum(rows["unexpected_count"].to_numpy(dtype=float))),
            "status": worst["status"], "rule_type": worst["rule_type"],
            "warn_threshold": None if pd.isna(worst["warn_threshold"]) else float(worst["warn_threshold"]),
            "error_threshold": None if pd.isna(worst["error_threshold"]) else float(worst["error_threshold"]),
        }
    severity = STATUSES[max((STATUS_RANK[m["status"]] for m in per_rule.values()), default=0)]
    metrics = {
        "rows": int(len(df)), "failed_rows": int(failing_any.sum()), "partitions": len(keys),
        "null_rates": {str(column): float(df[column].isna().mean()) for column in df.columns} if len(df) else {},
        "rules": per_rule,
    }
    return ValidationResult(failed_records=failed, metrics=metrics, severity=severity, results=results)
