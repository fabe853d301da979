"""Log many asset check evaluations of a step as one Dagster event batch.

A ranged run judges each of its dates (``symbol_days``: the ``symbols_complete`` evaluation of every
date partition, ~5 assets x 60 dates per backfill run). ``context.log_event`` stores each one on its
own (one transaction each, ~1.8 ms); Dagster batches a step's materializations of its partitions
(``DagsterEventBatchMetadata``: stored together once the batch ends, when the instance's event batch
size is > 0, as ``resources.dagster_sqlite.PlatformInstance`` sets it) but offers no public way to
send check evaluations that way. ``log_check_evaluations`` builds the same events Dagster's
``log_event`` builds, with batch metadata: same rows stored (in one transaction per batch; a failed
batch is stored one by one by Dagster), same events in the step's output. On a Dagster without the
internals it uses (checked once), it falls back to ``log_event`` per evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

try:  # Dagster internals (pinned version, see requirements.lock); the fallback keeps behaviour without them
    from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, generate_event_batch_id
except ImportError:  # pragma: no cover - only on another Dagster version
    DagsterEvent = None


def log_check_evaluations(context: dg.AssetExecutionContext, evaluations: Sequence[dg.AssetCheckEvaluation]) -> None:
    """``context.log_event(evaluation)`` for each, stored as one event batch."""
    op_context = context.op_execution_context
    step_context = getattr(op_context, "_step_execution_context", None)
    events = getattr(op_context, "_events", None)
    if DagsterEvent is None or step_context is None or not isinstance(events, list) or len(evaluations) < 2:
        for evaluation in evaluations:
            context.log_event(evaluation)
        return
    batch_id, last = generate_event_batch_id(), len(evaluations) - 1
    for index, evaluation in enumerate(evaluations):
        events.append(
            DagsterEvent.from_step(
                event_type=DagsterEventType.ASSET_CHECK_EVALUATION,
                step_context=step_context,
                event_specific_data=evaluation,
                message=_message(evaluation),
                batch_metadata=DagsterEventBatchMetadata(batch_id, index == last),
            )
        )


def _message(evaluation: dg.AssetCheckEvaluation) -> str:
    """The message Dagster's ``DagsterEvent.asset_check_evaluation`` gives the event."""
    return (
        f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "
        + ("passed." if evaluation.passed else "did not pass.")
        + ("" if evaluation.description is None else f" Description: '{evaluation.description}'")
    )
