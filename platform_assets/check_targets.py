"""Point per-date check evaluations at the materialization they judge.

Dagster shows a partitioned check's result on a date (the check's Partitions tab, the date's page)
only while it is *current*: it must target the date's latest materialization
(``AssetCheckPartitionInfo.is_current``). An evaluation logged without a target, or before the
materialization it judges, is treated as stale and the date shows "Missing": a red date looked
like an unjudged one. Every per-date evaluation we log outside Dagster's own check results (a
ranged run's dates, dates re-computed after a loss, the lake status audit) goes through
``targeting`` after the materializations it judges are stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.events import DagsterEventType
from dagster_shared.record import copy as copy_record


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: set[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest stored materialization of each of ``partitions`` that has one (two queries)."""
    if not partitions:
        return {}
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(asset_key, DagsterEventType.ASSET_MATERIALIZATION, set(partitions))
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(storage_ids.values())), limit=len(storage_ids)).records
    return {
        record.partition_key: AssetCheckEvaluationTargetMaterializationData(storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        for record in records
        if record.partition_key is not None
    }


def targeting(instance: dg.DagsterInstance, evaluations: Sequence[dg.AssetCheckEvaluation]) -> list[dg.AssetCheckEvaluation]:
    """``evaluations`` with each per-date one (that has no target yet) pointed at its date's latest
    materialization; a date never materialized keeps no target (Dagster shows it as judged)."""
    wanted: dict[dg.AssetKey, set[str]] = defaultdict(set)
    for evaluation in evaluations:
        if evaluation.partition is not None and evaluation.target_materialization_data is None:
            wanted[evaluation.asset_key].add(evaluation.partition)
    targets = {key: latest_materializations(instance, key, partitions) for key, partitions in wanted.items()}
    out = []
    for evaluation in evaluations:
        target = targets.get(evaluation.asset_key, {}).get(evaluation.partition) if evaluation.partition is not None else None
        out.append(copy_record(evaluation, target_materialization_data=target) if target is not None and evaluation.target_materialization_data is None else evaluation)
    return out
