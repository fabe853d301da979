"""Job control API: real Dagster runs on a temp instance, states as the instance reports them."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pytest

from platform_api import errors, jobs
from platform_api.jobs import BackfillOptions, get_backfill_job_status, get_ingestion_job_status, trigger_backfill, trigger_daily_ingestion, trigger_historical_ingestion
from platform_assets.universe import add_symbols
from resources.lake import ALIGNED_BARS, CURATED_BARS, feature_table


def _wait_states(job_id, instance, timeout=120.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = get_backfill_job_status(job_id, instance=instance).state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("SUCCEEDED", "FAILED"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout}s")


def test_async_backfill_moves_pending_running_succeeded(platform):
    add_symbols(platform.instance, ["AAPL"])
    # ranges are half-open [start, end): Nov 26 and 27 (Nov 28 is Thanksgiving, excluded anyway)
    trigger_historical_ingestion("sim", ["AAPL"], "2024-11-26", "2024-11-28", wait=True, instance=platform.instance, settings=platform.settings, defs=platform.defs)
    handle = trigger_backfill("curated_bars", ["AAPL"], "2024-11-26", "2024-11-28", instance=platform.instance, settings=platform.settings, defs=platform.defs)
    assert handle.kind == "backfill"
    seen = _wait_states(handle.job_id, platform.instance)
    assert seen == ["PENDING", "RUNNING", "SUCCEEDED"], seen
    status = get_backfill_job_status(handle.job_id, instance=platform.instance)
    assert status.params["dataset_name"] == "curated_bars" and status.start_ts and status.end_ts
    assert status.summary["runs_succeeded"] == status.summary["runs_planned"] == 1
    assert status.summary["materializations"]["curated_bars"] == 2 and "raw_bars_sim" not in status.summary["materializations"]
    runs = [platform.instance.get_run_by_id(run_id) for run_id in status.run_ids]
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
    assert runs[0].tags["platform/job_id"] == handle.job_id


def test_backfill_without_overwrite_features_leaves_them_untouched(platform):
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    handle = trigger_historical_ingestion("sim", ["AAPL", "MSFT"], "2024-11-26", "2024-11-28", add_missing_symbols=True, wait=True, **kw)
    assert get_ingestion_job_status(handle.job_id, instance=platform.instance).state == "SUCCEEDED"
    first = trigger_backfill("curated_bars", ["AAPL", "MSFT"], "2024-11-26", "2024-11-28", wait=True, **kw)
    assert get_backfill_job_status(first.job_id, instance=platform.instance).state == "SUCCEEDED"
    lake = platform.resources["lake"]
    table = feature_table("bar_features", "v1")
    d26, d27 = dt.date(2024, 11, 26), dt.date(2024, 11, 27)
    assert all(lake.has_partition(table, s, d) for s in ("AAPL", "MSFT") for d in (d26, d27))
    # mark stored partitions (whatever the file layout): a kept one keeps the mark, a recomputed one loses it
    marked_features = lake.read(table, ["AAPL"], [d26]).assign(ret_1=-999.0)
    lake.write_partition(table, "AAPL", d26, marked_features)
    lake.write_partition(CURATED_BARS, "AAPL", d26, lake.read(CURATED_BARS, ["AAPL"], [d26]).assign(close=-999.0))
    assert lake.delete_partition(table, "MSFT", d27)
    second = trigger_backfill("curated_bars", ["AAPL", "MSFT"], "2024-11-26", "2024-11-28", {"overwrite_features": False}, wait=True, **kw)
    assert get_backfill_job_status(second.job_id, instance=platform.instance).state == "SUCCEEDED"
    assert (lake.read(table, ["AAPL"], [d26])["ret_1"] == -999.0).all()  # untouched
    assert lake.has_partition(table, "MSFT", d27) and lake.read(table, ["MSFT"], [d27])["ret_1"].notna().any()  # the missing one computed
    assert (lake.read(CURATED_BARS, ["AAPL"], [d26])["close"] > 0).all()  # curated was overwritten (default)


def test_failed_run_makes_the_job_failed(platform):
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    trigger_historical_ingestion("sim", ["SPY"], "2024-11-26", "2024-11-27", add_missing_symbols=True, wait=True, derived_layers=False, **kw)
    lake = platform.resources["lake"]
    blocker = lake.table_dir(ALIGNED_BARS) / "symbol=SPY"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # writing aligned bars for SPY now fails
    handle = trigger_backfill("curated_bars", ["SPY"], "2024-11-26", "2024-11-27", instance=platform.instance, settings=platform.settings, defs=platform.defs)
    assert _wait_states(handle.job_id, platform.instance)[-1] == "FAILED"
    status = get_backfill_job_status(handle.job_id, instance=platform.instance)
    assert status.summary["runs_failed"] == 1 and status.summary["errors"]
    assert platform.instance.get_run_by_id(status.run_ids[0]).status == dg.DagsterRunStatus.FAILURE


def test_bad_requests(platform):
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    with pytest.raises(errors.UnknownSymbolError, match="not tracked"):
        trigger_backfill("curated_bars", ["NVDA"], "2024-11-26", "2024-11-28", **kw)
    with pytest.raises(errors.InvalidSymbolError):
        trigger_backfill("curated_bars", ["NV/DA"], "2024-11-26", "2024-11-28", **kw)
    with pytest.raises(errors.UnknownDatasetError):
        trigger_backfill("raw_bars_sim", ["NVDA"], "2024-11-26", "2024-11-28", **kw)
    with pytest.raises(errors.InvalidOptionError, match="overwrite_feature"):
        trigger_backfill("curated_bars", ["NVDA"], "2024-11-26", "2024-11-28", {"overwrite_feature": False}, **kw)
    with pytest.raises(errors.InvalidOptionError, match="max_parallel_jobs: Input should be greater than or equal to 1"):
        BackfillOptions(max_parallel_jobs=0)  # built by the caller: the API's error too, not pydantic's
    with pytest.raises(errors.InvalidOptionError, match="bar_size"):
        trigger_historical_ingestion("sim", ["NVDA"], "2024-11-26", "2024-11-28", {"bar_size": "7 min"}, **kw)
    with pytest.raises(errors.InvalidOptionError, match="unknown source"):
        trigger_historical_ingestion("yahoo", ["NVDA"], "2024-11-26", "2024-11-28", **kw)
    with pytest.raises(errors.InvalidDateRangeError):
        trigger_historical_ingestion("sim", ["NVDA"], "2024-11-27", "2024-11-26", **kw)
    with pytest.raises(errors.InvalidDateRangeError, match=r"\[start, end\)"):
        trigger_historical_ingestion("sim", ["NVDA"], "2024-11-26", "2024-11-26", **kw)  # empty half-open range
    with pytest.raises(errors.InvalidDateRangeError, match="not an XNYS trading day"):
        trigger_daily_ingestion("2024-11-28", **kw)  # Thanksgiving
    with pytest.raises(errors.UnknownJobError):
        get_backfill_job_status("backfill-000000000000", instance=platform.instance)
    with pytest.raises(errors.UnknownJobError):
        get_backfill_job_status("../../etc/passwd", instance=platform.instance)
    assert not list(Path(platform.settings.base_path).rglob("*.parquet"))  # nothing was written


def test_daily_ingestion_runs_the_whole_graph_for_the_universe(platform):
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    handle = trigger_daily_ingestion("2024-11-29", wait=True, instance=platform.instance, settings=platform.settings, defs=platform.defs)
    status = get_ingestion_job_status(handle.job_id, instance=platform.instance)
    assert status.state == "SUCCEEDED" and status.params["symbols"] == ["AAPL", "MSFT"]
    assert set(status.summary["materializations"]) >= {"raw_bars_sim", "curated_bars", "bar_features", "labels"}


def test_a_refresh_ends_at_the_newest_complete_session(platform):
    """Between midnight UTC and midnight New York the UTC 'today' is a session with no partition
    yet, and until its close today's session has no complete data: "the last N days" ends at the
    newest session that has closed instead of being refused or storing a day of gaps."""
    import pandas as pd

    from platform_api.jobs import get_job_status, last_complete_day, trigger_refresh
    from platform_assets.calendars import STOCKS, sessions_in_range
    from platform_assets.partitions import RANGE_END_TAG, last_partition_date

    newest = last_partition_date(STOCKS)
    complete = sessions_in_range(STOCKS, newest - dt.timedelta(days=10), min(newest, last_complete_day(STOCKS, pd.Timestamp.now(tz="UTC"))))[-1]
    ahead = sessions_in_range(STOCKS, newest + dt.timedelta(days=1), newest + dt.timedelta(days=10))[0]  # no partition yet
    add_symbols(platform.instance, ["SPY"])
    handle = trigger_refresh(days_back=ahead.toordinal() - newest.toordinal() + 1, asset_type="stocks", today=ahead, wait=True,
                             instance=platform.instance, settings=platform.settings, defs=platform.defs)
    status = get_job_status(handle.job_id, instance=platform.instance)
    assert status.state == "SUCCEEDED", status
    ends = {platform.instance.get_run_by_id(run_id).tags[RANGE_END_TAG] for run_id in status.run_ids}
    assert ends == {complete.isoformat()}


def test_a_job_split_by_symbols_counts_each_materialized_partition_once(platform):
    """One date, two symbols, two workers: two runs (a symbol group each) both materialize the
    date; the job's summary counts the date once per asset (it summed the runs' events before)."""
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    trigger_historical_ingestion("sim", ["AAPL", "MSFT"], "2024-11-26", "2024-11-27", wait=True, instance=platform.instance, settings=platform.settings, defs=platform.defs)
    handle = trigger_backfill("curated_bars", ["AAPL", "MSFT"], "2024-11-26", "2024-11-27", {"max_parallel_jobs": 2},
                              wait=True, instance=platform.instance, settings=platform.settings, defs=platform.defs)
    status = get_backfill_job_status(handle.job_id, instance=platform.instance)
    assert status.state == "SUCCEEDED" and status.summary["runs_succeeded"] == status.summary["runs_planned"] == 2
    assert {platform.instance.get_run_by_id(r).tags.get("platform/symbol_group") for r in status.run_ids} == {"1/2", "2/2"}
    assert status.summary["materializations"]["curated_bars"] == 1


def _process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` ("Z" for a zombie); None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_finished_job_workers_are_reaped_not_left_as_zombies(platform):
    """A long-lived caller (the HTTP service) submitting jobs must not collect zombie workers: any
    API call reaps the workers that ended, also of jobs nobody asked about."""
    from platform_api import jobs

    add_symbols(platform.instance, ["AAPL"])
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    other = trigger_historical_ingestion("sim", ["AAPL"], "2024-11-26", "2024-11-28", wait=True, **kw)
    handle = trigger_backfill("curated_bars", ["AAPL"], "2024-11-26", "2024-11-28", **kw)
    pid = jobs._CHILDREN[handle.job_id].pid
    deadline = time.monotonic() + 120
    while _process_state(pid) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.1)  # the worker ends; nobody has asked for its job's status
    assert _process_state(pid) == "Z"  # ended, not yet reaped
    deadline = time.monotonic() + 30  # (a zombie leader becomes waitable once all its threads have exited)
    while _process_state(pid) is not None and time.monotonic() < deadline:
        get_ingestion_job_status(other.job_id, instance=platform.instance)  # any status call (or a submission) reaps, of any job
        time.sleep(0.05)
    assert _process_state(pid) is None and handle.job_id not in jobs._CHILDREN
    assert get_backfill_job_status(handle.job_id, instance=platform.instance).state == "SUCCEEDED"


_KILLED_SYNC_CALLER = """
import datetime as dt, os, signal, sys
import dagster as dg
from dagster._core.instance.ref import InstanceRef
from platform_api import jobs
from platform_assets.universe import add_symbols
from resources.settings import load_settings

