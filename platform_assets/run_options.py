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


INGESTION_OPTIONS_TAG = "platform/options"


def ingestion_options(context: dg.AssetExecutionContext) -> dict:
    """The ingestion options a run was launched with (``platform/options`` JSON tag), or {}."""
    import json

    text = context.run.tags.get(INGESTION_OPTIONS_TAG)
    return json.loads(text) if text else {}
