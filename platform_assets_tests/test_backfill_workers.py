"""Backfill workers: forked from a server that imported the libraries once, run under the caller's
environment of the moment (not the server's, which is from when the first backfill started it)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
from pathlib import Path

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
    assert not {m for m in modules if m.split(".")[0] in ("platform_assets", "platform_api", "resources")} - {
        "platform_assets", "platform_assets.calendars", "resources", "resources.clock", "platform_api", "platform_api.worker_preload",
        "platform_api.process_life"}  # only the environment-free calendars and the clock they read
    calendar_built = "__import__('platform_assets.calendars').calendars._calendar_until.cache_info().currsize"
    with cf.ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(eval, calendar_built).result() == 1  # the exchange calendar comes built


def test_a_backfill_is_cut_by_symbols_or_by_dates_whichever_keeps_the_workers_busy_less():
    """Month-aligned date cuts are uneven (60 dates: 35 + 25), symbol groups are not, but each
    group's run pays every date's Dagster events: many symbols split by symbols, few by dates."""
    from bench.backfill import SYMBOLS
    from platform_api.backfill import DATE_COST_IN_SYMBOL_DAYS, makespan

    plan = plan_backfill(SYMBOLS[:30], "2024-09-13", "2024-12-06", min_chunks=2)  # 60 sessions
    assert len(plan.chunks) == 1 and [len(group) for _, group in plan.runs] == [15, 15]
    assert sorted(s for _, group in plan.runs for s in group) == sorted(SYMBOLS[:30])  # every symbol in one group
    few = plan_backfill(SYMBOLS[:10], "2024-09-13", "2024-12-06", min_chunks=2)
    assert few.symbol_groups is None and [len(c) for c in few.chunks] == [35, 25]
    assert makespan(few.chunks, 10, 1, 2) == 35 * (10 + DATE_COST_IN_SYMBOL_DAYS) < makespan([few.dates], 10, 2, 2) == 60 * (5 + DATE_COST_IN_SYMBOL_DAYS)
    one = plan_backfill(["AAPL"], "2024-09-13", "2024-12-06", min_chunks=2)
    assert one.symbol_groups is None and len(one.chunks) == 2 and sum(map(len, one.chunks)) == 60
    long = plan_backfill(SYMBOLS[:30], "2024-01-02", "2024-08-30", min_chunks=2)  # 3 date chunks of <= 64: 3 runs on 2 workers
    assert len(long.chunks) == 3 and [len(g) for g in long.symbol_groups] == [15, 15] and len(long.runs) == 6
    assert [group for _, group in long.runs[:2]] == long.symbol_groups  # a chunk's groups run side by side
    assert plan_backfill(SYMBOLS[:30], "2024-09-13", "2024-12-06").symbol_groups is None  # one worker: one run


def test_a_daily_run_is_split_by_symbols_across_the_workers_and_every_symbol_lands(tmp_path, monkeypatch):
    """One date and two workers: two runs (symbol groups) instead of one run keeping one worker
    busy; every symbol's layers are stored and the date's completeness check, judged over every
    tracked symbol, passes at its latest evaluation."""
    symbols = ["AAPL", "MSFT", "NVDA"]
    plan = plan_backfill(symbols, D1, D1, min_chunks=2)
    assert [(chunk, group) for chunk, group in plan.runs] == [([D1], ["AAPL", "MSFT"]), ([D1], ["NVDA"])]
    assert plan_backfill(symbols, D1, D2, min_chunks=2).runs == [([D1], symbols), ([D2], symbols)]  # two even date chunks: no split
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(data))
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        report = run_backfill(instance, plan, defs=build_definitions(load_settings()), add_missing_symbols=True, workers=2)
        assert report.success and len(report.runs) == 2
        assert sorted(run.symbol_group for run in report.runs) == ["1/2", "2/2"]
        assert all(run.materializations["curated_bars"] == 1 for run in report.runs)  # each group's run materialized the date
        assert report.materialized["curated_bars"] == 1 and len(report.materialized) == 7  # once per asset and date, not per run
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


def _wait_for(path, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def test_a_run_planned_last_judges_a_shared_date_only_after_the_earlier_runs_did(platform, tmp_path, monkeypatch):
    """Dagster takes a date's latest evaluation from the run *planned* last, whenever it judged.
    Group 1 (AAPL) is planned first and held at its step's start; group 2 (MSFT), planned after it,
    writes its symbol first. Judging then, group 2 would name AAPL missing, and its failure would
    stay the date's word once AAPL landed. It must wait for group 1 to judge first; its own
    judgement, the latest, then sees both symbols stored."""
    import multiprocessing

    from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets import symbol_days
    from platform_assets.universe import add_symbols

    add_symbols(platform.instance, ["AAPL", "MSFT"])
    job = platform.defs.resolve_job_def("offline_pipeline")
    base = {RANGE_START_TAG: D1.isoformat(), RANGE_END_TAG: D1.isoformat()}
    assert job.execute_in_process(instance=platform.instance, tags=base).success  # raw and L2 for both
    lake = platform.defs.resources["lake"]
    for symbol in ("AAPL", "MSFT"):
        lake.delete_partition(CURATED_BARS, symbol, D1)
    started, go, done = tmp_path / "group1-started", tmp_path / "group1-go", tmp_path / "group1-done"
    curated = [dg.AssetKey("curated_bars")]

    def group_one() -> None:  # a forked child: the patch is its own
        run_by_symbol = symbol_days.SymbolDayStep.run_by_symbol

        def held(step, *args):
            started.touch()
            _wait_for(go, 60)
            return run_by_symbol(step, *args)

        symbol_days.SymbolDayStep.run_by_symbol = held
        with dg.DagsterInstance.from_ref(platform.instance.get_ref()) as instance:
            tags = {**base, SYMBOLS_TAG: "AAPL", SYMBOL_GROUP_TAG: "1/2"}
            result = job.execute_in_process(instance=instance, tags=tags, asset_selection=curated, raise_on_error=False)
        done.touch()
        raise SystemExit(0 if result.success else 1)

    child = multiprocessing.get_context("fork").Process(target=group_one)
    child.start()
    assert _wait_for(started, 60), "group 1 never started its step"  # its run (and plan) exists before group 2's
    earlier_judges, judge = symbol_days.earlier_judges, symbol_days.SymbolDayStep._check_evaluation

    def look_then_release(*args):  # group 2 asks who judges first (group 1 still held), then group 1 may go on
        waiting = earlier_judges(*args)  # released before the look, a loaded machine let group 1 finish first (flaky in CI)
        go.touch()
        return waiting

    def release_then_judge(step, report):  # group 2 judges: had it not waited, group 1 lands only now
        go.touch()
        evaluation = judge(step, report)
        _wait_for(done, 8)
        return evaluation

    monkeypatch.setattr(symbol_days, "earlier_judges", look_then_release)
    monkeypatch.setattr(symbol_days.SymbolDayStep, "_check_evaluation", release_then_judge)
    tags = {**base, SYMBOLS_TAG: "MSFT", SYMBOL_GROUP_TAG: "2/2"}
    result = job.execute_in_process(instance=platform.instance, tags=tags, asset_selection=curated)
    assert result.success
    child.join(60)
    assert child.exitcode == 0
    assert lake.has_partition(CURATED_BARS, "MSFT", D1) and lake.has_partition(CURATED_BARS, "AAPL", D1)
    check = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
    [latest] = platform.instance.event_log_storage.get_asset_check_partition_info([check], partition_keys=[D1.isoformat()])
    assert latest.latest_planned_run_id == result.run_id  # group 2's evaluation is the date's word
    history = [r for r in platform.instance.event_log_storage.get_asset_check_execution_history(check, limit=10) if r.partition == D1.isoformat()]
    assert history[0].run_id == result.run_id and history[0].evaluation.passed, history[0].evaluation.metadata
    assert latest.latest_execution_status.value == "SUCCEEDED"
    assert any("waiting for run(s)" in (record.user_message or "") for record in platform.instance.all_logs(result.run_id))


def test_a_run_waits_only_for_live_runs_planned_before_it_on_its_dates(platform):
    """``earlier_judges``: a STARTED run planned earlier on a shared date is waited for while its
    process lives; a killed one (its process gone, not yet reaped) never judges and is not; nor is
    a run planned later, or one on other dates."""
    import subprocess
    import sys

    from platform_api.backfill import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.automation.run_reaper import HOST_TAG, PID_TAG, own_process_tags
    from platform_assets.symbol_days import earlier_judges

    job = platform.defs.resolve_job_def("offline_pipeline")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def started_run(day: dt.date, owner: dict[str, str]) -> str:
        run = platform.instance.create_run_for_job(job, tags={RANGE_START_TAG: day.isoformat(), RANGE_END_TAG: day.isoformat(), **owner})
        platform.instance.handle_run_event(run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job.name))
        return run.run_id

    killed = started_run(D1, {PID_TAG: str(dead.pid), HOST_TAG: own_process_tags()[HOST_TAG]})
    alive = started_run(D1, own_process_tags())
    other_date = started_run(D2, own_process_tags())
    ours = started_run(D1, own_process_tags())
    later = started_run(D1, own_process_tags())
    assert platform.instance.get_run_by_id(killed).status == dg.DagsterRunStatus.STARTED
    check = dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK)
    assert earlier_judges(platform.instance, check, ours, [D1]) == {alive}
    assert earlier_judges(platform.instance, check, ours, [D2]) == set()  # ours has no plan on D2
    assert earlier_judges(platform.instance, check, later, [D1]) == {alive, ours}
    assert other_date not in earlier_judges(platform.instance, check, later, [D1, D2])


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc's children lists)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            children = {int(c) for task in Path(f"/proc/{parent}/task").iterdir() for c in (task / "children").read_text().split()}
        except OSError:
            continue
        todo += sorted(children - found)
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killing_the_backfill_process_kills_its_worker_server_and_workers(tmp_path):
    """``kill -9`` of ``mdp backfill --workers 2`` must stop its runs: the preload server and the
    workers die with it instead of finishing the runs unseen and lingering (~1 GB); the runs they
    leave STARTED are failed by the next backfill's reaper."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"), "LAKE_FSYNC": "false"}
    cli = subprocess.Popen([sys.executable, "-m", "platform_api.cli", "backfill", "--symbols", "AAPL,MSFT,NVDA,AMZN", "--start", "2024-10-01",
                            "--end", "2024-12-06", "--workers", "2"], cwd=Path(__file__).resolve().parents[1], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers: set[int] = set()
    deadline = time.monotonic() + 120
    while len(helpers) < 3 and time.monotonic() < deadline and cli.poll() is None:  # the server and two workers
        helpers = {pid for pid in _descendants(cli.pid) if _alive(pid)}
        time.sleep(0.2)
    assert len(helpers) >= 3, helpers
    time.sleep(1.0)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in helpers if _alive(pid)]


def test_a_run_leaves_no_file_memories_behind_in_a_long_lived_caller(platform, monkeypatch):
    """The memories of what a run wrote and read serve its own later steps only: after the run a
    long-lived caller (the HTTP service runs synchronous refreshes in-process) holds none."""
    from resources import l2_store, lake

    sizes = []
    real_put = lake.WRITTEN_TABLES.put
    monkeypatch.setattr(lake.WRITTEN_TABLES, "put", lambda *a: (real_put(*a), sizes.append(lake.WRITTEN_TABLES.size)))
    report = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-03"), defs=platform.defs, add_missing_symbols=True)
    assert report.success and max(sizes) > 0  # used during the run
    assert [m.size for m in (l2_store.WRITTEN_BOOKS, l2_store.TOP_OF_BOOK, lake.WRITTEN_TABLES)] == [0, 0, 0]
