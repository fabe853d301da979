"""Status tells the truth: per-date materialization, per-date completeness checks, failure isolation."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG, plan_backfill, run_backfill
from platform_assets.partitions import SYMBOLS_TAG, crypto_date_partitions, stock_date_partitions
from platform_assets.symbol_days import COMPLETE_CHECK
from platform_assets.universe import add_symbols
from resources.lake import CURATED_BARS, feature_table, raw_bars_table

D1, D2, D3 = dt.date(2024, 11, 26), dt.date(2024, 11, 27), dt.date(2024, 11, 29)
RANGE = {RANGE_START_TAG: D1.isoformat(), RANGE_END_TAG: D2.isoformat()}
DERIVED = ["curated_bars", "aligned_bars", "bar_features", "l2_features", "labels"]


def _status(instance, asset: str) -> tuple[set[str], set[str]]:
    """(materialized, failed) partition keys of an asset, as the UI computes them."""
    value = get_and_update_asset_status_cache_value(instance._instance if hasattr(instance, "_instance") else instance, dg.AssetKey(asset), stock_date_partitions)
    materialized = set(value.deserialize_materialized_partition_subsets(stock_date_partitions).get_partition_keys())
    failed = set(value.deserialize_failed_partition_subsets(stock_date_partitions).get_partition_keys())
    return materialized, failed


def _latest_check(instance, asset: str, partition: str):
    """Latest evaluation of ``symbols_complete`` on one date partition."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), COMPLETE_CHECK)
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=100):
        evaluation = record.evaluation
        if evaluation is not None and evaluation.partition == partition:
            return evaluation
    return None


