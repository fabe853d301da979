"""INGESTION_SOURCES decides where stock data comes from on every path: simulated bars never fill a
vendor's gap in curated data, and ``mdp backfill`` runs the configured sources."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from platform_api.backfill import configured_backfill, plan_backfill, run_backfill
from platform_assets.symbol_days import COMPLETE_CHECK
from resources.lake import CURATED_BARS

DAY = dt.date(2024, 12, 2)


@pytest.fixture
def sources(monkeypatch):
    """Set INGESTION_SOURCES for the code under test (read through the cached settings)."""
    from resources.settings import get_settings

    def configure(value: str) -> None:
        monkeypatch.setenv("INGESTION_SOURCES", value)
        get_settings.cache_clear()

    yield configure
    get_settings.cache_clear()


def _curated_check(platform) -> tuple[bool, str]:
    from dagster._core.event_api import PartitionKeyFilter

    key = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
    (record,) = platform.instance.event_log_storage.get_asset_check_execution_history(key, limit=1, partition_filter=PartitionKeyFilter(key=DAY.isoformat()))
    return record.evaluation.passed, str(record.evaluation.metadata["missing"].value) if "missing" in record.evaluation.metadata else ""


def test_simulated_bars_never_fill_a_vendor_gap(platform, sources):
    """With a vendor configured, a (symbol, day) only the simulator delivered is missing in curated
    bars (its check fails naming why, so the day is retried), not curated from simulated prices."""
    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs, add_missing_symbols=True, asset_selection=["raw_bars_sim"]).success
    sources("databento,sim")
    run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs, asset_selection=["curated_bars"])
    assert not lake.has_partition(CURATED_BARS, "AAPL", DAY)
    passed, missing = _curated_check(platform)
    assert not passed and "AAPL" in missing and "simulated bars are not used" in missing
    sources("sim")  # the simulator alone (the offline default): its bars are the data
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs, asset_selection=["curated_bars"]).success
    curated = lake.read(CURATED_BARS, ["AAPL"], [DAY])
    assert len(curated) == 390 and set(curated["source"]) == {"sim"} and _curated_check(platform)[0]


def test_mdp_backfill_runs_the_configured_sources(platform):
    plan = plan_backfill(["AAPL", "MSFT"], DAY, DAY + dt.timedelta(days=2))
    same, selection, line = configured_backfill(plan, ["sim"], platform.defs)
    assert same is plan and selection is None and "simulated" in line
    vendor, selection, line = configured_backfill(plan, ["databento"], platform.defs)
    assert vendor.job_name == "stock_pipeline" and "databento" in line
    assert {"raw_bars_databento", "l2_snapshots_databento", "curated_bars", "bar_features", "labels"} <= set(selection)
    assert not set(selection) & {"raw_bars_sim", "l2_snapshots_sim", "raw_bars_ib"}
    crypto = plan_backfill(["BTC-USD"], DAY, DAY)
    assert configured_backfill(crypto, ["databento"], platform.defs)[0] is crypto  # crypto pairs: the crypto pipeline
