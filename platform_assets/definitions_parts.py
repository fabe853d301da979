"""Collects the asset graph's pieces (assets, checks, jobs) for ``definitions.py``."""

from __future__ import annotations

from platform_assets.alignment.assets import aligned_bars
from platform_assets.audit.job import lookahead_audit_job
from platform_assets.audit.lake_status_job import lake_status_audit_job, lake_status_audit_schedule
from platform_assets.automation.jobs import crypto_pipeline_job, offline_pipeline_job, stock_pipeline_job
from platform_assets.automation.compaction import compact_lake_job, compaction_schedule
from platform_assets.automation.schedules import SCHEDULES as TIME_SCHEDULES
from platform_assets.automation.run_reaper import dead_run_reaper
from platform_assets.automation.sensors import SENSORS as FILE_SENSORS, l2_derived_job
from platform_assets.crypto.assets import crypto_curated_bars, crypto_raw_bars_sim
from platform_assets.curation.assets import curated_bars
from platform_assets.features.assets import bar_features, l2_features, labels
from platform_assets.ingestion.adapter_assets import GENERATED_RAW_BARS_ASSETS
from platform_assets.ingestion.assets import l2_snapshots_sim, raw_bars_sim
from platform_assets.ingestion.databento_assets import DATABENTO_ASSETS
from platform_assets.automation.depth_job import record_depth_job
from platform_assets.automation.live_bars_job import record_bars_job
from platform_assets.ingestion.ib_assets import raw_bars_ib
from platform_assets.ml.assets import batch_scoring_job, batch_scoring_schedule, predictions, training_dataset_job, training_datasets
from platform_assets.symbols.assets import symbol_history
from platform_assets.reference.assets import corporate_action_reprocess_job, corporate_action_reprocess_sensor, corporate_actions

ASSETS = [raw_bars_sim, l2_snapshots_sim, curated_bars, aligned_bars, bar_features, l2_features, labels, crypto_raw_bars_sim, crypto_curated_bars, *DATABENTO_ASSETS, raw_bars_ib, symbol_history, corporate_actions, training_datasets, predictions]
ASSETS += [asset for asset in GENERATED_RAW_BARS_ASSETS.values() if asset not in ASSETS]  # sources registered in INGESTION_ADAPTERS_FILE
ASSET_CHECKS: list = []
JOBS = [offline_pipeline_job, stock_pipeline_job, crypto_pipeline_job, l2_derived_job, compact_lake_job, record_depth_job, lookahead_audit_job, lake_status_audit_job, record_bars_job, corporate_action_reprocess_job, training_dataset_job, batch_scoring_job]
SCHEDULES = [*TIME_SCHEDULES, compaction_schedule, batch_scoring_schedule, lake_status_audit_schedule]
SENSORS = [*FILE_SENSORS, dead_run_reaper, corporate_action_reprocess_sensor]