def _check_partitions(instance, asset: str, partitions_def=stock_date_partitions) -> dict[str, str]:
    """Date -> status of ``symbols_complete`` as the check's Partitions tab shows it (Dagster's own
    check state: an evaluation not pointing at the date's latest materialization is not shown)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), COMPLETE_CHECK)
    state = instance.event_log_storage.get_asset_check_state([(key, partitions_def)])[key]
    return {day: status.value for status, subset in state.subsets.items() for day in subset.subset_value.get_partition_keys()}


def _run(platform, tags, selection=None):
    job = platform.defs.resolve_job_def("offline_pipeline")
    keys = [dg.AssetKey(a) for a in selection] if selection else None
    return job.execute_in_process(instance=platform.instance, tags=tags, raise_on_error=False, asset_selection=keys)


def test_backfill_without_upstream_data_leaves_dates_failed_not_green(platform):
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    result = _run(platform, RANGE, selection=DERIVED)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no input data" in failure.step_failure_data.error.message
    materialized, failed = _status(platform.instance, "curated_bars")
    assert materialized == set() and failed == {D1.isoformat(), D2.isoformat()}
    assert not list((platform.resources["lake"].root).rglob("curated_bars/**/*.parquet"))


def test_missing_symbol_makes_its_date_fail_the_completeness_check(platform):
    add_symbols(platform.instance, ["AAPL", "MSFT", "SPY"])
    result = _run(platform, {**RANGE, SYMBOLS_TAG: "AAPL,MSFT"})
    assert result.success
    for asset in DERIVED:
        materialized, failed = _status(platform.instance, asset)
        assert materialized == {D1.isoformat(), D2.isoformat()} and not failed, asset
        for day in (D1, D2):
            evaluation = _latest_check(platform.instance, asset, day.isoformat())
            assert evaluation is not None and not evaluation.passed, (asset, day)
            assert evaluation.severity == dg.AssetCheckSeverity.ERROR
            assert "SPY" in evaluation.metadata["missing"].value and "AAPL" not in evaluation.metadata["missing"].value
        # what the UI shows on each date (a ranged run: the dates' evaluations point at this run's materializations)
        assert _check_partitions(platform.instance, asset) == {D1.isoformat(): "FAILED", D2.isoformat(): "FAILED"}, asset

    # per-partition metadata is the partition's own numbers, not the run's totals
    records = platform.instance.fetch_materializations(dg.AssetKey("curated_bars"), limit=10).records
    by_partition = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert by_partition[D1.isoformat()]["date"].value == D1.isoformat()
    assert by_partition[D1.isoformat()]["symbols_written"].value == 2
    assert by_partition[D1.isoformat()]["rows"].value == 2 * 390

    # the missing symbol filled later: the same dates now pass
    assert _run(platform, {**RANGE, SYMBOLS_TAG: "SPY"}).success
    for day in (D1, D2):
        assert _latest_check(platform.instance, "curated_bars", day.isoformat()).passed
    assert _check_partitions(platform.instance, "curated_bars") == {D1.isoformat(): "SUCCEEDED", D2.isoformat(): "SUCCEEDED"}


def _break_curation(monkeypatch, curation, error_for):
    """Curation raises ``error_for(symbol, day)`` (when not None) for that symbol-day: the batched
    pass over a symbol's sessions fails when one of them does (then each date is redone alone),
    the per-date transform fails for that date only."""
    real_one, real_many = curation.curate_bars, curation.curate_sessions

    def one(raw, timeline, *, symbol, day, **kwargs):
        if (error := error_for(symbol, day)) is not None:
            raise error
        return real_one(raw, timeline, symbol=symbol, day=day, **kwargs)

    def many(raw, raw_rows, timelines, *, symbol, days, **kwargs):
        for day in days:
            if (error := error_for(symbol, day)) is not None:
                raise error
        return real_many(raw, raw_rows, timelines, symbol=symbol, days=days, **kwargs)

    monkeypatch.setattr(curation, "curate_bars", one)
    monkeypatch.setattr(curation, "curate_sessions", many)


def test_one_failing_symbol_day_fails_only_itself(platform, monkeypatch):
    import platform_assets.curation.assets as curation

    _break_curation(monkeypatch, curation, lambda symbol, day: ValueError("injected vendor garbage for MSFT") if (symbol, day) == ("MSFT", D2) else None)
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    result = _run(platform, RANGE)
    assert result.success  # the other symbol-days landed through every layer
    lake = platform.resources["lake"]
    assert lake.has_partition(CURATED_BARS, "AAPL", D2) and lake.has_partition(CURATED_BARS, "MSFT", D1)
    assert not lake.has_partition(CURATED_BARS, "MSFT", D2)
    assert lake.has_partition(feature_table("bar_features", "v1"), "AAPL", D2)
    evaluation = _latest_check(platform.instance, "curated_bars", D2.isoformat())
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "MSFT (failed: ValueError: injected vendor garbage for MSFT)" in evaluation.metadata["missing"].value
    assert _latest_check(platform.instance, "curated_bars", D1.isoformat()).passed
    records = platform.instance.fetch_materializations(dg.AssetKey("curated_bars"), limit=10).records
    meta = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}[D2.isoformat()]
    assert "injected vendor garbage" in meta["symbols_failed"].value and meta["symbols_written"].value == 1


def test_a_failed_symbol_day_makes_the_backfill_the_cli_and_the_job_say_failed(platform, monkeypatch):
    """The run succeeds (the other symbol-days land), but nothing that reports on the whole
    backfill may say "succeeded": the report is not complete and names the symbol-day, the job
    state is FAILED with it in its errors."""
    import platform_assets.curation.assets as curation
    from platform_api.jobs import get_backfill_job_status, trigger_backfill

    _break_curation(monkeypatch, curation, lambda symbol, day: ValueError("injected vendor garbage for MSFT") if (symbol, day) == ("MSFT", D2) else None)
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    report = run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs)
    assert report.success and not report.complete
    assert report.runs[0].failed_symbol_days.keys() == {"curated_bars"}
    assert any("curated_bars: 1 symbol-day(s) failed" in line and "MSFT" in line and "injected vendor garbage" in line for line in report.failures())
    job = trigger_backfill("curated_bars", ["AAPL", "MSFT"], D1, D2 + dt.timedelta(days=1), wait=True,
                           instance=platform.instance, settings=platform.settings, defs=platform.defs)
    status = get_backfill_job_status(job.job_id, instance=platform.instance)
    assert status.state == "FAILED" and status.summary["runs_failed"] == 0
    assert any("curated_bars: 1 symbol-day(s) failed" in error and "MSFT" in error for error in status.summary["errors"])


def test_a_date_whose_only_symbol_failed_is_failed_and_the_rest_materialized(platform, monkeypatch):
    import platform_assets.curation.assets as curation

    _break_curation(monkeypatch, curation, lambda symbol, day: RuntimeError("disk on fire") if day == D2 else None)
    add_symbols(platform.instance, ["AAPL"])
    result = _run(platform, RANGE)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "AAPL@2024-11-27: RuntimeError: disk on fire" in failure.step_failure_data.error.message
    materialized, failed = _status(platform.instance, "curated_bars")
    assert materialized == {D1.isoformat()} and failed == {D2.isoformat()}


@pytest.mark.parametrize("workers", [1])
def test_backfill_api_reports_complete_graph(platform, workers):
    plan = plan_backfill(["AAPL"], D1, D2)
    report = run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True, workers=workers)
    assert report.success
    for asset in DERIVED:
        materialized, failed = _status(platform.instance, asset)
        assert materialized == {D1.isoformat(), D2.isoformat()} and not failed
        assert _latest_check(platform.instance, asset, D1.isoformat()).passed


def test_bad_symbol_selection_is_refused_at_launch_and_changes_no_partition(tmp_path):
    from dagster._core.run_coordinator import SubmitRunContext

    from definitions import build_definitions
    from platform_assets.automation.run_guard import InvalidSymbolSelectionError, symbol_selection_problem
    from resources.settings import load_settings

    defs = build_definitions(load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false"))
    coordinator = {"module": "platform_assets.automation.run_guard", "class": "SymbolValidatingRunCoordinator"}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home"), overrides={"run_coordinator": coordinator}) as instance:
        add_symbols(instance, ["AAPL"])
        job = defs.resolve_job_def("offline_pipeline")
        assert job.execute_in_process(instance=instance, partition_key=D1.isoformat()).success
        before = _status(instance, "curated_bars")
        assert before == ({D1.isoformat()}, set())

        for bad in ("AAPL,MSTF", "../etc"):
            run = instance.create_run_for_job(job, tags={SYMBOLS_TAG: bad, "dagster/partition": D1.isoformat()}, asset_selection=frozenset({dg.AssetKey("curated_bars")}))
            with pytest.raises(InvalidSymbolSelectionError, match="run not started"):
                instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
            assert instance.get_run_by_id(run.run_id) is None
        assert _status(instance, "curated_bars") == before

        assert symbol_selection_problem(instance, "AAPL") is None


def test_a_symbol_removed_while_a_backfill_is_planned_or_running_is_skipped_the_others_land(platform):
    """``DELETE /data/symbols/X`` while a refresh is queued or running: the job used to fail whole
    (``UnknownSymbolError``), refreshing none; now its plan and its runs skip the removed symbol."""
    from platform_assets.automation.run_guard import symbol_selection_problem
    from platform_assets.universe import remove_symbol

    add_symbols(platform.instance, ["AAPL", "MSFT"])
    plan = plan_backfill(["AAPL", "MSFT"], D1, D2)
    remove_symbol(platform.instance, "MSFT")  # after planning, before running
    report = run_backfill(platform.instance, plan, defs=platform.defs)
    assert report.complete and report.plan.symbols == ["AAPL"]
    lake = platform.defs.resources["lake"]
    assert lake.has_partition(CURATED_BARS, "AAPL", D1) and not lake.has_partition(CURATED_BARS, "MSFT", D1)
    assert _check_partitions(platform.instance, "curated_bars") == {D1.isoformat(): "SUCCEEDED", D2.isoformat(): "SUCCEEDED"}

    # a run already tagged with both (planned before the removal) skips MSFT, with a warning
    result = _run(platform, {RANGE_START_TAG: D3.isoformat(), RANGE_END_TAG: D3.isoformat(), SYMBOLS_TAG: "AAPL,MSFT"})
    assert result.success
    assert lake.has_partition(CURATED_BARS, "AAPL", D3) and not lake.has_partition(CURATED_BARS, "MSFT", D3)
    assert any("skipping MSFT" in (r.user_message or "") for r in platform.instance.all_logs(result.run_id))
    assert symbol_selection_problem(platform.instance, "AAPL,MSFT") is None  # the launch guard lets it run
    assert "MSFT" in symbol_selection_problem(platform.instance, "MSFT")  # nothing left to run: refused
    assert "NVDA" in symbol_selection_problem(platform.instance, "AAPL,NVDA")  # never tracked: still refused
    only_removed = _run(platform, {RANGE_START_TAG: D3.isoformat(), RANGE_END_TAG: D3.isoformat(), SYMBOLS_TAG: "MSFT"})
    assert not only_removed.success


def test_ingestion_and_backfill_finish_every_derived_layer(platform):
    from platform_api import get_features_for_training, trigger_backfill, trigger_historical_ingestion

    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    trigger_historical_ingestion("sim", ["AAPL"], "2024-11-26", "2024-11-27", wait=True, add_missing_symbols=True, **kw)
    pulled = get_features_for_training(["bar_features", "l2_features"], {"bar_features": "v1", "l2_features": "v1"}, ["AAPL"],
                                       "2024-11-26", "2024-11-27", include_labels=True, settings=platform.settings)
    assert len(pulled.features) == 390 and pulled.labels is not None and len(pulled.labels) == 390

    lake = platform.resources["lake"]
    l2_file = lake.day_source(feature_table("l2_features", "v1"), "AAPL", D1)
    before = l2_file.stat().st_mtime_ns
    trigger_backfill("curated_bars", ["AAPL"], "2024-11-26", "2024-11-27", wait=True, **kw)
    assert lake.day_source(feature_table("l2_features", "v1"), "AAPL", D1).stat().st_mtime_ns > before  # every layer recomputed


def test_a_batched_write_that_fails_fails_its_symbol_days_not_the_others(platform, monkeypatch):
    """The batched data path writes a symbol's dates at the end of its pass: if that write fails
    (disk full, permissions), the symbol-days are FAILED with the cause, never reported stored."""
    import resources.lake as lake_module

    real = lake_module.write_parquet_atomic

    def disk_full_for_msft_curated(table, target, **kwargs):
        if "/lake/curated_bars/symbol=MSFT/" in str(target):
            raise OSError(28, "No space left on device")
        return real(table, target, **kwargs)

    monkeypatch.setattr(lake_module, "write_parquet_atomic", disk_full_for_msft_curated)
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    result = _run(platform, RANGE)
    assert result.success  # AAPL landed through every layer
    lake = platform.resources["lake"]
    assert lake.batch_writes
    assert all(lake.has_partition(CURATED_BARS, "AAPL", d) for d in (D1, D2))
    assert not any(lake.has_partition(CURATED_BARS, "MSFT", d) for d in (D1, D2))
    for day in (D1, D2):
        evaluation = _latest_check(platform.instance, "curated_bars", day.isoformat())
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "MSFT (failed: writing curated_bars failed: OSError" in evaluation.metadata["missing"].value
    records = platform.instance.fetch_materializations(dg.AssetKey("curated_bars"), limit=10).records
    meta = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}[D1.isoformat()]
    assert "No space left on device" in meta["symbols_failed"].value and meta["symbols_written"].value == 1
    assert not lake.has_partition(feature_table("bar_features", "v1"), "MSFT", D1)  # nothing built on the missing bars
    from platform_assets.quality.metrics import dq_metrics_table

    metrics = dq_metrics_table("curated_bars")
    for day in (D1, D2):  # DQ results only for data that landed
        assert lake.has_partition(metrics, "AAPL", day) and not lake.has_partition(metrics, "MSFT", day)


@pytest.mark.parametrize("dates", [(D1, D2), (D2,)], ids=["batched-pass", "one-date"])
def test_a_corrupt_raw_batch_fails_its_date_loudly_and_the_next_ingestion_heals_it(platform, dates):
    """Curation meeting a torn newest raw batch (no re-ingestion first) fails that symbol-date with
    the file named (and quarantines it); it neither skips the date as "no raw bars" nor curates
    an older delivery; the symbol's other dates are curated; re-ingesting heals it."""
    from resources.lake import CORRUPT_DIR, raw_bars_table

    add_symbols(platform.instance, ["AAPL", "MSFT"])
    assert _run(platform, RANGE).success
    lake = platform.resources["lake"]
    batch = lake.batch_files(raw_bars_table("sim"), "MSFT", D2)[-1]
    with open(batch, "r+b") as handle:
        handle.truncate(batch.stat().st_size // 2)
    tags = {RANGE_START_TAG: dates[0].isoformat(), RANGE_END_TAG: dates[-1].isoformat()}
    result = _run(platform, tags, selection=["curated_bars"])
    assert result.success  # the other symbol-days landed
    evaluation = _latest_check(platform.instance, "curated_bars", D2.isoformat())
    assert not evaluation.passed
    missing = evaluation.metadata["missing"].value
    assert "MSFT (failed: CorruptLakeFileError: corrupt lake file" in missing and batch.name[-30:] in missing  # the file, named
    assert "AAPL" not in missing
    if D1 in dates:
        assert _latest_check(platform.instance, "curated_bars", D1.isoformat()).passed
    assert any(p.name.startswith(batch.name) for p in (lake.root / CORRUPT_DIR).rglob("*.corrupt"))
    assert _run(platform, RANGE).success  # raw ingestion re-fetches the batch, curation passes
    assert _latest_check(platform.instance, "curated_bars", D2.isoformat()).passed
    assert lake.batch_files(raw_bars_table("sim"), "MSFT", D2)


def test_data_removed_by_hand_fails_its_dates_completeness_check_at_the_next_lake_audit(platform):
    """Dagster keeps a date materialized after its files are removed; the lake status audit job
    fails the ``symbols_complete`` check of each date judged complete whose data a tracked symbol no
    longer has (naming it), fails its own run, leaves other assets' dates alone, and once a re-run
    stores the data again the dates pass and the audit is green."""
    import shutil

    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    lake = platform.defs.resources["lake"]
    audit = platform.defs.resolve_job_def("lake_status_audit_job")
    assert audit.execute_in_process(instance=platform.instance).success  # nothing gone: green
    backup = lake.root.parent / "msft_backup"
    shutil.copytree(lake.symbol_dir(CURATED_BARS, "MSFT"), backup)
    shutil.rmtree(lake.symbol_dir(CURATED_BARS, "MSFT"))  # by hand
    result = audit.execute_in_process(instance=platform.instance, raise_on_error=False)
    assert not result.success
    for day in (D1, D2):
        evaluation = _latest_check(platform.instance, "curated_bars", day.isoformat())
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "MSFT (not stored now" in evaluation.metadata["missing"].value and "AAPL" not in evaluation.metadata["missing"].value
        assert _latest_check(platform.instance, "bar_features", day.isoformat()).passed  # its files are all there
    assert _check_partitions(platform.instance, "curated_bars") == {D1.isoformat(): "FAILED", D2.isoformat(): "FAILED"}  # red on the dates, in the UI
    assert _check_partitions(platform.instance, "bar_features") == {D1.isoformat(): "SUCCEEDED", D2.isoformat(): "SUCCEEDED"}
    key = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
    headline = platform.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]  # what the check list shows
    assert headline.partition is None and not headline.evaluation.passed and headline.evaluation.metadata["dates_incomplete"].value == 2
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success  # a repeat audit: still red, the data is still gone
    assert all(not _latest_check(platform.instance, "curated_bars", day.isoformat()).passed for day in (D1, D2))
    shutil.copytree(backup, lake.symbol_dir(CURATED_BARS, "MSFT"))  # put back by hand: the next audit says so
    assert audit.execute_in_process(instance=platform.instance).success
    assert all(_latest_check(platform.instance, "curated_bars", day.isoformat()).passed for day in (D1, D2))
    shutil.rmtree(lake.symbol_dir(CURATED_BARS, "MSFT"))
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs).complete
    assert all(_latest_check(platform.instance, "curated_bars", day.isoformat()).passed for day in (D1, D2))
    assert audit.execute_in_process(instance=platform.instance).success
    shutil.rmtree(lake.symbol_dir(CURATED_BARS, "MSFT"))  # gone a second time: found again (a second runless evaluation of a date used to crash)
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    assert all(not _latest_check(platform.instance, "curated_bars", day.isoformat()).passed for day in (D1, D2))


