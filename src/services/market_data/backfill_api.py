"""The TF_1 guide's backfill API: ``backfill_l2(symbol, trading_day, *, force=False, strict=False) -> dict``.

``{symbol, date, status: written|skipped|error, zero_rows, path, rows, error}``; the batch
orchestrator is ``find_warrior_tasks`` + ``run_warrior_backfill``. All are ``platform_api``'s.
"""

from platform_api.l2_backfill import backfill_l2, find_warrior_tasks, run_warrior_backfill

__all__ = ["backfill_l2", "find_warrior_tasks", "run_warrior_backfill"]