instance = dg.DagsterInstance.from_ref(dg.deserialize_value(sys.argv[1], InstanceRef))
settings = load_settings(DATA_PATH_OVERRIDE=sys.argv[2], LAKE_FSYNC="false")
add_symbols(instance, ["AAPL"])
jobs.execute_job = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # killed while running the job
jobs.trigger_daily_ingestion(dt.date(2024, 12, 2), wait=True, instance=instance, settings=settings)
"""


def _status_after_the_caller_was_killed(platform, script: str):
    """Run ``script`` (a caller of a wait=True job that SIGKILLs itself) and read the job's status."""
    import subprocess
    import sys

    from platform_api import job_store

    ref = dg.serialize_value(platform.instance.get_ref())
    proc = subprocess.run([sys.executable, "-c", script, ref, str(platform.settings.base_path)], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    (record_file,) = job_store.jobs_dir(platform.instance).glob("ingestion-*.json")
    return get_ingestion_job_status(record_file.stem, instance=platform.instance)


def test_a_sync_job_whose_process_died_is_failed_not_running_forever(platform):
    """A job run with wait=True (a sync HTTP refresh runs inside the service) has no worker
    process of its own: when the process running it dies (kill -9 of `mdp serve`), its status
    must turn FAILED, not stay PENDING/RUNNING forever."""
    status = _status_after_the_caller_was_killed(platform, _KILLED_SYNC_CALLER)
    assert status.state == "FAILED", status
    assert any("exited before finishing" in e for e in status.summary["errors"]), status.summary


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-12-03T01:00:00Z", "2024-12-02"),  # Mon 20:00 New York: the session that just closed, not Tuesday's (the UTC date)
        ("2024-12-02T14:00:00Z", "2024-11-29"),  # Mon 09:00 New York, before the open: Friday's (half day), not Monday's
    ],
)
def test_daily_ingestion_defaults_to_the_newest_closed_session(platform, monkeypatch, now, expected):
    import pandas as pd

    from resources import clock

    monkeypatch.setattr(clock, "utc_now", lambda: pd.Timestamp(now))
    add_symbols(platform.instance, ["AAPL"])
    handle = trigger_daily_ingestion(wait=True, instance=platform.instance, settings=platform.settings, defs=platform.defs)
    status = get_ingestion_job_status(handle.job_id, instance=platform.instance)
    assert status.params["as_of_date"] == expected
    assert status.state == "SUCCEEDED", status.summary


