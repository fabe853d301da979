"""Seed 001 section 3.5.3: DQ metrics, computed and emitted.

``metrics_frame(result)`` turns a ``ValidationResult`` into rows (rule, value, unexpected_count,
status, thresholds); ``emit_metrics(result, dataset)`` logs one machine-parsable line per rule
(logger ``platform.dq``) and returns the rows. The platform's assets store their results in
``lake/dq_metrics/dataset=<name>`` and read them back through ``platform_api.get_data_quality_summary``
and ``get_dataset_health``.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from src.data_quality.validator import ValidationResult

LOG = logging.getLogger("platform.dq")


def metrics_frame(result: ValidationResult) -> pd.DataFrame:
    rows = [{"rule": name, **values} for name, values in result.metrics.get("rules", {}).items()]
    return pd.DataFrame(rows, columns=["rule", "value", "unexpected_count", "status", "rule_type", "warn_threshold", "error_threshold"])


def emit_metrics(result: ValidationResult, dataset: str) -> pd.DataFrame:
    frame = metrics_frame(result)
    level = {"ok": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[result.severity]
    for row in frame.to_dict("records"):
        LOG.log(level, "DQ %s", json.dumps({"dataset": dataset, **row}, default=str, sort_keys=True))
    return frame
