"""Backfill workers: forked from a server that imported the libraries once, run under the caller's
environment of the moment (not the server's, which is from when the first backfill started it)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt

import dagster as dg

from definitions import build_definitions
from platform_api.backfill import plan_backfill, run_backfill, worker_context
from platform_assets.partitions import SYMBOL_GROUP_TAG, SYMBOLS_TAG
from platform_assets.symbol_days import COMPLETE_CHECK
from resources.lake import CURATED_BARS
from resources.settings import get_settings, load_settings

D1, D2 = dt.date(2024, 11, 26), dt.date(2024, 11, 27)


def _backfill_under_env(tmp_path, monkeypatch, name: str):
    data = tmp_path / name / "data"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(data))
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    settings = load_settings()
    home = tmp_path / name / "home"
    home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        plan = plan_backfill(["AAPL"], D1, D2, min_chunks=2)
        report = run_backfill(instance, plan, defs=build_definitions(settings), add_missing_symbols=True, workers=2)
        runs = instance.get_run_records()
    return data, report, runs


def test_two_backfills_in_one_process_each_run_under_the_environment_of_their_call(tmp_path, monkeypatch):
    first, first_report, first_runs = _backfill_under_env(tmp_path, monkeypatch, "first")
    second, second_report, second_runs = _backfill_under_env(tmp_path, monkeypatch, "second")
    for data, report, runs in ((first, first_report, first_runs), (second, second_report, second_runs)):
        assert report.success and len(report.runs) == 2, report
        assert {r.dagster_run.run_id for r in runs} == {o.run_id for o in report.runs}
        days = {p.parent.name for p in (data / "lake" / CURATED_BARS.relative_dir() / "symbol=AAPL").rglob("*.parquet")}
        assert days, f"no curated bars under {data}: the runs wrote elsewhere"


# what a worker has loaded before its first task; a builtin as the task, so that running it imports
# nothing (a function of this module would import the module, and with it the platform's)
LOADED = "sorted(__import__('sys').modules)"


def test_workers_are_forked_from_the_preload_server_not_spawned():
    context = worker_context()
    assert context.get_start_method() == "forkserver"
    with cf.ProcessPoolExecutor(1, mp_context=context) as pool:
        modules = pool.submit(eval, LOADED).result()
    assert {"dagster", "great_expectations", "pandas", "pyarrow.parquet", "duckdb"} <= set(modules)  # imported once, by the server
    assert "definitions" not in modules and "resources.adapters" not in modules  # the platform loads under each task's environment


def test_a_daily_run_is_split_by_symbols_across_the_workers_and_every_symbol_lands(tmp_path, monkeypatch):
    """One date and two workers: two runs (symbol groups) instead of one run keeping one worker
    busy; every symbol's layers are stored and the date's completeness check, judged over every
    tracked symbol, passes at its latest evaluation."""
    symbols = ["AAPL", "MSFT", "NVDA"]
    plan = plan_backfill(symbols, D1, D1, min_chunks=2)
    assert [(chunk, group) for chunk, group in plan.runs] == [([D1], ["AAPL", "MSFT"]), ([D1], ["NVDA"])]
    assert plan_backfill(symbols, D1, D2, min_chunks=2).symbol_groups is None  # enough date chunks: no split
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(data))
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        report = run_backfill(instance, plan, defs=build_definitions(load_settings()), add_missing_symbols=True, workers=2)
        assert report.success and len(report.runs) == 2
        tags = [instance.get_run_by_id(run.run_id).tags for run in report.runs]
        assert sorted((t.get(SYMBOLS_TAG), t.get(SYMBOL_GROUP_TAG)) for t in tags) == [("AAPL,MSFT", "1/2"), ("NVDA", "2/2")]
        for symbol in symbols:
            assert list((data / "lake" / CURATED_BARS.relative_dir() / f"symbol={symbol}").rglob("*.parquet")), symbol
        check = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
        evaluations = [r.evaluation for r in instance.event_log_storage.get_asset_check_execution_history(check, limit=20) if isinstance(r.evaluation, dg.AssetCheckEvaluation)]
        on_date = [e for e in evaluations if e.partition == D1.isoformat()]  # filed under the date, though the runs are one-date ranges
        assert len(on_date) == 2 and on_date[0].passed  # one per run; the latest saw every symbol stored


def test_a_symbol_group_run_says_why_the_other_groups_symbols_are_missing(platform):
    """The run of one symbol group that finishes first sees the other group's symbols not stored
    yet: its evaluation fails (they are missing), naming the split so the UI reader knows why."""
    from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.universe import add_symbols

    add_symbols(platform.instance, ["AAPL", "MSFT"])
    job = platform.defs.resolve_job_def("offline_pipeline")
    tags = {RANGE_START_TAG: D1.isoformat(), RANGE_END_TAG: D1.isoformat(), SYMBOLS_TAG: "AAPL", SYMBOL_GROUP_TAG: "1/2"}
    assert job.execute_in_process(instance=platform.instance, tags=tags, raise_on_error=False).success
    check = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
    latest = next(r.evaluation for r in platform.instance.event_log_storage.get_asset_check_execution_history(check, limit=5)
                  if isinstance(r.evaluation, dg.AssetCheckEvaluation) and r.evaluation.partition == D1.isoformat())
    assert not latest.passed
    assert latest.metadata["missing"].text.startswith("MSFT (not in this run (symbol group 1/2 of a backfill split by symbols")
