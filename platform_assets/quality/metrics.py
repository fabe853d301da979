"""Data-quality results persisted per (dataset, symbol, date, metric) in the lake.

Stored in ``lake/dq_metrics/dataset={name}/symbol=S/date=D/part.parquet`` (one file per partition,
replaced when the partition is re-checked) so health and summary questions are answered from
stored results, never by recomputing. A metric's status is ``ok``, ``warn`` or ``error`` against
its thresholds (value >= threshold). A partition with an error result also gets a marker in
``lake/dq_blocked/dataset={name}/...``: downstream assets skip that (symbol, date).
"""

from __future__ import annotations

import pyarrow as pa

from resources.lake import Table

STATUS_OK, STATUS_WARN, STATUS_ERROR = "ok", "warn", "error"
STATUSES = (STATUS_OK, STATUS_WARN, STATUS_ERROR)  # index = severity rank; the worst is the max
STATUS_RANK = {status: rank for rank, status in enumerate(STATUSES)}
DQ_METRICS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("symbol", pa.string()),
        ("date", pa.date32()),
        ("metric", pa.string()),
        ("rule_type", pa.string()),
        ("rule_group", pa.string()),
        ("value", pa.float64()),
        ("unexpected_count", pa.float64()),
        ("status", pa.string()),
        ("warn_threshold", pa.float64()),
        ("error_threshold", pa.float64()),
        ("evaluated_at", pa.timestamp("ns", tz="UTC")),
    ]
)
BLOCKED_SCHEMA = pa.schema([("dataset", pa.string()), ("symbol", pa.string()), ("date", pa.date32()), ("rules", pa.string())])


def dq_metrics_table(dataset: str) -> Table:
    return Table("dq_metrics", (("dataset", dataset),))


def dq_blocked_table(dataset: str) -> Table:
    return Table("dq_blocked", (("dataset", dataset),))
