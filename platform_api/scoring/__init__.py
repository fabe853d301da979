"""Batch scoring (design 001, 3.8.2): ``run_batch_scoring(cfg) -> None``, models and predictions."""

from platform_api.scoring.batch_scoring import BatchScoringConfig, ScoringRefusedError, get_predictions, run_batch_scoring, score_batch

__all__ = ["BatchScoringConfig", "ScoringRefusedError", "get_predictions", "run_batch_scoring", "score_batch"]