def test_raw_batches_and_l2_files_removed_by_hand_fail_their_ingestion_dates_until_re_ingested(platform):
    """The offline source's raw bars and L2 snapshots carry ``symbols_complete`` too: each date is
    judged when ingested (every tracked symbol has its raw batch / L2 day file), and the lake status
    audit fails a date whose batch or L2 file was removed since (no run can re-compute them: they
    stayed green, with curation's rebuild failing on "no input data"); a re-ingest makes it pass."""
    import shutil

    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    for asset in ("raw_bars_sim", "l2_snapshots_sim"):
        for day in (D1, D2):
            evaluation = _latest_check(platform.instance, asset, day.isoformat())
            assert evaluation.passed and evaluation.metadata["tracked_symbols"].value == 2, (asset, day)
    lake, l2_store = platform.defs.resources["lake"], platform.defs.resources["l2_store"]
    audit = platform.defs.resolve_job_def("lake_status_audit_job")
    assert audit.execute_in_process(instance=platform.instance).success
    raw_folder = lake.partition_dir(raw_bars_table("sim"), "MSFT", D1)
    shutil.rmtree(raw_folder)  # by hand
    for path in l2_store.day_files("AAPL", D2):
        path.unlink()
    result = audit.execute_in_process(instance=platform.instance, raise_on_error=False)
    assert not result.success
    raw_check, l2_check = _latest_check(platform.instance, "raw_bars_sim", D1.isoformat()), _latest_check(platform.instance, "l2_snapshots_sim", D2.isoformat())
    assert not raw_check.passed and "MSFT (not stored now" in raw_check.metadata["missing"].value and "AAPL" not in raw_check.metadata["missing"].value
    assert not l2_check.passed and "AAPL (not stored now" in l2_check.metadata["missing"].value
    assert _latest_check(platform.instance, "raw_bars_sim", D2.isoformat()).passed and _latest_check(platform.instance, "l2_snapshots_sim", D1.isoformat()).passed
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs).complete  # re-ingested
    assert lake.batch_files(raw_bars_table("sim"), "MSFT", D1) and l2_store.day_files("AAPL", D2)
    assert audit.execute_in_process(instance=platform.instance).success
    assert _latest_check(platform.instance, "raw_bars_sim", D1.isoformat()).passed and _latest_check(platform.instance, "l2_snapshots_sim", D2.isoformat()).passed


