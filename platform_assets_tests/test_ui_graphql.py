"""The UI's own path: `dagster dev` (webserver + daemon) and the GraphQL calls the UI makes.

A partition backfill launched with ``launchPartitionBackfill`` (what the UI's backfill dialog sends)
of the derived assets over dates without raw data must leave those dates failed, never green; the
same backfill with the raw assets included materializes them; the per-symbol view lists every
tracked symbol, a new one as missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATES = ["2024-11-26", "2024-11-27"]
DERIVED = ["curated_bars", "aligned_bars", "bar_features", "l2_features", "labels"]

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } } }"""
STATUS = """query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions unmaterializedPartitions }
      }
    }
  }
}"""


CHECK_STATUS = """query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses { __typename ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } }
          }
        }
      }
    }
  }
}"""


def _check_date_status(port: int, asset: str, check: str = "symbols_complete") -> dict[str, str]:
    """status per date key of a partitioned check, as its Partitions tab draws it."""
    checks = _graphql(port, CHECK_STATUS, {"key": {"path": [asset]}})["assetNodeOrError"]["assetChecksOrError"]["checks"]
    ranges = next(c for c in checks if c["name"] == check)["partitionStatuses"]["ranges"]
    return {day: rng["status"] for rng in ranges for day in DATES if rng["startKey"] <= day <= rng["endKey"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


def _wait_backfill(port: int, backfill_id: str, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _graphql(port, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "CANCELING"):
            return status
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} still running after {timeout_s}s")


def _date_status(port: int, asset: str) -> dict[str, str]:
    """status per date key, from the time-partition ranges the UI draws."""
    statuses = _graphql(port, STATUS, {"key": {"path": [asset]}})["assetNodeOrError"]["assetPartitionStatuses"]
    out = {}
    for rng in statuses["ranges"]:
        for day in DATES:
            if rng["startKey"] <= day <= rng["endKey"]:
                out[day] = rng["status"]
    return out


def _launch(port: int, assets: list[str]) -> str:
    params = {"partitionNames": DATES, "assetSelection": [{"path": [a]} for a in assets], "fromFailure": False}
    launched = _graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


@pytest.fixture
def dagster_dev(tmp_path):
    if shutil.which("dagster", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("dagster CLI not installed in the test environment")
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATA_PATH_OVERRIDE": str(data), "LAKE_FSYNC": "false", "PYTHONPATH": str(REPO)}
    subprocess.run(
        [str(Path(sys.executable).parent / "mdp"), "symbols", "add", "AAPL", "MSFT"], env=env, cwd=REPO, check=True, capture_output=True
    )
    port = _free_port()
    log = open(tmp_path / "dagster_dev.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), signal.signal(signal.SIGTERM, signal.SIG_DFL), os.setsid()),
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dagster dev did not start:\n{(tmp_path / 'dagster_dev.log').read_text()[-3000:]}")
                time.sleep(1)
        yield port, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_ui_backfill_without_raw_fails_dates_then_fills_them(dagster_dev):
    port, env = dagster_dev
    assert _wait_backfill(port, _launch(port, DERIVED)) in ("COMPLETED_FAILED", "FAILED", "COMPLETED")
    for asset in DERIVED:
        status = _date_status(port, asset)
        assert "MATERIALIZED" not in status.values(), (asset, status)
    assert set(_date_status(port, "curated_bars").values()) == {"FAILED"}
    assert _check_date_status(port, "curated_bars") == {day: "FAILED" for day in DATES}  # red on each date, not "Missing"

    assert _wait_backfill(port, _launch(port, ["raw_bars_sim", "l2_snapshots_sim", *DERIVED])) in ("COMPLETED_SUCCESS", "COMPLETED")
    for asset in DERIVED:
        assert _date_status(port, asset) == {day: "MATERIALIZED" for day in DATES}, asset
        assert _check_date_status(port, asset) == {day: "SUCCEEDED" for day in DATES}, asset  # the check's Partitions tab

    # the per-symbol view: every tracked symbol is a partition, none filled yet
    per_symbol = _graphql(port, STATUS, {"key": {"path": ["symbol_history"]}})["assetNodeOrError"]["assetPartitionStatuses"]
    assert set(per_symbol["unmaterializedPartitions"]) | set(per_symbol["materializedPartitions"]) | set(per_symbol["failedPartitions"]) >= {"AAPL", "MSFT"}
