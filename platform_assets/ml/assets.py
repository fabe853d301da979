"""Training datasets and batch-scoring predictions as assets (design 001, 3.8).

* ``training_datasets``: dynamic partitions, one per dataset **name**; run config = the
  ``TrainingDatasetConfig`` fields. Each materialization is one build; its metadata names the
  immutable, content-addressed ``dataset_id`` it produced or confirmed and whether the data
  changed since the previous build (``platform_api.training.dataset_builder``).
* ``predictions``: partitioned by trading date; run config = the ``BatchScoringConfig`` fields
  (defaults: the example model on every tracked stock symbol at the session close). Refuses a
  window whose health is RED (``platform_api.scoring.batch_scoring``).

Both live in the ``ml`` group, outside the ingestion jobs: building a dataset or scoring never
re-runs ingestion, it reads what the pipeline stored (and the manifests / metadata say which
materializations those were).
"""

import datetime as dt
import json
from typing import Optional

import dagster as dg

from platform_api.scoring.batch_scoring import BATCH_SCORING_JOB, BatchScoringConfig, score_batch
from platform_api.training.dataset_builder import (
    DERIVED_NAME_PREFIX, TRAINING_DATASET_JOB, TRAINING_DATASETS_ASSET, build_dataset, config_from_mapping,
)
from platform_assets.calendars import STOCKS, is_session
from platform_assets.partitions import partition_dates, stock_date_partitions
from platform_assets.universe import tracked_symbols
from resources.lake import ParquetLake
from resources.settings import load_settings

training_dataset_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_DATASETS_ASSET)


class TrainingDatasetRunConfig(dg.Config):
    """``TrainingDatasetConfig`` as run config (the dataset name is the partition key)."""

    feature_groups: list[str]
    feature_versions: dict[str, str]
    label_source: str = "curated_bars"
    start: str
    end: str
    symbols: list[str]
    label_def_version: str = "v1"
    include_labels: bool = True
    require_label: Optional[str] = None
    drop_imputed: bool = True
    strict: bool = False


class BatchScoringRunConfig(dg.Config):
    """``BatchScoringConfig`` as run config (the scoring date is the partition key)."""

    model: str = "example"
    feature_groups: list[str] = ["bar_features"]
    feature_versions: dict[str, str] = {"bar_features": "v1"}
    ts: Optional[list[str]] = None
    symbols: Optional[list[str]] = None
    mode: str = "exact"
    max_staleness: Optional[str] = "15min"
    on_stale: str = "raise"
    model_name: Optional[str] = None
    model_version: Optional[str] = None
    health_datasets: Optional[list[str]] = None
    allow_yellow: bool = True
    timeout_s: float = 30.0
    batch_size: int = 1000


def _settings(lake: ParquetLake):
    return load_settings(DATA_PATH_OVERRIDE=lake.base_path, LAKE_FSYNC=str(lake.fsync).lower())


@dg.asset(
    partitions_def=training_dataset_partitions,
    group_name="ml",
    kinds={"parquet", "pandas"},
    deps=[dg.AssetDep(name, partition_mapping=dg.AllPartitionMapping()) for name in ("bar_features", "l2_features", "labels")],
)
def training_datasets(context: dg.AssetExecutionContext, config: TrainingDatasetRunConfig, lake: ParquetLake) -> dg.MaterializeResult:
    """Immutable training datasets, one partition per dataset name (``lake/training_datasets``).

    Each build joins the requested feature groups/versions with the labels of a versioned
    definition over ``[start, end)``, applies the filters and stores the frame once under a
    content-addressed id ``<name>-<hash>`` with a manifest (config, rows, schema, content hash,
    source partitions and their materializations, extraction time). A rebuild with unchanged
    data confirms the same id (``changed=False``); changed data gets a new id and a diff.
    Load with ``load_dataset(id).to_pandas()``, ``mdp dataset show``, or this asset's I/O
    manager (partition = name, latest build; metadata ``dataset_id`` pins one).
    """
    key = context.partition_key
    cfg = config_from_mapping(config.model_dump(), name=None if key.startswith(DERIVED_NAME_PREFIX) else key)
    handle = build_dataset(cfg, settings=_settings(lake), instance=context.instance, run_id=context.run_id, name=key)
    manifest = handle.manifest
    columns = {c["name"]: c["arrow_type"] for c in manifest["schema"]}
    return dg.MaterializeResult(metadata={
        "dataset_id": handle.dataset_id, "changed": handle.changed, "created": handle.created,
        "previous_dataset_id": handle.previous_dataset_id or "", "diff": json.dumps(handle.diff) if handle.diff else "",
        "content_hash": handle.content_hash, "file_sha256": manifest["file_sha256"], "dagster/row_count": handle.rows,
        "config_hash": manifest["config_hash"], "path": dg.MetadataValue.path(handle.path),
        "schema": dg.MetadataValue.json(columns), "feature_versions": dg.MetadataValue.json(manifest["config"]["feature_versions"]),
        "range": f"[{manifest['config']['start']}, {manifest['config']['end']})",
        "source_partitions": dg.MetadataValue.json({s["asset"]: f"{s['partitions_materialized']}/{s['partitions_expected']} materialized" for s in manifest["sources"]}),
    })