def test_crypto_raw_bars_are_judged_per_utc_day_and_a_removed_batch_fails_its_day_at_the_audit(platform):
    """``crypto_raw_bars_sim`` carries ``symbols_complete`` per UTC day like the stock raw assets (it
    had no check: a pair's batch removed by hand showed nothing red on the raw asset)."""
    import shutil

    saturday, sunday = dt.date(2024, 11, 30), dt.date(2024, 12, 1)
    plan = plan_backfill(["BTC-USD", "ETH-USD"], saturday, sunday)
    assert plan.job_name == "crypto_pipeline"
    assert run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True).complete
    days = {saturday.isoformat(): "SUCCEEDED", sunday.isoformat(): "SUCCEEDED"}
    for asset in ("crypto_raw_bars_sim", "crypto_curated_bars"):
        assert _check_partitions(platform.instance, asset, crypto_date_partitions) == days, asset
    evaluation = _latest_check(platform.instance, "crypto_raw_bars_sim", saturday.isoformat())
    assert evaluation.metadata["tracked_symbols"].value == 2
    lake = platform.defs.resources["lake"]
    shutil.rmtree(lake.partition_dir(raw_bars_table("sim"), "ETH-USD", sunday))  # by hand
    audit = platform.defs.resolve_job_def("lake_status_audit_job")
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    gone = _latest_check(platform.instance, "crypto_raw_bars_sim", sunday.isoformat())
    assert not gone.passed and "ETH-USD (not stored now" in gone.metadata["missing"].value
    assert _check_partitions(platform.instance, "crypto_raw_bars_sim", crypto_date_partitions) == {**days, sunday.isoformat(): "FAILED"}
    assert run_backfill(platform.instance, plan, defs=platform.defs).complete  # re-ingested
    assert audit.execute_in_process(instance=platform.instance).success
    assert _check_partitions(platform.instance, "crypto_raw_bars_sim", crypto_date_partitions) == days


