"""Which ingestion assets each source has, and what a run of the configured sources selects.

One answer for every path that runs the stock graph (the Python/HTTP jobs, the schedules, the
symbol-history fill): the raw assets of the sources in ``INGESTION_SOURCES`` plus every derived
asset downstream of them, so a deployment configured for Databento never runs a simulated day by
schedule, and one configured for the simulator never asks a vendor.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from platform_assets.automation.jobs import OFFLINE_PIPELINE_JOB, STOCK_PIPELINE_JOB
from resources.offline_source import SIM_SOURCE

SOURCE_INGESTION_ASSETS: dict[str, list[str]] = {
    "sim": ["raw_bars_sim", "l2_snapshots_sim"],
    "databento": ["raw_bars_databento", "l2_snapshots_databento"],
    "ib": ["raw_bars_ib"],
}
DERIVED_GROUPS = ("curation", "alignment", "features")


class NoIngestionAssetsError(ValueError):
    """None of the sources has an ingestion asset in the definitions."""


def ingestion_assets(asset_graph, sources: Sequence[str]) -> list[str]:
    """The raw assets of ``sources`` that exist in ``asset_graph``, in source order."""
    names = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    return [a for s in sources for a in SOURCE_INGESTION_ASSETS.get(s, []) if a in names]


def downstream_selection(asset_graph, names: Sequence[str]) -> list[str]:
    """``names`` plus every derived (curated, aligned, feature) asset downstream of them."""
    keys = dg.AssetSelection.assets(*names).downstream().resolve(asset_graph)
    derived = dg.AssetSelection.groups(*DERIVED_GROUPS).resolve(asset_graph)
    return sorted({k.to_user_string() for k in keys & derived} | set(names))


def sources_selection(asset_graph, sources: Sequence[str]) -> list[str]:
    """What a run of the stock graph over ``sources`` materializes: their raw assets and downstream."""
    raw = ingestion_assets(asset_graph, sources)
    if not raw:
        raise NoIngestionAssetsError(f"none of the sources {list(sources)} has ingestion assets in this deployment")
    return downstream_selection(asset_graph, raw)


def pipeline_job_of(sources: Sequence[str]) -> str:
    """The stock job a run over ``sources`` uses: ``offline_pipeline`` for the simulator alone,
    ``stock_pipeline`` (with an asset selection of the sources') once a vendor is among them."""
    return OFFLINE_PIPELINE_JOB if set(sources) == {SIM_SOURCE} else STOCK_PIPELINE_JOB


def configured_sources() -> list[str]:
    """``INGESTION_SOURCES`` (default ``sim``), read when asked, so a tick follows the setting."""
    from resources.settings import get_settings

    return list(get_settings().ingestion_sources)
