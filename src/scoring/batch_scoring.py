"""Seed 001 section 3.8.2: ``run_batch_scoring(cfg: BatchScoringConfig) -> None`` (the platform's,
``platform_api.scoring.batch_scoring``: refuses to score when the inputs are not there, stores
predictions with their metadata)."""

from platform_api.scoring.batch_scoring import BatchScoringConfig, get_predictions, run_batch_scoring

__all__ = ["BatchScoringConfig", "get_predictions", "run_batch_scoring"]