def test_mdp_audit_lake_names_what_is_gone_and_exits_1(platform, monkeypatch, capsys):
    import shutil

    from platform_api import instance as instance_module
    from platform_api.cli import main
    from resources.settings import get_settings

    assert run_backfill(platform.instance, plan_backfill(["AAPL"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    monkeypatch.setattr(instance_module, "get_instance", lambda: platform.instance)
    get_settings.cache_clear()
    try:
        assert main(["audit-lake"]) == 0 and "0 date(s)" in capsys.readouterr().out
        shutil.rmtree(platform.defs.resources["lake"].symbol_dir(feature_table("bar_features", "v1"), "AAPL"))
        assert main(["audit-lake"]) == 1
        out = capsys.readouterr().out
        assert f"NOT STORED: bar_features {D1}: AAPL" in out and f"NOT STORED: bar_features {D2}: AAPL" in out and "curated_bars" not in out
    finally:
        get_settings.cache_clear()
    assert not _latest_check(platform.instance, "bar_features", D1.isoformat()).passed


def test_mdp_audit_lake_decode_finds_pages_rotted_behind_a_readable_footer(platform, monkeypatch, capsys):
    from platform_api import instance as instance_module
    from platform_api.cli import main
    from resources.lake import CORRUPT_DIR, labels_table, month_file_dates
    from resources.settings import get_settings

    assert run_backfill(platform.instance, plan_backfill(["AAPL"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    lake = platform.defs.resources["lake"]
    month = lake.month_file(labels_table("v1"), "AAPL", "2024-11")
    data = bytearray(month.read_bytes())
    end = len(data) - int.from_bytes(data[-8:-4], "little") - 8
    data[end // 4 : end // 2] = bytes(end // 2 - end // 4)  # pages zeroed, footer intact
    month.write_bytes(bytes(data))
    assert month_file_dates(month) == {D1, D2}
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    monkeypatch.setattr(instance_module, "get_instance", lambda: platform.instance)
    get_settings.cache_clear()
    try:
        assert main(["audit-lake"]) == 0  # footers only: the rot is not seen
        capsys.readouterr()
        assert main(["audit-lake", "--decode"]) == 1
        out = capsys.readouterr().out
        assert f"NOT STORED: labels {D1}: AAPL" in out and f"NOT STORED: labels {D2}: AAPL" in out
    finally:
        get_settings.cache_clear()
    assert not month.exists() and any(p.name.startswith("part.parquet") for p in (lake.root / CORRUPT_DIR).rglob("*.corrupt"))
    assert not _latest_check(platform.instance, "labels", D1.isoformat()).passed
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], D1, D2), defs=platform.defs).complete  # a re-run heals
    assert _latest_check(platform.instance, "labels", D1.isoformat()).passed


def test_the_lake_audit_fails_dates_whose_raw_batch_l2_file_or_day_file_is_torn_as_health_does(platform):
    """A torn file is not stored data: the newest raw batch (what curation reads), an L2 day file
    (every file of the day is read) and a derived day file (``date=D/part.parquet`` of a daily
    run) whose footers do not read. ``get_dataset_health`` said so ("results but no stored data"),
    but the lake audit counted them from the listing (and ``--decode`` never looked at raw or L2
    files): their dates stayed green. Now each fails its asset's date; the torn day file is
    quarantined like a corrupt month file, and a re-run of the dates makes them pass again."""
    from platform_api.quality import get_dataset_health
    from resources.lake import PART_FILE

    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D3, D3), defs=platform.defs).complete  # a lone date: day files
    lake, l2_store = platform.defs.resources["lake"], platform.defs.resources["l2_store"]
    day_file = lake.partition_dir(feature_table("l2_features", "v1"), "MSFT", D3) / PART_FILE
    assert day_file.exists()
    audit = platform.defs.resolve_job_def("lake_status_audit_job")
    assert audit.execute_in_process(instance=platform.instance).success
    torn = [lake.batch_files(raw_bars_table("sim"), "MSFT", D1)[-1], *l2_store.day_files("AAPL", D2), day_file]
    for path in torn:
        with open(path, "r+b") as handle:  # a crash or a full disk mid-copy: the footer is gone
            handle.truncate(path.stat().st_size // 2)
    health = get_dataset_health("raw_bars", D1, settings=platform.settings)
    assert any("no stored data" in reason and "MSFT" in reason for reason in health.reasons)
    for decode in (False, True):
        result = audit.execute_in_process(instance=platform.instance, raise_on_error=False, run_config={"ops": {"audit_lake_status": {"config": {"decode": decode}}}})
        assert not result.success, decode
        for asset, day, symbol in (("raw_bars_sim", D1, "MSFT"), ("l2_snapshots_sim", D2, "AAPL"), ("l2_features", D3, "MSFT")):
            evaluation = _latest_check(platform.instance, asset, day.isoformat())
            assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR, (asset, decode)
            assert symbol in evaluation.metadata["missing"].value, (asset, decode)
        assert _latest_check(platform.instance, "raw_bars_sim", D2.isoformat()).passed and _latest_check(platform.instance, "l2_snapshots_sim", D1.isoformat()).passed
    assert not day_file.exists()  # quarantined, not deleted: its date is in the lost-dates journal for the next run
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], D1, D3), defs=platform.defs).complete
    assert audit.execute_in_process(instance=platform.instance).success
    for asset, day in (("raw_bars_sim", D1), ("l2_snapshots_sim", D2), ("l2_features", D3)):
        assert _latest_check(platform.instance, asset, day.isoformat()).passed, asset


