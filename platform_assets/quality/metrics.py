"""Data-quality metrics persisted per (dataset, symbol, date, metric) in the lake.

Stored in ``lake/dq_metrics/dataset={name}/symbol=S/date=D/part.parquet`` so health and summary
questions are answered from stored results, never by recomputing. A metric's status is ``ok``,
``warn`` or ``error`` against its thresholds (larger values are worse).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from resources.lake import Table

STATUS_OK, STATUS_WARN, STATUS_ERROR = "ok", "warn", "error"
DQ_METRICS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("symbol", pa.string()),
        ("date", pa.date32()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("status", pa.string()),
        ("warn_threshold", pa.float64()),
        ("error_threshold", pa.float64()),
        ("evaluated_at", pa.timestamp("ns", tz="UTC")),
    ]
)


def dq_metrics_table(dataset: str) -> Table:
    return Table("dq_metrics", (("dataset", dataset),))


@dataclass(frozen=True)
class Threshold:
    warn: float
    error: float

    def status(self, value: float) -> str:
        if value >= self.error:
            return STATUS_ERROR
        if value >= self.warn:
            return STATUS_WARN
        return STATUS_OK


def metric_frame(
    dataset: str, symbol: str, day: dt.date, values: dict[str, float], thresholds: dict[str, Threshold]
) -> pd.DataFrame:
    """Rows for one (dataset, symbol, date): one per thresholded metric."""
    now = pd.Timestamp.now(tz="UTC")
    rows = [
        {
            "dataset": dataset,
            "symbol": symbol,
            "date": day,
            "metric": name,
            "value": float(values[name]),
            "status": threshold.status(float(values[name])),
            "warn_threshold": threshold.warn,
            "error_threshold": threshold.error,
            "evaluated_at": now,
        }
        for name, threshold in thresholds.items()
    ]
    return pd.DataFrame(rows, columns=DQ_METRICS_SCHEMA.names)


def worst_status(statuses) -> str:
    statuses = set(statuses)
    for status in (STATUS_ERROR, STATUS_WARN):
        if status in statuses:
            return status
    return STATUS_OK
