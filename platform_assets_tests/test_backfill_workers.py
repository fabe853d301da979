"""Backfill workers: forked from a server that imported the libraries once, run under the caller's
environment of the moment (not the server's, which is from when the first backfill started it)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt

import dagster as dg

from definitions import build_definitions
from platform_api.backfill import plan_backfill, run_backfill, worker_context
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
