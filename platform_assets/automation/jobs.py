"""Jobs over the asset graph."""

from __future__ import annotations

import dagster as dg

from platform_assets.partitions import crypto_date_partitions, stock_date_partitions

OFFLINE_PIPELINE_JOB = "offline_pipeline"
CRYPTO_PIPELINE_JOB = "crypto_pipeline"
STOCK_PIPELINE_JOB = "stock_pipeline"

# Every stock asset fed by the offline source, from raw to features and labels: the main job.
offline_pipeline_job = dg.define_asset_job(
    name=OFFLINE_PIPELINE_JOB,
    selection=dg.AssetSelection.groups("ingestion", "curation", "alignment", "features"),
    partitions_def=stock_date_partitions,
    description="Offline (simulated) ingestion through curated bars, aligned bars, features and labels.",
)

# Crypto pairs (24/7 UTC days): offline ingestion and curated bars.
crypto_pipeline_job = dg.define_asset_job(
    name=CRYPTO_PIPELINE_JOB,
    selection=dg.AssetSelection.groups("crypto"),
    partitions_def=crypto_date_partitions,
    description="Offline (simulated) crypto ingestion and curated bars, one partition per UTC day.",
)

# Every stock-partitioned asset (all sources): what API jobs for non-simulated sources run, with an
# asset selection naming the source's ingestion assets and what is downstream of them.
stock_pipeline_job = dg.define_asset_job(
    name=STOCK_PIPELINE_JOB,
    selection=dg.AssetSelection.groups("ingestion", "databento", "ib", "curation", "alignment", "features"),
    partitions_def=stock_date_partitions,
    description="Ingestion from any source (offline, Databento) through curated bars, aligned bars, features and labels.",
)