def test_the_lake_audit_fails_a_date_that_missed_only_dq_blocked_symbols_when_another_symbols_data_goes(platform):
    """A date whose only gap is a DQ-blocked symbol fails ``symbols_complete`` with WARN (the DQ
    gate at work). The lake audit looked only at dates that had passed, so when another symbol's
    data was removed from such a date it stayed WARN, "MSFT (DQ-blocked)": the gap read as by
    design. Now the audit fails it (ERROR, naming the removed symbol and the blocked one); data put
    back by hand makes it WARN again (never passed: MSFT is still blocked), as does a re-run."""
    import shutil

    from resources.lake import ALIGNED_BARS
    from resources.offline_source import OfflineSource

    base = platform.defs
    resources = {**base.resources, "offline_source": OfflineSource(seed=platform.settings.sim_seed, corrupt_days={"MSFT@2024-12-02": "outage"})}
    defs = dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs, resources=resources, executor=dg.in_process_executor)
    blocked_day, other_day = dt.date(2024, 12, 2), dt.date(2024, 12, 3)
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], blocked_day, other_day), defs=defs, add_missing_symbols=True).success
    before = _latest_check(platform.instance, "aligned_bars", blocked_day.isoformat())
    assert not before.passed and before.severity == dg.AssetCheckSeverity.WARN and before.metadata["missing"].value == "MSFT (DQ-blocked)"
    audit = defs.resolve_job_def("lake_status_audit_job")
    assert audit.execute_in_process(instance=platform.instance).success  # a blocked symbol's absence is no loss
    assert _latest_check(platform.instance, "aligned_bars", blocked_day.isoformat()).severity == dg.AssetCheckSeverity.WARN

    lake = defs.resources["lake"]
    backup = lake.root.parent / "aapl_aligned"
    shutil.copytree(lake.symbol_dir(ALIGNED_BARS, "AAPL"), backup)
    shutil.rmtree(lake.symbol_dir(ALIGNED_BARS, "AAPL"))  # by hand
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    for day in (blocked_day, other_day):
        evaluation = _latest_check(platform.instance, "aligned_bars", day.isoformat())
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR, day
        assert "AAPL (not stored now" in evaluation.metadata["missing"].value, day
    assert "MSFT (DQ-blocked)" in _latest_check(platform.instance, "aligned_bars", blocked_day.isoformat()).metadata["missing"].value

    shutil.copytree(backup, lake.symbol_dir(ALIGNED_BARS, "AAPL"))  # put back by hand
    assert audit.execute_in_process(instance=platform.instance).success
    restored = _latest_check(platform.instance, "aligned_bars", blocked_day.isoformat())
    assert not restored.passed and restored.severity == dg.AssetCheckSeverity.WARN and restored.metadata["missing"].value == "MSFT (DQ-blocked)"
    assert _latest_check(platform.instance, "aligned_bars", other_day.isoformat()).passed
    shutil.rmtree(lake.symbol_dir(ALIGNED_BARS, "AAPL"))
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], blocked_day, other_day), defs=defs).success  # a re-run stores it again
    assert _latest_check(platform.instance, "aligned_bars", blocked_day.isoformat()).severity == dg.AssetCheckSeverity.WARN
    assert audit.execute_in_process(instance=platform.instance).success


