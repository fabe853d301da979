"""Per-run options carried as run tags (so a backfill launched from the API shows them in the UI).

``platform/keep_existing``: comma-separated layers (``curated``, ``features``) whose already
stored (symbol, date) partitions a run must leave untouched; only missing ones are computed.
For a versioned layer (feature groups, label definitions) that is per version: a newly registered
version is computed over history while the stored versions are neither read nor rewritten.
"""

from __future__ import annotations

import dagster as dg

KEEP_EXISTING_TAG = "platform/keep_existing"
LAYERS = ("curated", "features")


def keep_existing(context: dg.AssetExecutionContext, layer: str) -> bool:
    """True when this run must not overwrite stored partitions of ``layer``."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}")
    tagged = context.run.tags.get(KEEP_EXISTING_TAG, "")
    return layer in {part.strip() for part in tagged.split(",")}


def versions_to_compute(versions, keep: bool, is_stored) -> list[str]:
    """The versions a run computes for one (symbol, date): all, or with keep-existing only those
    ``is_stored(version)`` says are missing."""
    return [version for version in versions if not keep or not is_stored(version)]


def versions_to_compute_on(lake, table_of, versions, keep: bool, symbol: str, day) -> list[str]:
    """``versions_to_compute`` of one (symbol, date) of the lake tables ``table_of(version)``."""
    return versions_to_compute(versions, keep, lambda version: lake.has_partition(table_of(version), symbol, day))


def versions_to_compute_by_day(lake, table_of, versions, keep: bool, symbol: str, days) -> dict:
    """``versions_to_compute_on`` of many dates of a symbol: one folder scan per version's table."""
    stored = {version: lake.stored_dates(table_of(version), symbol) for version in versions} if keep else {}
    return {day: versions_to_compute(versions, keep, lambda version: day in stored[version]) for day in days}


INGESTION_OPTIONS_TAG = "platform/options"


def ingestion_options(context: dg.AssetExecutionContext) -> dict:
    """The ingestion options a run was launched with (``platform/options`` JSON tag), or {}."""
    import json

    text = context.run.tags.get(INGESTION_OPTIONS_TAG)
    return json.loads(text) if text else {}
