"""The HTTP data service, started for real on a free loopback port and driven over HTTP."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from platform_assets.calendars import STOCKS, sessions_in_range

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _service(tmp: Path, token: str | None = None):
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATA_PATH_OVERRIDE": str(tmp / "data"), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    env.pop("PLATFORM_API_TOKEN", None)
    if token:
        env["PLATFORM_API_TOKEN"] = token
    log = open(tmp / "service.log", "wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "platform_api.cli", "serve", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("service did not start:\n" + (tmp / "service.log").read_text())
            time.sleep(0.2)
        yield base, home, tmp / "data"
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with _service(tmp_path_factory.mktemp("service")) as running:
        yield running


@pytest.fixture
def client(service):
    base, _, _ = service
    with httpx.Client(base_url=base, timeout=120) as http:
        yield http


def _stored_state(service) -> tuple:
    """Everything a request could change: the tracked universe, the lake's files, the job records."""
    _, home, data = service
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) if data.exists() else []
    jobs = sorted(p.name for p in (home / "platform_jobs").glob("*.json")) if (home / "platform_jobs").exists() else []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        symbols = sorted(instance.get_dynamic_partitions("symbols"))
    return symbols, files, jobs


def test_add_list_remove_symbols(client):
    response = client.post("/data/symbols", json={"symbols": ["NVDA", "ETH-USD"]})
    assert response.status_code == 201 and set(response.json()["added"]) == {"NVDA", "ETH-USD"}
    listed = {row["symbol"]: row for row in client.get("/data/symbols").json()}
    assert listed["NVDA"]["asset_type"] == "stock" and listed["NVDA"]["market"] == "XNYS"
    assert listed["ETH-USD"]["asset_type"] == "crypto" and listed["ETH-USD"]["market"] == "24/7"
    assert [r["symbol"] for r in client.get("/data/symbols", params={"asset_type": "crypto"}).json()] == ["ETH-USD"]
    assert client.delete("/data/symbols/ETH-USD").json() == {"removed": "ETH-USD", "data_kept": True}
    assert "ETH-USD" not in {r["symbol"] for r in client.get("/data/symbols").json()}
    assert client.delete("/data/symbols/ETH-USD").status_code == 404
    client.delete("/data/symbols/NVDA")


