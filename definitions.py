"""Dagster entry point: the market-data platform's assets, checks, resources, jobs and automation."""

from __future__ import annotations

import warnings

import dagster as dg

from platform_assets.definitions_parts import ASSET_CHECKS, ASSETS, JOBS, SCHEDULES, SENSORS
from resources.build import build_resources
from resources.settings import PlatformSettings

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(settings: PlatformSettings | None = None) -> dg.Definitions:
    """The platform's Definitions, with resources configured from ``settings`` (default: env)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_definitions()
