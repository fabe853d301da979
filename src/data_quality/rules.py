"""Seed 001 section 3.5.1: rules as data structures, loaded per dataset from the rules file.

    RangeRule(field="close", min=0, max=None, severity="error")
    EnumRule(field="bar_type", allowed=["TRADES"], severity="warn")
    MonotonicTimeRule(entity_key="symbol", time_field="ts", severity="error")

The classes are the platform's (``platform_assets.quality.rules``); ``rules_for(dataset)`` gives a
dataset's configured rules (``platform_assets/quality/rules.yaml``, or ``DQ_RULES_FILE``).
"""

from __future__ import annotations

from platform_assets.quality.config import RuleSet, load_rule_sets
from platform_assets.quality.rules import (
    EnumRule,
    GapCountRule,
    GapRatioRule,
    MonotonicTimeRule,
    NotNullRule,
    OHLCRule,
    RangeRule,
    ReturnJumpRule,
    Rule,
    UniqueRule,
)

__all__ = ["EnumRule", "GapCountRule", "GapRatioRule", "MonotonicTimeRule", "NotNullRule", "OHLCRule", "RangeRule",
           "ReturnJumpRule", "Rule", "RuleSet", "UniqueRule", "rules_for"]


def rules_for(dataset: str, path: str | None = None) -> list[Rule]:
    """The rules configured for ``dataset`` (e.g. ``curated_bars``); ``KeyError`` naming the known ones."""
    from resources.settings import get_settings

    configured = path or get_settings().dq_rules_file
    sets = load_rule_sets(configured) if configured else load_rule_sets()
    if dataset not in sets:
        raise KeyError(f"no DQ rules for dataset {dataset!r}; configured: {', '.join(sorted(sets))}")
    return list(sets[dataset].rules)
