"""A newly registered feature version over stored history: only that version is computed (keep-existing),
the stored versions are neither rewritten nor changed, and the new rows equal a full recompute."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_assets.run_options import KEEP_EXISTING_TAG, versions_to_compute
from resources.lake import ParquetLake, feature_table, labels_table

DAYS = [dt.date(2024, 11, 25), dt.date(2024, 11, 26), dt.date(2024, 11, 27)]
V1, V2 = feature_table("bar_features", "v1"), feature_table("bar_features", "v2")


def test_versions_to_compute():
    stored = {"v1"}
    assert versions_to_compute(["v1", "v2"], False, stored.__contains__) == ["v1", "v2"]
    assert versions_to_compute(["v1", "v2"], True, stored.__contains__) == ["v2"]
    assert versions_to_compute(["v1"], True, stored.__contains__) == []


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-date"])
def test_a_new_version_is_computed_alone_and_stored_versions_are_untouched(platform, monkeypatch, batched):
    monkeypatch.setenv("LAKE_BATCH_WRITES", "true" if batched else "false")
    from definitions import build_definitions
    from resources.settings import load_settings

    settings = load_settings(DATA_PATH_OVERRIDE=str(platform.settings.base_path), LAKE_FSYNC="false")
    defs = build_definitions(settings)
    plan = plan_backfill(["AAPL"], DAYS[0], DAYS[-1])
    assert run_backfill(platform.instance, plan, defs=defs, add_missing_symbols=True).success
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    v2_before = lake.read(V2, ["AAPL"], DAYS)
    v1_written = {day: lake.written_ns(V1, "AAPL", day) for day in DAYS}
    labels_written = {day: lake.written_ns(labels_table("v1"), "AAPL", day) for day in DAYS}
    shutil.rmtree(lake.symbol_dir(V2, "AAPL"))  # as if v2 had just been registered
    lake.delete_partition(V1, "AAPL", DAYS[1])  # and one v1 day lost

    report = run_backfill(platform.instance, plan, defs=defs, asset_selection=["bar_features", "labels"], extra_tags={KEEP_EXISTING_TAG: "features"})
    assert report.success
    pd.testing.assert_frame_equal(lake.read(V2, ["AAPL"], DAYS), v2_before)  # the new version, equal to a full recompute
    assert lake.written_ns(V1, "AAPL", DAYS[0]) == v1_written[DAYS[0]] and lake.written_ns(V1, "AAPL", DAYS[2]) == v1_written[DAYS[2]]
    assert lake.written_ns(V1, "AAPL", DAYS[1]) > v1_written[DAYS[1]]  # the lost day recomputed
    assert {day: lake.written_ns(labels_table("v1"), "AAPL", day) for day in DAYS} == labels_written  # all stored: kept
