"""Training datasets (design 001, 3.8.1): ``build_training_dataset(cfg) -> DatasetHandle``."""

from platform_api.training.dataset_builder import (
    DatasetHandle, TrainingDatasetConfig, build_dataset, build_training_dataset, list_training_datasets, load_dataset,
)

__all__ = ["DatasetHandle", "TrainingDatasetConfig", "build_dataset", "build_training_dataset", "list_training_datasets", "load_dataset"]