def test_a_job_whose_process_died_after_its_run_has_an_end_and_counts_what_landed(platform):
    """The job's process dies after its run materialized the day but before it recorded the job as
    finished: FAILED, with an end_ts (a terminal state always has one) and the partitions its run
    did materialize (before: end_ts None and materializations {})."""
    script = _KILLED_SYNC_CALLER.replace(
        "jobs.execute_job = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # killed while running the job",
        "real = jobs.run_backfill\n"
        "def run_then_die(*args, **kwargs):\n"
        "    real(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "jobs.run_backfill = run_then_die",
    )
    assert "run_then_die" in script
    status = _status_after_the_caller_was_killed(platform, script)
    assert status.state == "FAILED", status
    assert status.end_ts is not None and status.end_ts >= status.start_ts
    assert status.summary["materializations"].get("raw_bars_sim") == 1 and status.summary["materializations"].get("labels") == 1, status.summary


def test_a_sync_job_run_on_another_host_is_not_judged_by_a_pid_here():
    """Status read through another API replica or host sharing the job store: the runner's pid means
    nothing here, so the job is not declared dead (it was, FAILED while running normally)."""
    import socket
    import subprocess
    import sys

    from platform_api.job_store import JobRecord

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer exists
    record = JobRecord(job_id="refresh-x", kind="refresh", params={}, symbols=["AAPL"], start="2024-12-02", end="2024-12-02",
                       job_name="offline_pipeline", asset_selection=None, tags={}, runner_pid=gone.pid, runner_start=1.0)
    assert jobs._worker_gone(record)  # no host recorded (older records): judged here, as before
    record.runner_host = socket.gethostname()
    assert jobs._worker_gone(record)
    record.runner_host = "another-host"
    assert not jobs._worker_gone(record)
