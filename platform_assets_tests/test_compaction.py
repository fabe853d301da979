"""Compaction of closed months: same answers from every reader, fewer files, safe re-writes."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_api.catalog import list_datasets
from platform_api.coverage import get_coverage
from platform_api.retrieval import get_curated_bars, get_features_for_inference, get_features_for_training
from platform_assets.automation.compaction import compactable_tables
from resources.lake import CURATED_BARS, feature_table, labels_table, month_file_dates

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture(autouse=True)
def _per_date_files(monkeypatch):
    """Runs here write one file per (symbol, date), the layout compaction merges (a batched run
    writes month files itself: test_lake_batch)."""
    monkeypatch.setenv("LAKE_BATCH_WRITES", "false")
NOV = [dt.date(2024, 11, d) for d in (25, 26, 27, 29)]


def _answers(settings):
    train = get_features_for_training(["bar_features", "l2_features"], "v1", SYMBOLS, "2024-11-25", "2024-12-04", include_labels=True, settings=settings)
    bars = get_curated_bars(SYMBOLS, "2024-11-25", "2024-12-04", frequency="1h", settings=settings)
    latest = get_features_for_inference(["bar_features"], "v1", SYMBOLS, "2024-12-02T14:29:00Z", mode="latest", settings=settings)
    exact = get_features_for_inference(["bar_features"], "v1", SYMBOLS, "2024-11-27T15:00:00Z", mode="exact", settings=settings)
    return train, bars, latest, exact


def _assert_same(before, after):
    (t0, b0, l0, e0), (t1, b1, l1, e1) = before, after
    pd.testing.assert_frame_equal(t0.features, t1.features)
    pd.testing.assert_frame_equal(t0.labels, t1.labels)
    pd.testing.assert_frame_equal(b0, b1)
    pd.testing.assert_frame_equal(l0.features, l1.features)
    pd.testing.assert_frame_equal(e0.features, e1.features)


def _compact(platform, before_month="2024-12"):
    job = platform.defs.resolve_job_def("compact_lake_job")
    lake = platform.defs.resources["lake"]
    counts = lambda: {str(t): len(list(lake.table_dir(t).glob("symbol=*/date=*/part.parquet"))) for t in compactable_tables()}  # noqa: E731
    before = counts()
    result = job.execute_in_process(instance=platform.instance, run_config={"ops": {"compact_lake_op": {"config": {"before_month": before_month}}}})
    assert result.success
    after = counts()
    return {name: before[name] - after[name] for name in before if before[name] != after[name]}


def test_compaction_keeps_every_answer_and_merges_closed_months(platform):
    report = run_backfill(platform.instance, plan_backfill(SYMBOLS, "2024-11-25", "2024-12-03"), defs=platform.defs, add_missing_symbols=True)
    assert report.success
    settings, lake = platform.settings, platform.defs.resources["lake"]
    before = _answers(settings)
    coverage_before = {r["symbol"]: r["layers"] for r in get_coverage(settings=settings)}
    ranges_before = {d.name: d.available_date_range for d in list_datasets(settings)}

    merged = _compact(platform)
    table = feature_table("bar_features", "v1")
    assert merged[str(table)] == len(SYMBOLS) * len(NOV) and merged[str(CURATED_BARS)] == len(SYMBOLS) * len(NOV)
    month = lake.month_file(table, "AAPL", "2024-11")
    assert month.exists() and month_file_dates(month) == frozenset(NOV)
    assert not list(lake.symbol_dir(table, "AAPL").glob("date=2024-11-*"))  # November day files gone
    assert len(list(lake.symbol_dir(table, "AAPL").glob("date=2024-12-*"))) == 2  # December (open month) untouched
    assert all(lake.has_partition(table, "AAPL", day) for day in NOV)

    _assert_same(before, _answers(settings))
    coverage_after = {r["symbol"]: r["layers"] for r in get_coverage(settings=settings)}
    for symbol in SYMBOLS:
        for layer in ("curated", "features"):
            old, new = coverage_before[symbol][layer], coverage_after[symbol][layer]
            assert (old["earliest"], old["latest"], old["total_rows"]) == (new["earliest"], new["latest"], new["total_rows"])
            assert new["file_count"] < old["file_count"]
    assert {d.name: d.available_date_range for d in list_datasets(settings)} == ranges_before
    assert _compact(platform) == {}  # nothing left to merge


def test_rewriting_a_compacted_day_replaces_it_in_the_month_file(platform):
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-25", "2024-12-02"), defs=platform.defs, add_missing_symbols=True).success
    _compact(platform)
    settings, lake = platform.settings, platform.defs.resources["lake"]
    before = _answers_one(settings)
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-26", "2024-11-26"), defs=platform.defs).success
    table = feature_table("bar_features", "v1")
    assert not (lake.partition_dir(table, "AAPL", dt.date(2024, 11, 26)) / "part.parquet").exists()  # went into the month file
    after = _answers_one(settings)
    pd.testing.assert_frame_equal(before.drop(columns=["available_ts"]), after.drop(columns=["available_ts"]))
    assert len(after) == len(before)  # no duplicate rows
    assert lake.delete_partition(labels_table("v1"), "AAPL", dt.date(2024, 11, 27))
    assert not lake.has_partition(labels_table("v1"), "AAPL", dt.date(2024, 11, 27))
    assert lake.has_partition(labels_table("v1"), "AAPL", dt.date(2024, 11, 26))


def _answers_one(settings) -> pd.DataFrame:
    return get_features_for_training(["bar_features"], "v1", ["AAPL"], "2024-11-25", "2024-12-03", include_labels=False, settings=settings).features


def test_a_crash_between_month_write_and_day_file_removal_loses_and_duplicates_nothing(platform, tmp_path):
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-25", "2024-11-29"), defs=platform.defs, add_missing_symbols=True).success
    lake = platform.defs.resources["lake"]
    table = feature_table("bar_features", "v1")
    day = dt.date(2024, 11, 26)
    saved = tmp_path / "day.parquet"
    shutil.copy(lake.partition_dir(table, "AAPL", day) / "part.parquet", saved)
    before = _answers_one(platform.settings)
    _compact(platform)
    leftover = lake.partition_dir(table, "AAPL", day) / "part.parquet"  # as if the unlink never happened
    leftover.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(saved, leftover)
    assert lake.day_source(table, "AAPL", day) == lake.month_file(table, "AAPL", "2024-11")
    pd.testing.assert_frame_equal(before, _answers_one(platform.settings))
    assert len(lake.read(table, ["AAPL"], [day])) == 390
    _compact(platform)  # the next compaction cleans the leftover
    assert not leftover.exists() and pq.read_metadata(lake.month_file(table, "AAPL", "2024-11")).num_rows == 3 * 390 + 210  # 11-29 is a half day


def test_compaction_cli(platform, monkeypatch, capsys):
    from platform_api.cli import main
    from resources.settings import get_settings

    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-25", "2024-11-26"), defs=platform.defs, add_missing_symbols=True).success
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    get_settings.cache_clear()
    try:
        assert main(["compact", "--before", "2024-13"]) == 2
        assert main(["compact", "--before", "2024-12"]) == 0
        assert "day files merged" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    assert platform.defs.resources["lake"].month_file(CURATED_BARS, "AAPL", "2024-11").exists()


def test_a_corrupt_day_file_met_by_compaction_fails_the_job_and_its_dates_check_until_re_run(platform):
    """Compaction quarantines a corrupt day file instead of merging it; the date it held is gone,
    so the job fails naming it and the date's ``symbols_complete`` evaluation fails (the UI stops
    showing it complete) until a re-run of the date stores it again."""
    from platform_assets.symbol_days import COMPLETE_CHECK

    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-25", "2024-11-27"), defs=platform.defs, add_missing_symbols=True).success
    lake = platform.defs.resources["lake"]
    day_file = lake.partition_dir(CURATED_BARS, "AAPL", NOV[1]) / "part.parquet"
    day_file.write_bytes(day_file.read_bytes()[:100])
    job = platform.defs.resolve_job_def("compact_lake_job")
    result = job.execute_in_process(instance=platform.instance, run_config={"ops": {"compact_lake_op": {"config": {"before_month": "2024-12"}}}}, raise_on_error=False)
    assert not result.success
    key = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)

    def latest(day: dt.date):
        history = platform.instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
        return next(r for r in history if r.partition == day.isoformat())

    lost = latest(NOV[1])
    assert not lost.evaluation.passed and "AAPL (lost with the corrupt file" in lost.evaluation.metadata["missing"].value
    assert latest(NOV[0]).evaluation.passed  # the dates that merged stay complete
    assert not lake.has_partition(CURATED_BARS, "AAPL", NOV[1]) and month_file_dates(lake.month_file(CURATED_BARS, "AAPL", "2024-11")) == {NOV[0], NOV[2]}
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-26", "2024-11-26"), defs=platform.defs).complete
    assert latest(NOV[1]).evaluation.passed and lake.has_partition(CURATED_BARS, "AAPL", NOV[1])
