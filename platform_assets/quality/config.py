"""Loading the data-quality rule file: validated rule sets per dataset.

A bad file fails at load with a ``RuleConfigError`` naming the file, the dataset and the rule:
unknown rule type, unknown column, missing threshold, duplicate rule name, unknown dataset, and any
NaN or infinite number (``.nan``, ``.inf``, ``"nan"``): every comparison with NaN is false, so a NaN
threshold silently switched its rule off (an injected 195-minute outage came out GREEN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from platform_assets.curation.gap_engine import CURATED_COLUMNS
from platform_assets.alignment.transforms import TOP_OF_BOOK_COLUMNS
from platform_assets.features import bar_features, l2_features, labels
from platform_assets.quality.rules import L2_RULES, AnyRule, Rule, StatRule
from resources.schemas import RAW_BARS_SCHEMA

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.yaml")
SUPPORTED_VERSIONS = {1}
L2_COLUMNS = ["symbol", "timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"]
CURATION_STATS = {
    "missing_minutes", "invalid_rows", "duplicate_rows", "raw_rows", "real_minutes", "imputed_minutes", "gap_runs", "max_gap_run",
    "gap_no_trade_minutes", "gap_halt_minutes", "gap_feed_gap_minutes", "gap_invalid_minutes", "gap_unknown_minutes",
}

DATASET_COLUMNS: dict[str, list[str]] = {
    "raw_bars": list(RAW_BARS_SCHEMA.names),
    "curated_bars": list(CURATED_COLUMNS),
    "crypto_curated_bars": list(CURATED_COLUMNS),  # crypto_curated_bars: the same table, 1,440-minute days
    "l2_snapshots": L2_COLUMNS,
    "bar_features": bar_features.KEY_COLUMNS + bar_features.VALUE_COLUMNS,
    "l2_features": l2_features.KEY_COLUMNS + l2_features.VALUE_COLUMNS,
    "aligned_bars": [*CURATED_COLUMNS, *TOP_OF_BOOK_COLUMNS, "mid_px", "spread", "spread_bps", "l2_age_s", "l2_stale", "book_crossed"],
    "labels": [*labels.KEY_COLUMNS, *(column for d in labels.LABEL_DEFINITIONS.values() for column in d.columns)],
}
DATASET_STATS: dict[str, set[str]] = {"curated_bars": CURATION_STATS, "crypto_curated_bars": CURATION_STATS}

_RULE_ADAPTER = TypeAdapter(AnyRule)


class RuleConfigError(ValueError):
    """The rule file is invalid; the message names the file, dataset and rule."""


@dataclass(frozen=True)
class RuleSet:
    dataset: str
    rules: tuple[Rule, ...]

    def groups(self) -> list[str]:
        return sorted({rule.group for rule in self.rules})

    def rules_in(self, group: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.group == group]

    def group_can_error(self, group: str) -> bool:
        return any(rule.can_error for rule in self.rules_in(group))


def load_rule_sets(path: str | Path = DEFAULT_RULES_FILE) -> dict[str, RuleSet]:
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RuleConfigError(f"{path}: cannot read rule file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), dict):
        raise RuleConfigError(f"{path}: expected a mapping with 'version' and 'datasets'")
    if document.get("version") not in SUPPORTED_VERSIONS:
        raise RuleConfigError(f"{path}: unsupported rule file version {document.get('version')!r} (supported: {sorted(SUPPORTED_VERSIONS)})")
    rule_sets = {}
    for dataset, entries in document["datasets"].items():
        if dataset not in DATASET_COLUMNS:
            raise RuleConfigError(f"{path}: unknown dataset {dataset!r} (known: {', '.join(DATASET_COLUMNS)})")
        if not isinstance(entries, list):
            raise RuleConfigError(f"{path}: dataset {dataset!r} must hold a list of rules")
        rule_sets[dataset] = RuleSet(dataset, tuple(_parse_rule(path, dataset, i, entry) for i, entry in enumerate(entries)))
        names = [rule.name for rule in rule_sets[dataset].rules]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise RuleConfigError(f"{path}: dataset {dataset!r}: duplicate rule names {duplicated}")
    return rule_sets


@lru_cache(maxsize=8)
def cached_rule_sets(path: str) -> dict[str, RuleSet]:
    return load_rule_sets(path)


def default_rule_sets() -> dict[str, RuleSet]:
    return cached_rule_sets(str(DEFAULT_RULES_FILE))


def _parse_rule(path: Path, dataset: str, index: int, entry) -> Rule:
    label = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
    where = f"{path}: dataset {dataset!r}, rule {label!r}"
    if bad := _non_finite(entry):
        raise RuleConfigError(f"{where}: {_finite_problem(bad)}")
    try:
        rule = _RULE_ADAPTER.validate_python(entry)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in exc.errors())
        raise RuleConfigError(f"{where}: {problems}") from None
    if bad := _non_finite(rule.model_dump()):
        raise RuleConfigError(f"{where}: {_finite_problem(bad)}")
    unknown = [c for c in rule.columns() if c not in DATASET_COLUMNS[dataset]]
    if unknown:
        raise RuleConfigError(f"{where}: unknown column(s) {unknown} for {dataset} (columns: {', '.join(DATASET_COLUMNS[dataset])})")
    if isinstance(rule, StatRule) and rule.stat not in DATASET_STATS.get(dataset, set()):
        raise RuleConfigError(f"{where}: unknown statistic {rule.stat!r} for {dataset} (known: {sorted(DATASET_STATS.get(dataset, set()))})")
    if isinstance(rule, L2_RULES) and dataset != "l2_snapshots":
        raise RuleConfigError(f"{where}: rule type {rule.rule!r} applies to l2_snapshots only")
    return rule


_TEXT_FIELDS = {"name", "rule", "field", "group", "severity", "stat", "allowed", "description"}


def _finite_problem(bad: list[tuple[str, object]]) -> str:
    return f"{', '.join(f'{key}={value}' for key, value in bad)} is not a finite number (NaN/inf would switch the rule off)"


def _non_finite(values, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every NaN or infinite number in a rule's (nested) fields, including
    numbers written as text ("nan", "inf") that validation would turn into floats."""
    if isinstance(values, float):
        return [] if math.isfinite(values) else [(prefix or "value", values)]
    if isinstance(values, str) and prefix.split(".")[-1].split("[")[0] not in _TEXT_FIELDS:
        try:
            number = float(values)
        except ValueError:
            return []
        return [] if math.isfinite(number) else [(prefix or "value", values)]
    if isinstance(values, dict):
        return [bad for key, value in values.items() for bad in _non_finite(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(values, (list, tuple)):
        return [bad for i, value in enumerate(values) for bad in _non_finite(value, f"{prefix}[{i}]")]
    return []
