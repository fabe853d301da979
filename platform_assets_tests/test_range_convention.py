"""One range convention at every entry point: ``[start, end)`` in UTC, ``end`` excluded.

Each entry point is asked for ``start=2024-11-26, end=2024-11-27`` over a lake holding
2024-11-26 and 2024-11-27, and must answer for exactly the one day 2024-11-26.
"""

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest

from definitions import build_definitions
from platform_api import errors
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.coverage import coverage_stats
from platform_api.jobs import get_backfill_job_status, trigger_backfill
from platform_api.quality import get_data_quality_summary
from platform_api.retrieval import get_curated_bars, get_features_for_training
from resources.settings import load_settings
from resources.warehouse import LakeWarehouse

REPO = Path(__file__).resolve().parent.parent
DAY, NEXT = dt.date(2024, 11, 26), dt.date(2024, 11, 27)
START, END = "2024-11-26", "2024-11-27"


@contextlib.contextmanager
def _serve(home: Path, data: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATA_PATH_OVERRIDE": str(data), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    env.pop("PLATFORM_API_TOKEN", None)
    child = subprocess.Popen([sys.executable, "-m", "platform_api.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            assert child.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=20)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    settings = load_settings(DATA_PATH_OVERRIDE=str(root / "data"), LAKE_FSYNC="false")
    defs = build_definitions(settings)
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        assert run_backfill(instance, plan_backfill(["AAPL"], DAY, NEXT), defs=defs, add_missing_symbols=True).success
        yield root, settings, defs, instance


def _sessions(ts) -> set[dt.date]:
    return set(pd.DatetimeIndex(ts).tz_convert("America/New_York").date)


def _retrieval_bars(env):
    _, settings, *_ = env
    return _sessions(get_curated_bars("AAPL", START, END, settings=settings)["ts"])


def _retrieval_training(env):
    _, settings, *_ = env
    return _sessions(get_features_for_training(["bar_features"], "v1", ["AAPL"], START, END, settings=settings).features["ts"])


def _dq_summary(env):
    _, settings, *_ = env
    summary = get_data_quality_summary("curated_bars", START, END, settings=settings)
    assert summary.date_range == (DAY, NEXT)  # echoes the exclusive end
    return set(summary.to_frame()["date"])


def _io_manager_metadata(env):
    _, _, defs, instance = env
    frame = defs.load_asset_value("curated_bars", instance=instance, metadata={"start": START, "end": END, "symbols": ["AAPL"]})
    return set(frame["date"])


def _trigger(env):
    _, settings, defs, instance = env
    handle = trigger_backfill("curated_bars", ["AAPL"], START, END, wait=True, instance=instance, settings=settings, defs=defs)
    status = get_backfill_job_status(handle.job_id, instance=instance)
    assert status.state == "SUCCEEDED" and status.summary["materializations"]["curated_bars"] == 1
    return {dt.date.fromisoformat(day) for day in status.params["trading_days"]}


def _cli(env):
    root, *_ = env
    home = root / "cli_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    run_env = {**os.environ, "DAGSTER_HOME": str(home), "DATA_PATH_OVERRIDE": str(root / "cli_data"), "LAKE_FSYNC": "false"}
    done = subprocess.run([sys.executable, "-m", "platform_api.cli", "backfill", "--symbols", "AAPL", "--start", START, "--end", END],
                          cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    first, last = re.search(r"\((\d{4}-\d\d-\d\d) \.\. (\d{4}-\d\d-\d\d)\)", done.stdout).groups()
    return {dt.date.fromisoformat(first), dt.date.fromisoformat(last)}


def _days_of(row: dict) -> set[dt.date]:
    """The days a coverage row counted: ``expected_days`` consecutive sessions from its start."""
    curated = row["layers"]["curated"]
    assert curated["status"] == "full" and curated["stored_days"] == curated["expected_days"]
    start = dt.date.fromisoformat(row["start"])
    return {start + dt.timedelta(days=i) for i in range(curated["expected_days"])}


def _http(env):
    root, *_ = env
    with _serve(root / "http_home", root / "data") as base:
        body = httpx.get(f"{base}/data/coverage/stats", params={"start": START, "end": END, "symbol": "AAPL"}, timeout=60).json()
    return _days_of(body["symbols"][0])


@pytest.mark.parametrize("entry_point", [
    _retrieval_bars, _retrieval_training, _dq_summary, _io_manager_metadata, _trigger, _cli, _http,
], ids=lambda f: f.__name__.strip("_"))
def test_end_is_excluded_at_every_entry_point(env, entry_point):
    assert entry_point(env) == {DAY}


def test_an_empty_or_reversed_range_is_refused_everywhere(env):
    _, settings, defs, instance = env
    for call in (
        lambda: get_curated_bars("AAPL", START, START, settings=settings),
        lambda: get_data_quality_summary("curated_bars", END, START, settings=settings),
        lambda: trigger_backfill("curated_bars", ["AAPL"], START, START, instance=instance, settings=settings, defs=defs),
        lambda: coverage_stats(START, START, ["AAPL"], settings=settings),
    ):
        with pytest.raises(errors.InvalidDateRangeError, match=r"\[start, end\)"):
            call()


def test_sql_views_use_catalog_names_and_utc(env, monkeypatch):
    _, settings, defs, _ = env
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        warehouse = LakeWarehouse(base_path=str(settings.base_path), level2_path=str(settings.level2_path))
        views = set(warehouse.views())
        assert {"curated_bars", "bar_features", "bar_features_v1", "bar_features_v2", "l2_features", "labels", "labels_v1"} <= views
        assert "features_bar_features_v1" in views  # the older name is kept as an alias
        with warehouse.connect() as conn:
            first = conn.execute("SELECT min(ts) FROM curated_bars WHERE ts >= TIMESTAMPTZ '2024-11-26 00:00:00+00' AND ts < TIMESTAMPTZ '2024-11-27 00:00:00+00'").fetchone()[0]
            newest = conn.execute("SELECT DISTINCT feature_version FROM bar_features").fetchall()
        assert first.utcoffset() == dt.timedelta(0) and first.replace(tzinfo=None) == dt.datetime(2024, 11, 26, 14, 30)
        assert newest == [("v2",)]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
