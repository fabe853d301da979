"""Seed 001 section 3.8.1: ``build_training_dataset(cfg: TrainingDatasetConfig) -> DatasetHandle``
(the platform's, ``platform_api.training.dataset_builder``: features joined with labels point in
time, persisted as an immutable, content-addressed dataset)."""

from platform_api.training.dataset_builder import DatasetHandle, TrainingDatasetConfig, build_training_dataset, load_dataset

__all__ = ["DatasetHandle", "TrainingDatasetConfig", "build_training_dataset", "load_dataset"]