@dg.asset(
    partitions_def=stock_date_partitions,
    group_name="ml",
    kinds={"parquet", "pandas"},
    deps=["bar_features"],
)
def predictions(context: dg.AssetExecutionContext, config: BatchScoringRunConfig, lake: ParquetLake) -> dg.MaterializeResult:
    """Batch-scoring predictions of the session (``lake/predictions/model=M/version=V``).

    Checks the window's health (raw, curated and feature datasets; RED refuses the run naming the
    reasons), fetches inference features at the decision times (default the close), calls the
    configured model (the shipped example model by default, a Python entry point / file, or an
    HTTP inference service) and stores one row per symbol and decision time with the model
    name/version, feature versions and freshness. Re-running a date replaces it.
    """
    settings = _settings(lake)
    results = []
    for day in partition_dates(context):
        cfg = BatchScoringConfig(**config.model_dump(), scoring_date=day)
        result = score_batch(cfg, settings=settings, instance=context.instance, run_id=context.run_id)
        context.log.info(f"{day}: {result.metadata['rows']} predictions of {result.metadata['model_name']} "
                         f"{result.metadata['model_version']} for {result.metadata['symbols_scored']} symbols")
        results.append(result)
    meta = results[-1].metadata
    preview = results[-1].predictions[["symbol", "as_of", "prediction"]].head(10)
    return dg.MaterializeResult(metadata={
        "model_name": meta["model_name"], "model_version": meta["model_version"], "model_spec": meta["model_spec"],
        "feature_versions": dg.MetadataValue.json(meta["feature_versions"]), "mode": meta["mode"],
        "dagster/row_count": sum(r.metadata["rows"] for r in results), "symbols_scored": meta["symbols_scored"],
        "missing": dg.MetadataValue.json(meta["missing"]), "health": dg.MetadataValue.json({k: v["status"] for k, v in meta["health"].items()}),
        "max_staleness_seconds": meta["max_staleness_seconds"], "table": meta["table"],
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
    })


training_dataset_job = dg.define_asset_job(
    name=TRAINING_DATASET_JOB, selection=[training_datasets], partitions_def=training_dataset_partitions,
    description="Build one training dataset (partition = dataset name; run config = TrainingDatasetConfig).",
)
batch_scoring_job = dg.define_asset_job(
    name=BATCH_SCORING_JOB, selection=[predictions], partitions_def=stock_date_partitions,
    description="Score the configured model on a session's features and store the predictions.",
)


def scoring_requests(instance: dg.DagsterInstance, local_day: dt.date) -> list[dg.RunRequest] | dg.SkipReason:
    """The session of ``local_day`` scored with the default config, once per day (run key)."""
    if not is_session(STOCKS, local_day):
        return dg.SkipReason(f"{local_day} is not an XNYS trading day")
    if not tracked_symbols(instance, STOCKS):
        return dg.SkipReason("no tracked stock symbols")
    return [dg.RunRequest(run_key=f"scoring-{local_day.isoformat()}", partition_key=local_day.isoformat(), tags={"platform/refresh": "scoring"})]


@dg.schedule(
    job=batch_scoring_job,
    cron_schedule="30 18 * * 1-5",
    execution_timezone=STOCKS.timezone,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="18:30 New York, an hour after the daily ingestion (17:30): score the session with the default config "
                "(example model, every tracked symbol); a RED window fails the run with the reasons.",
)
def batch_scoring_schedule(context: dg.ScheduleEvaluationContext):
    return scoring_requests(context.instance, context.scheduled_execution_time.date())