def test_sync_refresh_materializes_partitions_and_shows_in_coverage(client, service):
    client.post("/data/symbols", json={"symbols": ["AAPL"]})
    response = client.post("/data/refresh", json={"days_back": 5, "asset_type": "stocks", "async_mode": False})
    assert response.status_code == 200, response.text
    body = response.json()
    today = dt.datetime.now(dt.timezone.utc).date()
    expected = sessions_in_range(STOCKS, today - dt.timedelta(days=4), today)
    assert body["state"] == "SUCCEEDED" and body["dagster_run_ids"]
    assert body["results"] == [{"symbol": "AAPL", "status": "success", "expected_days": len(expected), "stored_days": len(expected), "error": None}]
    assert body["summary"] == {"total": 1, "success": 1, "failed": 0, "success_rate": 1.0}
    coverage = client.get("/data/coverage", params={"symbol": "AAPL"}).json()
    curated = coverage[0]["layers"]["curated"]
    assert curated["latest"] == expected[-1].isoformat() and curated["file_count"] == len(expected)
    assert curated["total_rows"] >= 210 * len(expected) and coverage[0]["layers"]["features"]["file_count"] >= len(expected)
    stats = client.get("/data/coverage/stats", params={"start": expected[0].isoformat(), "end": (expected[-1] + dt.timedelta(days=1)).isoformat(), "symbol": "AAPL"}).json()
    assert stats["symbols"][0]["layers"]["curated"]["status"] == "full" and stats["summary"]["curated"]["full"] == 1
    assert client.get("/data/coverage/stats", params={"start": "2024-13-01", "end": "2024-12-31"}).status_code == 400
    _, home, _ = service
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the runs are on the instance the UI shows
        runs = instance.get_run_records(dg.RunsFilter(tags={"platform/job_id": body["job_id"]}))
        assert {r.dagster_run.run_id for r in runs} == set(body["dagster_run_ids"])
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def test_async_refresh_job_reaches_succeeded(client):
    client.post("/data/symbols", json={"symbols": ["BTC-USD"]})
    response = client.post("/data/refresh", json={"days_back": 2, "asset_type": "crypto"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/data/jobs/{accepted['job_id']}" and accepted["state"] in {"PENDING", "RUNNING"}
    deadline = time.monotonic() + 120
    while True:
        status = client.get(accepted["status_url"]).json()
        if status["state"] in {"SUCCEEDED", "FAILED"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["state"] == "SUCCEEDED", status
    assert status["dagster_run_ids"] and status["params"]["asset_type"] == "crypto"
    assert status["summary"]["materializations"]["crypto_curated_bars"] == 2
    crypto = client.get("/data/coverage", params={"symbol": "BTC-USD"}).json()[0]["layers"]["curated"]
    assert crypto["file_count"] == 2


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "detail"),
    [
        ("post", "/data/refresh", {"days_back": 0}, 400, "days_back"),
        ("post", "/data/refresh", {"days_back": 366}, 400, "days_back"),
        ("post", "/data/refresh", {"days_back": "thirty"}, 400, "days_back"),
        ("post", "/data/refresh", {"interval": "5m"}, 400, "interval"),
        ("post", "/data/refresh", {"asset_type": "bonds"}, 400, "asset_type"),
        ("post", "/data/refresh", {"days_back": 3, "colour": "red"}, 400, "colour"),
        ("post", "/data/refresh/weekly", {"asset_type": "bonds"}, 400, "asset_type"),
        ("post", "/data/refresh/yearly", None, 404, "yearly"),
        ("get", "/data/symbols?asset_type=bonds", None, 400, "asset_type"),
        ("post", "/data/symbols", {"symbols": ["../etc"]}, 400, "../etc"),
        ("post", "/data/symbols", {"symbols": ["AAPL;DROP"]}, 400, "AAPL;DROP"),
        ("post", "/data/symbols", {"symbols": []}, 400, "symbols"),
        ("post", "/data/symbols", {"symbols": ["MSFT"], "asset_type": "bond"}, 400, "asset_type"),
        ("delete", "/data/symbols/AAPL;DROP", None, 400, "AAPL;DROP"),
        ("delete", "/data/symbols/ZZZZ", None, 404, "ZZZZ"),
        ("get", "/data/coverage?symbol=ZZZZ", None, 404, "ZZZZ"),
        ("get", "/data/coverage?symbol=a/b", None, 400, "a/b"),
        ("get", "/data/jobs/refresh-000000000000", None, 404, "refresh-000000000000"),
        ("get", "/data/jobs/not-a-job", None, 404, "not-a-job"),
    ],
)
def test_bad_requests_answer_4xx_with_a_detail_and_change_nothing(client, service, method, path, payload, status, detail):
    before = _stored_state(service)
    response = client.request(method.upper(), path, json=payload) if payload is not None else client.request(method.upper(), path)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert _stored_state(service) == before


def test_malformed_json_is_a_400(client):
    response = client.post("/data/refresh", content=b"{days_back: 3", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"]


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/data/refresh", "/data/refresh/{preset}", "/data/symbols", "/data/symbols/{symbol}", "/data/coverage", "/data/jobs/{job_id}"} <= set(paths)
    assert set(paths["/data/symbols"]) == {"get", "post"} and "delete" in paths["/data/symbols/{symbol}"]
    assert client.get("/docs").status_code == 200


def test_bearer_token_when_enabled(tmp_path):
    with _service(tmp_path, token="s3cret-token") as (base, _, _):
        assert httpx.get(f"{base}/data/symbols").status_code == 401
        assert httpx.get(f"{base}/data/symbols", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{base}/data/symbols", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200
    assert b"s3cret-token" not in (tmp_path / "service.log").read_bytes()


def test_refusing_to_listen_beyond_loopback_without_a_token(tmp_path):
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("PLATFORM_API_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "platform_api.cli", "serve", "--host", "0.0.0.0", "--port", str(_free_port())], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "PLATFORM_API_TOKEN" in done.stderr


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
REFRESH_BODIES = st.dictionaries(st.sampled_from(["days_back", "interval", "asset_type", "async_mode", "extra"]), JSON_VALUES, max_size=4) | JSON_VALUES
SYMBOL_BODIES = st.dictionaries(st.sampled_from(["symbols", "asset_type", "defaults", "other"]), JSON_VALUES, max_size=3) | JSON_VALUES


def _valid(model, body) -> bool:
    try:
        model.model_validate(body)
        return True
    except Exception:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(refresh=REFRESH_BODIES, symbols=SYMBOL_BODIES, path_symbol=st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and s not in {".", ".."}))
def test_fuzz_malformed_requests_get_4xx_never_500_and_change_nothing(client, service, refresh, symbols, path_symbol):
    from platform_api.service.models import AddSymbolsRequest, PresetRefreshRequest, RefreshRequest

    assume(refresh is not None and not _valid(RefreshRequest, refresh) and not _valid(PresetRefreshRequest, refresh))
    assume(not (_valid(AddSymbolsRequest, symbols) and isinstance(symbols, dict) and (symbols.get("symbols") or symbols.get("defaults"))))
    tracked = set(_stored_state(service)[0])
    assume(path_symbol.strip().upper() not in tracked)
    before = _stored_state(service)
    responses = [
        client.post("/data/refresh", content=json.dumps(refresh)),
        client.post("/data/refresh/daily", content=json.dumps(refresh)),
        client.post("/data/symbols", content=json.dumps(symbols)),
        client.delete(f"/data/symbols/{quote(path_symbol, safe='')}"),
        client.get("/data/coverage", params={"symbol": path_symbol}),
        client.get(f"/data/jobs/{quote(path_symbol, safe='')}"),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500 or (response.request.method == "GET" and response.status_code == 200), (response.request.url, response.status_code, response.text)
    assert _stored_state(service) == before
