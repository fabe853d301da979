"""Seed 001 section 2: ``orchestrator_adapter.py``, integration with the scheduler / orchestrator.

The orchestrator is Dagster (the platform's asset graph, its schedules, sensors and the instance of
``DAGSTER_HOME``). This adapter is what a pipeline entry point or an outside scheduler (cron, CI)
calls:

    from src.ops.orchestrator_adapter import OrchestratorAdapter
    orchestrator = OrchestratorAdapter()
    orchestrator.run_assets(["curated_bars"], date(2024, 12, 2), ["AAPL"])     # synchronous: {asset: partitions}
    handle = orchestrator.submit_backfill("curated_bars", ["AAPL"], "2024-12-02", "2024-12-03")
    orchestrator.job_status(handle.job_id).state                               # PENDING | RUNNING | SUCCEEDED | FAILED

``run_assets`` is the design's pipeline entry points' runner (``PipelineRunError`` when a run or a
symbol-day failed); ``submit_backfill`` / ``submit_ingestion`` / ``job_status`` are contract 000's
job functions (``trigger_backfill``, ``trigger_historical_ingestion``, ``get_*_job_status``), so
every run shows in the Dagster UI like any other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


class OrchestratorAdapter:
    """Runs and jobs on the platform's Dagster instance."""

    def run_assets(self, asset_names: list[str], date: dt.date | str, symbols: list[str]) -> dict[str, int]:
        """Materialize ``asset_names`` for one trading date and ``symbols``, waiting for the run."""
        from src.pipelines.runs import materialize_date

        return materialize_date(list(asset_names), date, symbols)

    def submit_backfill(self, dataset_name: str, symbols: list[str], start, end, options: Any = None, **kwargs):
        """``trigger_backfill`` (contract 000 5.1): a handle at once (``wait=True`` waits)."""
        from platform_api.jobs import trigger_backfill

        return trigger_backfill(dataset_name, symbols, start, end, options, **kwargs)

    def submit_ingestion(self, source: str, symbols: list[str], start, end, options: Any = None, **kwargs):
        """``trigger_historical_ingestion`` (contract 000 2.1)."""
        from platform_api.jobs import trigger_historical_ingestion

        return trigger_historical_ingestion(source, symbols, start, end, options, **kwargs)

    def job_status(self, job_id: str):
        """An ingestion or backfill job's status (``UnknownJobError`` for an unknown id)."""
        from platform_api.errors import UnknownJobError
        from platform_api.jobs import get_backfill_job_status, get_ingestion_job_status

        try:
            return get_ingestion_job_status(job_id)
        except UnknownJobError:
            return get_backfill_job_status(job_id)
