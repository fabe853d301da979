"""The platform on a Dagster instance stored in a real PostgreSQL server (README "Scaling out").

The server is a throw-away cluster started here from the Debian PostgreSQL binaries (``.ci/run``
installs them) on a free loopback port, or the one named by ``PLATFORM_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_api.jobs import get_backfill_job_status, trigger_backfill
from platform_assets.automation.run_reaper import HOST_TAG, PID_TAG, reap_dead_runs
from platform_assets.universe import add_symbols, tracked_symbols
from resources.lake import CURATED_BARS, feature_table


def _bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    if os.environ.get("PLATFORM_TEST_POSTGRES_URL"):
        yield os.environ["PLATFORM_TEST_POSTGRES_URL"]
        return
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mdp-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data = root / "data"

    def run(*args):
        subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True, timeout=120)

    run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        run(bindir / "psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-c", "CREATE DATABASE dagster")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/dagster"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_platform(postgres_url, tmp_path, monkeypatch):
    from definitions import build_definitions
    from resources.settings import get_settings, load_settings

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: \"{postgres_url}\"\n"
        "run_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  cancel_timeout_seconds: 180\n"
        "  max_resume_run_attempts: 0\n  poll_interval_seconds: 15\n"  # as README "Scaling out"
        "telemetry:\n  enabled: false\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(tmp_path / "data"))  # worker processes inherit it
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    settings = load_settings()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.wipe()  # the database outlives a test; every test starts empty
        for name in instance.get_dynamic_partitions("symbols"):
            instance.delete_dynamic_partition("symbols", name)
        yield settings, build_definitions(settings), instance
    get_settings.cache_clear()


def test_parallel_runs_and_a_ranged_backfill_on_postgres(pg_platform):
    settings, defs, instance = pg_platform
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    plan = plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-05", min_chunks=2)
    report = run_backfill(instance, plan, defs=defs, add_missing_symbols=True, workers=2)  # two runs in two processes at once
    assert report.success, [r.error for r in report.runs]
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert sorted(tracked_symbols(instance)) == ["AAPL", "MSFT"]  # dynamic partitions live in PostgreSQL too
    materialized = instance.get_materialized_partitions(dg.AssetKey("curated_bars"))
    assert materialized == {"2024-12-02", "2024-12-03", "2024-12-04", "2024-12-05"}
    lake = defs.resources["lake"]
    assert len(lake.list_partitions(CURATED_BARS)) == 8 and len(lake.list_partitions(feature_table("bar_features", "v1"))) == 8


def test_api_backfill_job_on_postgres(pg_platform):
    settings, defs, instance = pg_platform
    add_symbols(instance, ["NVDA"])
    assert run_backfill(instance, plan_backfill(["NVDA"], "2024-12-02", "2024-12-03"), defs=defs).success
    handle = trigger_backfill("curated_bars", ["NVDA"], "2024-12-02", "2024-12-04", {"max_parallel_jobs": 2},  # [start, end)
                              wait=True, instance=instance, settings=settings, defs=defs)
    status = get_backfill_job_status(handle.job_id, instance=instance)
    assert status.state == "SUCCEEDED" and status.summary["runs_succeeded"] == 2
    assert {r.tags["platform/job_id"] for r in instance.get_runs(dg.RunsFilter(tags={"platform/job_id": handle.job_id}))} == {handle.job_id}


def test_run_monitoring_and_the_dead_run_reaper_on_postgres(pg_platform):
    """A run whose process died is failed on PostgreSQL too (our runs carry their host and pid)."""
    _, _, instance = pg_platform
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = dg.GraphDefinition(name="noop", node_defs=[]).to_job()
    ghost = instance.create_run_for_job(job, tags={PID_TAG: str(dead.pid), HOST_TAG: socket.gethostname()})
    live = instance.create_run_for_job(job, tags={PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})
    assert reap_dead_runs(instance) == [ghost.run_id]
    assert instance.get_run_by_id(ghost.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live.run_id).status == dg.DagsterRunStatus.NOT_STARTED