def test_a_newly_registered_feature_version_is_not_data_lost_at_the_lake_audit(platform):
    """A lake built before ``l2_features`` v2 existed holds v1 only: the audit must not fail every
    historical date as "no longer stored" (v2 was never computed there); v1 removed is still lost,
    and so is a v2 date missing after v2's first one."""
    import shutil

    from resources.lake import feature_table

    assert run_backfill(platform.instance, plan_backfill(["AAPL"], D1, D2), defs=platform.defs, add_missing_symbols=True).complete
    lake = platform.defs.resources["lake"]
    audit = platform.defs.resolve_job_def("lake_status_audit_job")
    shutil.rmtree(lake.symbol_dir(feature_table("l2_features", "v2"), "AAPL"))  # the lake as before v2 was registered
    assert audit.execute_in_process(instance=platform.instance).success
    assert all(_latest_check(platform.instance, "l2_features", day.isoformat()).passed for day in (D1, D2))
    shutil.rmtree(lake.symbol_dir(feature_table("l2_features", "v1"), "AAPL"))  # the first version gone: lost
    assert not audit.execute_in_process(instance=platform.instance, raise_on_error=False).success
    assert all(not _latest_check(platform.instance, "l2_features", day.isoformat()).passed for day in (D1, D2))


def test_held_by_every_version_counts_later_versions_from_their_first_date():
    from platform_assets.lake_status import held_by_every_version

    d = [dt.date(2024, 12, day) for day in (2, 3, 4, 5)]
    assert held_by_every_version([set(d), set()]) == set(d)  # v2 not computed for the symbol yet
    assert held_by_every_version([set(d), {d[2], d[3]}]) == set(d)  # v2 computed from the 4th on
    assert held_by_every_version([set(d), {d[1], d[3]}]) == {d[0], d[1], d[3]}  # the 4th missing after v2's first date
    assert held_by_every_version([{d[0]}, set(d)]) == {d[0]}  # the first version counts in full
