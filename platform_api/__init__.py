"""The platform's consumer API (contract 000 and the TF_1 guide 004), importable from here::

    from platform_api import get_features_for_training, trigger_backfill, BackfillOptions

Ingestion control: ``trigger_historical_ingestion``, ``trigger_daily_ingestion``,
``get_ingestion_job_status``. Curated data and features: ``get_curated_bars``,
``get_features_for_training``, ``get_features_for_inference``. Backfills: ``trigger_backfill``,
``get_backfill_job_status``. Data quality: ``get_data_quality_summary``, ``get_dataset_health``.
Catalog: ``list_datasets``, ``list_feature_groups``. Training datasets and batch scoring (design
3.8): ``build_training_dataset``, ``load_dataset``, ``run_batch_scoring``, ``get_predictions``. TF_1 L2 backfill: ``backfill_l2``,
``find_warrior_tasks``, ``run_warrior_backfill``. Time ranges are half-open ``[start, end)`` in UTC.

Names load lazily (PEP 562) so ``import platform_api`` stays cheap for the CLI and the workers.
"""

from __future__ import annotations

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("market-data-platform")
    """The release (``pyproject.toml``'s version; releases are ``v<version>`` tags, README "Release workflow")."""
except importlib.metadata.PackageNotFoundError:  # a source tree run without ``pip install -e .``
    __version__ = "0+unknown"

_EXPORTS = {
    "platform_api.jobs": (
        "trigger_historical_ingestion", "trigger_daily_ingestion", "get_ingestion_job_status",
        "trigger_backfill", "get_backfill_job_status",
        "HistoricalIngestionOptions", "BackfillOptions", "IngestionJobHandle", "BackfillJobHandle",
        "IngestionJobStatus", "BackfillJobStatus",
    ),
    "platform_api.retrieval": ("get_curated_bars", "get_features_for_training", "get_features_for_inference", "TrainingDataset", "InferenceFeatures"),
    "platform_api.quality": ("get_data_quality_summary", "get_dataset_health", "DataQualitySummary", "DataQualityMetric", "DatasetHealthStatus"),
    "platform_api.catalog": ("list_datasets", "list_feature_groups", "DatasetInfo", "FeatureGroupInfo"),
    "platform_api.training.dataset_builder": (
        "build_training_dataset", "TrainingDatasetConfig", "DatasetHandle", "load_dataset", "list_training_datasets",
    ),
    "platform_api.scoring.batch_scoring": ("run_batch_scoring", "BatchScoringConfig", "ScoringRefusedError", "get_predictions"),
    "platform_api.l2_backfill": ("backfill_l2", "find_warrior_tasks", "run_warrior_backfill", "backfill_l2_batch"),
    "platform_api.errors": (
        "PlatformAPIError", "InvalidInputError", "InvalidSymbolError", "InvalidDateRangeError", "InvalidOptionError",
        "UnknownSymbolError", "UnknownDatasetError", "UnknownFeatureGroupError", "UnknownFeatureVersionError",
        "UnknownLabelDefinitionError", "NoDataError", "StaleDataError", "IncompleteCoverageError", "UnknownJobError",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
CONTRACT_FUNCTIONS = (
    "trigger_historical_ingestion", "trigger_daily_ingestion", "get_ingestion_job_status", "get_curated_bars",
    "get_features_for_training", "get_features_for_inference", "trigger_backfill", "get_backfill_job_status",
    "get_data_quality_summary", "get_dataset_health", "list_datasets", "list_feature_groups",
)
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'platform_api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
