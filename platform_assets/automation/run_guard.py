"""A run coordinator that refuses a bad symbol selection before the run starts.

Runs launched from the UI, schedules and sensors go through the instance's run coordinator. A run
narrowed to some symbols carries the ``platform/symbols`` tag; a typo there used to start the run,
fail it inside the first asset, and turn every partition it planned red although nothing was wrong
with their data. This coordinator validates the tag on submission (each symbol well formed and
tracked); a bad one deletes the just-created run (so its planned partitions keep the status they
had: Dagster treats the planned events of a deleted run as neither in progress nor failed) and
raises with the reason, which the UI shows at launch. Everything else is Dagster's
``QueuedRunCoordinator``. Configured in ``dagster.yaml``.

The Python API, the CLI and the HTTP service validate symbols before they create any run; the
per-symbol view (``symbol_history`` partitions) offers only tracked symbols.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from platform_assets.partitions import SYMBOLS_TAG
from platform_assets.universe import removed_symbols, require_tracked
from resources.validation import InvalidInputError, normalize_symbols


class InvalidSymbolSelectionError(InvalidInputError):
    """A run's ``platform/symbols`` tag names a malformed or untracked symbol."""


def symbol_selection_problem(instance: dg.DagsterInstance, tagged: str) -> str | None:
    """Why a ``platform/symbols`` tag value cannot be run, or None when it is fine."""
    try:
        symbols = normalize_symbols(tagged)
        gone = set(removed_symbols(instance, symbols))  # removed since the run was planned: skipped by the run
        require_tracked(instance, [s for s in symbols if s not in gone] if len(gone) < len(symbols) else symbols)
    except InvalidInputError as exc:
        return str(exc)
    return None


class SymbolValidatingRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that rejects runs whose ``platform/symbols`` tag is invalid."""

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        tagged = run.tags.get(SYMBOLS_TAG)
        if tagged is not None:
            problem = symbol_selection_problem(self._instance, tagged)
            if problem:
                self._instance.delete_run(run.run_id)
                raise InvalidSymbolSelectionError(
                    f"run not started: tag {SYMBOLS_TAG}={tagged!r} is invalid: {problem}. "
                    f"No partition was changed; pick symbols from the symbol_history partitions or fix the tag."
                )
        return super().submit_run(context)
