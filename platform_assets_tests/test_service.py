"""The HTTP data service, started for real on a free loopback port and driven over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from urllib.parse import quote

import dagster as dg
import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from service_harness import REPO, free_port, lake_files, running_service, stored_state, wait_for_job

from platform_api.jobs import last_complete_day, refresh_window
from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.universe import seed_default_universe


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("service")) as running:
        yield running


@pytest.fixture
def client(service):
    base, _, _ = service
    with httpx.Client(base_url=base, timeout=120) as http:
        yield http


def _stored_state(service) -> tuple:
    _, home, data = service
    return stored_state(home, data)


def test_first_start_loads_the_default_universe_once(client, service):
    assert client.get("/data/symbols").json() == {"stocks": ["AAPL"], "crypto": ["BTC-USD"], "total": 2}
    _, home, _ = service
    with dg.DagsterInstance.from_config(str(home)) as instance:  # a universe that is not empty is never re-seeded
        assert seed_default_universe(instance, None) == []


def test_fresh_install_tracks_the_default_universe_and_its_refresh_has_work(tmp_path):
    with running_service(tmp_path, universe=None) as (base, _, _), httpx.Client(base_url=base, timeout=300) as http:
        symbols = http.get("/data/symbols").json()
        assert len(symbols["stocks"]) >= 495 and len(symbols["crypto"]) == 20 and symbols["total"] == len(symbols["stocks"]) + 20
        assert {"AAPL", "MSFT", "NVDA", "BRK.B"} <= set(symbols["stocks"]) and {"BTC-USD", "ETH-USD"} <= set(symbols["crypto"])
        started = http.post("/data/refresh?asset_type=crypto&days_back=1")  # the 20 pairs, one UTC day
        assert started.status_code == 200 and started.json()["symbols_count"] == 20, started.text
        assert wait_for_job(http, started.json()["status_url"])["state"] == "SUCCEEDED"
        assert http.get("/data/coverage").json()["coverage_stats"]["no_coverage"] == symbols["total"] - 20  # stocks untouched


def test_a_browser_frontend_on_an_allowed_origin_may_call_the_service(tmp_path, client):
    """Seed 003's frontend calls ``fetch('/data/coverage')``; served from another origin (a dev
    server on :3000) the browser needs CORS: ``API_CORS_ORIGINS`` names the origins allowed (none by
    default: same-origin only, as before)."""
    app_origin, other = "http://localhost:3000", "http://evil.example"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    assert "access-control-allow-origin" not in client.get("/data/symbols", headers={"Origin": app_origin}).headers  # default: none
    with running_service(tmp_path, API_CORS_ORIGINS=f"{app_origin}, http://127.0.0.1:5173") as (base, _, _), httpx.Client(base_url=base, timeout=60) as http:
        answer = http.get("/data/symbols", headers={"Origin": app_origin})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == app_origin
        allowed = http.options("/data/refresh", headers={"Origin": app_origin, **preflight})
        assert allowed.status_code == 200 and "POST" in allowed.headers["access-control-allow-methods"]
        refused = http.options("/data/refresh", headers={"Origin": other, **preflight})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        assert "access-control-allow-origin" not in http.get("/data/symbols", headers={"Origin": other}).headers


def test_add_list_remove_symbols(client):
    response = client.post("/data/symbols", json={"symbols": ["NVDA", "ETH-USD"]})  # our extra: several at once
    assert response.status_code == 200 and set(response.json()["added"]) == {"NVDA", "ETH-USD"}
    listed = client.get("/data/symbols").json()
    assert "NVDA" in listed["stocks"] and "ETH-USD" in listed["crypto"] and listed["total"] == 4
    assert client.get("/data/symbols", params={"asset_type": "crypto"}).json()["crypto"] == ["BTC-USD", "ETH-USD"]
    assert client.delete("/data/symbols/ETH-USD").json() == {"message": "Symbol ETH-USD removed successfully", "symbol": "ETH-USD"}
    assert "ETH-USD" not in client.get("/data/symbols").json()["crypto"]
    assert client.delete("/data/symbols/ETH-USD").status_code == 404
    again = client.post("/data/symbols", json={"symbol": "NVDA"}).json()
    assert again["already_tracked"] is True and again["message"] == "Symbol NVDA added successfully"
    client.delete("/data/symbols/NVDA")


def test_sync_refresh_materializes_partitions_and_shows_in_coverage(client, service):
    response = client.post("/data/refresh", json={"days_back": 5, "asset_type": "stocks", "async_mode": False})
    assert response.status_code == 200, response.text
    body = response.json()
    start, end = refresh_window(5, markets=(STOCKS,))  # the last 5 days ending at the newest complete session
    expected = sessions_in_range(STOCKS, start, end)
    assert end < dt.datetime.now(dt.timezone.utc).date() or last_complete_day(STOCKS, pd.Timestamp.now(tz="UTC")) == end
    assert body["status"] == "completed" and body["dagster_run_ids"] and body["job_state"] == "SUCCEEDED" and body["errors"] == []
    assert [(e["symbol"], e["success"], e["rows"]) for e in body["result"]["success"]] == [("AAPL", True, len(expected))]
    assert body["result"]["summary"] == {"total_symbols": 1, "successful": 1, "failed": 0, "success_rate": 100.0}
    coverage = client.get("/data/coverage", params={"symbol": "AAPL"}).json()
    curated = coverage["coverage"]["processed"]
    assert set(coverage["coverage"]) == {"raw", "processed", "cache", "features"}  # the guide's layers (+ ours)
    assert set(client.get("/data/coverage").json()["stocks"]["AAPL"]) == {"raw", "processed", "cache", "features"}
    # file_count: the files really stored (a run writes a month's dates of a symbol as one file)
    assert curated["latest"] == expected[-1].isoformat() and curated["file_count"] == lake_files(service[2], "curated_bars", "AAPL") >= 1
    assert curated["total_rows"] >= 210 * len(expected) and coverage["coverage"]["features"]["file_count"] == lake_files(service[2], "features", "AAPL") >= 1
    stats = client.get("/data/coverage/stats", params={"start": expected[0].isoformat(), "end": (expected[-1] + dt.timedelta(days=1)).isoformat(), "symbol": "AAPL"}).json()
    assert stats["symbols"][0]["layers"]["curated"]["status"] == "full" and stats["summary"]["curated"]["full"] == 1
    assert client.get("/data/coverage/stats", params={"start": "2024-13-01", "end": "2024-12-31"}).status_code == 400
    _, home, _ = service
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the runs are on the instance the UI shows
        runs = instance.get_run_records(dg.RunsFilter(tags={"platform/job_id": body["job_id"]}))
        assert {r.dagster_run.run_id for r in runs} == set(body["dagster_run_ids"])
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)


@pytest.mark.parametrize(
    ("start", "end"),
    [("1900-01-01", "1900-02-01"), ("1999-12-01", "2000-02-01"), ("2024-01-01", "2099-12-31"), ("0001-01-01", "9999-12-31")],
)
def test_coverage_stats_outside_the_calendar_is_a_400_not_a_500(client, start, end):
    response = client.get("/data/coverage/stats", params={"start": start, "end": end, "symbol": "AAPL"})
    assert response.status_code == 400 and "calendar" in response.json()["detail"]


def test_async_refresh_job_reaches_succeeded(client, service):
    response = client.post("/data/refresh", json={"days_back": 2, "asset_type": "crypto"})
    assert response.status_code == 200, response.text
    accepted = response.json()
    assert accepted["status"] == "started" and accepted["status_url"] == f"/data/jobs/{accepted['job_id']}"
    assert client.get(accepted["status_url"]).json()["start_ts"]  # while PENDING: the submission time, as the Python API says
    status = wait_for_job(client, accepted["status_url"])
    assert status["state"] == "SUCCEEDED", status
    assert status["dagster_run_ids"] and status["params"]["asset_type"] == "crypto"
    assert status["summary"]["materializations"]["crypto_curated_bars"] == 2
    crypto = client.get("/data/coverage", params={"symbol": "BTC-USD"}).json()["coverage"]["processed"]
    assert crypto["file_count"] == lake_files(service[2], "curated_bars", "BTC-USD") >= 1 and crypto["total_rows"] >= 2 * 1440


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
        ("post", "/data/symbols", {"symbols": []}, 400, "symbol"),
        ("post", "/data/symbols", {}, 400, "symbol: required"),
        ("post", "/data/symbols", {"symbol": "INVALID_SYMBOL"}, 400, "Invalid symbol format: INVALID_SYMBOL"),
        ("post", "/data/symbols", {"symbol": "NVDA", "symbols": ["MSFT"]}, 400, "either symbol"),
        ("post", "/data/symbols", {"symbol": 42}, 400, "symbol"),
        ("post", "/data/symbols?symbol=NVDA", {"symbol": "NVDA"}, 400, "both in the query string and in the JSON body"),
        ("post", "/data/symbols?symbol=../etc", None, 400, "Invalid symbol format: ../etc"),
        ("post", "/data/symbols?defaults=true", None, 400, "defaults"),
        ("post", "/data/refresh?days_back=abc", None, 400, "days_back"),
        ("post", "/data/refresh?days_back=0", None, 400, "days_back"),
        ("post", "/data/refresh?days_back=400", None, 400, "days_back"),
        ("post", "/data/refresh?async_mode=maybe", None, 400, "async_mode"),
        ("post", "/data/refresh?interval=1m", None, 400, "interval"),
        ("post", "/data/refresh?asset_type=bonds", None, 400, "asset_type"),
        ("post", "/data/refresh?colour=red", None, 400, "colour"),
        ("post", "/data/refresh?days_back=3&days_back=4", None, 400, "days_back"),
        ("post", "/data/refresh?days_back=3", {"days_back": 3}, 400, "both in the query string and in the JSON body"),
        ("post", "/data/refresh", [1, 2], 400, "request"),
        ("post", "/data/refresh/daily?asset_type=bonds", None, 400, "asset_type"),
        ("get", "/data/coverage?days_back=0", None, 400, "days_back"),
        ("post", "/data/symbols", {"symbols": ["MSFT"], "asset_type": "bond"}, 400, "asset_type"),
        ("delete", "/data/symbols/AAPL;DROP", None, 400, "AAPL;DROP"),
        ("delete", "/data/symbols/ZZZZ", None, 404, "ZZZZ"),
        ("get", "/data/coverage?symbol=ZZZZ", None, 404, "ZZZZ"),
        ("get", "/data/coverage?symbol=a/b", None, 400, "a/b"),
        ("get", "/data/jobs/refresh-000000000000", None, 404, "refresh-000000000000"),
        ("get", "/data/jobs/not-a-job", None, 404, "not-a-job"),
        ("get", "/data/symbols?foo=1", None, 400, "foo"),  # every endpoint: unknown or repeated query fields are refused
        ("get", "/data/coverage?symbol=AAPL&foo=1", None, 400, "foo"),
        ("get", "/data/coverage?symbol=AAPL&symbol=MSFT", None, 400, "symbol"),
        ("delete", "/data/symbols/AAPL?foo=1", None, 400, "foo"),
        ("get", "/data/jobs/refresh-000000000000?verbose=1", None, 400, "verbose"),
    ],
)
def test_bad_requests_answer_4xx_with_a_detail_and_change_nothing(client, service, method, path, payload, status, detail):
    before = _stored_state(service)
    response = client.request(method.upper(), path, json=payload) if payload is not None else client.request(method.upper(), path)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert _stored_state(service) == before


def test_a_boolean_days_back_is_a_400_not_one_day(client):
    response = client.post("/data/refresh", json={"days_back": True})
    assert response.status_code == 400 and "days_back" in response.json()["detail"] and "boolean" in response.json()["detail"]


def test_malformed_json_is_a_400(client):
    response = client.post("/data/refresh", content=b"{days_back: 3", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"]


def test_a_json_body_labelled_otherwise_is_read_as_json_and_other_bodies_are_a_clear_400(client, service):
    """``curl -X POST .../data/symbols -d '{"symbol": "NVDA"}'`` (curl labels -d bodies as a form),
    ``requests.post(url, data=json.dumps(...))``: the guide's JSON bodies, read as JSON."""
    _, home, data = service
    for label in ("application/x-www-form-urlencoded", "text/plain"):
        added = client.post("/data/symbols", content=b'{"symbol": "NVDA"}', headers={"content-type": label})
        assert added.status_code == 200 and added.json()["message"] == "Symbol NVDA added successfully", added.text
        assert client.delete("/data/symbols/NVDA").status_code == 200
    refused = client.post("/data/refresh", content=b'{"days_back": 0}', headers={"content-type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("days_back")  # validated like any JSON body
    before = stored_state(home, data)
    cases = [
        (b"symbol=NVDA", "application/x-www-form-urlencoded", "/data/symbols", "got Content-Type: application/x-www-form-urlencoded"),
        (b"<a/>", "application/xml", "/data/refresh", "got Content-Type: application/xml"),
        (b"[1, 2]", "application/json", "/data/refresh", "got a JSON array"),
        (b'"x"', "application/json", "/data/symbols", "got a JSON string"),
    ]
    for content, label, path, got in cases:
        response = client.post(path, content=content, headers={"content-type": label})
        detail = response.json()["detail"]
        assert response.status_code == 400 and detail.startswith("the request body must be a JSON object such as") and got in detail, detail
    malformed = client.post("/data/refresh", content=b'{"days_back": 7', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("malformed JSON body"), malformed.text
    assert stored_state(home, data) == before


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/data/refresh", "/data/refresh/{preset}", "/data/symbols", "/data/symbols/{symbol}", "/data/coverage", "/data/jobs/{job_id}"} <= set(paths)
    assert set(paths["/data/symbols"]) == {"get", "post"} and "delete" in paths["/data/symbols/{symbol}"]
    assert client.get("/docs").status_code == 200


def test_the_docs_page_works_offline_its_files_served_by_the_service(client):
    """FastAPI's default /docs loads Swagger UI from cdn.jsdelivr.net: blank behind a firewall. Ours
    names only this service's own files, and they are served (Swagger UI 5: renders OpenAPI 3.1)."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert not re.search(r"https?://", page.text), "the docs page must not load anything from another host"
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        url = re.search(rf'"([^"]*{re.escape(asset)})"', page.text).group(1)
        answer = client.get(url)
        assert answer.status_code == 200 and kind in answer.headers["content-type"] and len(answer.content) > 100_000, url
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert client.get("/docs/oauth2-redirect").status_code == 200


# ----------------------------------------------------------------------------- authentication (issue 13.3)
def _raw_get(base: str, path: str, header: str) -> bytes:
    """A GET with a header httpx refuses to send (trailing blanks): the first line of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{header}\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(4096)


def test_bearer_token_when_enabled(tmp_path):
    with running_service(tmp_path, PLATFORM_API_TOKEN="s3cret-token") as (base, _, _):
        assert httpx.get(f"{base}/data/symbols").status_code == 401
        assert httpx.get(f"{base}/data/symbols", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{base}/data/symbols", headers={"Authorization": "Bearer"}).status_code == 401
        assert _raw_get(base, "/data/symbols", "Authorization: Bearer ").startswith(b"HTTP/1.1 401")
        assert httpx.get(f"{base}/data/symbols", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert httpx.post(f"{base}/data/refresh?days_back=abc").status_code == 401  # auth before anything else
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/docs").status_code == 200 and httpx.get(f"{base}/docs/static/swagger-ui.css").status_code == 200  # the docs stay open
        assert httpx.get(f"{base}/docs/static/../../data/symbols").status_code in (401, 404)  # no way around the token through the docs' files
    assert b"s3cret-token" not in (tmp_path / "service.log").read_bytes()


@pytest.mark.parametrize("token", [None, "", "   ", "\t"])
def test_refusing_to_listen_beyond_loopback_without_a_non_empty_token(tmp_path, token):
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("PLATFORM_API_TOKEN", None)
    if token is not None:
        env["PLATFORM_API_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "platform_api.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "PLATFORM_API_TOKEN" in done.stderr and "refusing to listen on 0.0.0.0" in done.stderr


def test_an_empty_token_on_loopback_does_not_switch_auth_on(tmp_path):
    """The guide: no authentication required (on loopback). An empty/whitespace token is no token:
    it never becomes a password that an empty bearer matches."""
    with running_service(tmp_path, PLATFORM_API_TOKEN="  ") as (base, _, _):
        assert httpx.get(f"{base}/data/symbols").status_code == 200
        assert _raw_get(base, "/data/symbols", "Authorization: Bearer   ").startswith(b"HTTP/1.1 200")


def test_auth_rules_unit():
    from platform_api.service.auth import AuthError, check_bind, check_request, effective_token
    from resources.settings import load_settings
    from resources.validation import InvalidInputError

    blank = load_settings(PLATFORM_API_TOKEN=" ")
    secret = load_settings(PLATFORM_API_TOKEN="tok")
    assert effective_token(blank) is None and effective_token(secret) == "tok"
    with pytest.raises(InvalidInputError, match="PLATFORM_API_TOKEN"):
        check_bind("0.0.0.0", blank)
    check_bind("0.0.0.0", secret)
    check_bind("::1", blank)
    check_request(blank, None, "127.0.0.1")
    with pytest.raises(AuthError) as refused:  # no token: only loopback clients
        check_request(blank, "Bearer ", "10.1.2.3")
    assert refused.value.status == 403
    for header in (None, "", "Bearer", "Bearer ", "Basic tok", "Bearer tok2"):
        with pytest.raises(AuthError):
            check_request(secret, header, "127.0.0.1")
    check_request(secret, "Bearer tok", "10.1.2.3")


# ----------------------------------------------------------------------------- throttling
def test_refresh_requests_are_rate_limited_and_parallel_refreshes_queue(tmp_path):
    with running_service(tmp_path, API_REFRESH_RATE_LIMIT="3", API_REFRESH_RATE_WINDOW_SECONDS="300", API_MAX_CONCURRENT_REFRESHES="1") as (base, _, _):
        with httpx.Client(base_url=base, timeout=120) as http:
            first = http.post("/data/refresh?days_back=3&asset_type=crypto")
            assert first.status_code == 200, first.text
            queued = http.post("/data/refresh/daily")  # the first job is still downloading: this one waits for the slot
            assert queued.status_code == 200 and queued.json()["status"] == "started", queued.text
            assert http.get(queued.json()["status_url"]).json()["state"] == "PENDING"
            done = [wait_for_job(http, r.json()["status_url"]) for r in (first, queued)]
            assert [d["state"] for d in done] == ["SUCCEEDED", "SUCCEEDED"], done
            assert done[1]["start_ts"] >= done[0]["end_ts"]  # one at a time: never two downloading at once
            assert http.post("/data/refresh", json={"days_back": 1, "asset_type": "crypto", "async_mode": False}).status_code == 200
            limited = http.post("/data/refresh", json={"days_back": 1, "asset_type": "crypto", "async_mode": False})
            assert limited.status_code == 429 and limited.json()["detail"].startswith("Rate limit exceeded")
            assert 1 <= int(limited.headers["Retry-After"]) <= 300
            assert http.post("/data/refresh", json={"days_back": 0}).status_code == 400  # invalid input is still a 400
            assert http.get("/data/symbols").status_code == 200  # only refreshes are throttled


def test_the_guides_refresh_examples_back_to_back_are_all_accepted_with_the_default_limits(tmp_path):
    """The guide has 11 refresh requests (3 JSON bodies, 2 curl lines, 3 cron presets, the frontend,
    external-tool and async-handling snippets); sent back to back with the default throttling, each
    gets its answer (no 429), and never more than API_MAX_CONCURRENT_REFRESHES (5) run at once."""
    with running_service(tmp_path, universe="crypto: [BTC-USD]\n", API_REFRESH_RATE_LIMIT="") as (base, _, _):
        with httpx.Client(base_url=base, timeout=300) as http:
            json_header = {"Content-Type": "application/json"}
            sent = [
                http.post("/data/refresh", json={"days_back": 30, "asset_type": "all", "async_mode": True}, headers=json_header),
                http.post("/data/refresh", json={"days_back": 7, "asset_type": "crypto", "async_mode": False}, headers=json_header),
                http.post("/data/refresh", json={"asset_type": "crypto", "interval": "1h"}, headers=json_header),
                http.post("/data/refresh?days_back=30"),
                http.post("/data/refresh?asset_type=crypto&async_mode=false"),
                http.post("/data/refresh/daily"),
                http.post("/data/refresh/weekly"),
                http.post("/data/refresh/monthly"),
                http.post("/data/refresh", json={"days_back": 30}, headers=json_header),
                http.post("/data/refresh", json={"days_back": 90, "async_mode": False, "asset_type": "crypto"}),
                http.post("/data/refresh", params={"async_mode": True}),
            ]
            assert [r.status_code for r in sent] == [200] * 11, [r.text for r in sent if r.status_code != 200]
            assert all(r.json()["status"] in ("started", "completed") for r in sent)
            urls = [r.json().get("status_url") or f"/data/jobs/{r.json()['job_id']}" for r in sent]
            done = [wait_for_job(http, url, timeout_s=600) for url in urls]
    assert [d["state"] for d in done] == ["SUCCEEDED"] * 11, [d["summary"]["errors"] for d in done]
    spans = [(pd.Timestamp(d["start_ts"]), pd.Timestamp(d["end_ts"])) for d in done]
    most_at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most_at_once <= 5


def test_rate_limiter_sliding_window():
    from platform_api.service.limits import RateLimiter, Throttled

    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    limiter.hit("a")
    limiter.hit("a")
    limiter.hit("b")  # per client
    with pytest.raises(Throttled) as refused:
        limiter.hit("a")
    assert refused.value.retry_after == 60
    now[0] = 30.0
    with pytest.raises(Throttled) as refused:
        limiter.hit("a")
    assert refused.value.retry_after == 30
    now[0] = 60.0
    limiter.hit("a")  # the first two left the window
    RateLimiter(0, 60).hit("a")  # 0 = off


# ----------------------------------------------------------------------------- vendor failures: the guide's 500
@pytest.fixture
def failing_vendor(tmp_path):
    """A Databento gateway that refuses the service's API key (the vendor fails every request)."""
    from databento_gateway import DatabentoGateway

    gateway = DatabentoGateway(provider=lambda request: b"", keys={"db-the-right-key"}, folder=tmp_path)
    yield gateway
    gateway.close()


def test_failing_vendor_is_the_guides_500_and_a_failed_job(tmp_path, failing_vendor):
    env = {
        "INGESTION_SOURCES": "databento", "DATABENTO_GATEWAY": failing_vendor.url, "DATABENTO_API_KEY": "db-a-wrong-key",
        "REQUESTS_CA_BUNDLE": str(failing_vendor.cert), "SSL_CERT_FILE": str(failing_vendor.cert),
    }
    with running_service(tmp_path) as (base, _, _), httpx.Client(base_url=base, timeout=120) as http:  # bars stored by an earlier refresh
        earlier = http.post("/data/refresh", json={"days_back": 7, "asset_type": "stocks", "async_mode": False})
        assert earlier.status_code == 200 and earlier.json()["result"]["summary"]["success_rate"] == 100.0, earlier.text
    with running_service(tmp_path, **env) as (base, _, _), httpx.Client(base_url=base, timeout=120) as http:
        response = http.post("/data/refresh", json={"days_back": 7, "asset_type": "stocks", "async_mode": False})
        assert response.status_code == 500, response.text  # the stored bars are not this refresh's success
        detail = response.json()["detail"]
        assert set(response.json()) == {"detail"} and detail.startswith("Data refresh failed: ") and "raw_bars_databento" in detail
        assert "Error occurred while executing" not in detail  # the vendor's error itself, not Dagster's wrapper
        assert "db-a-wrong-key" not in detail
        assert failing_vendor.get_range_requests()  # the real client really called the vendor
        started = http.post("/data/refresh?asset_type=stocks&days_back=7").json()  # async: started, then FAILED
        status = wait_for_job(http, started["status_url"])
        assert status["state"] == "FAILED" and status["summary"]["errors"]


# ----------------------------------------------------------------------------- fuzz (issue 13.5: never a 500)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
REFRESH_BODIES = st.dictionaries(st.sampled_from(["days_back", "interval", "asset_type", "async_mode", "extra"]), JSON_VALUES, max_size=4) | JSON_VALUES
SYMBOL_BODIES = st.dictionaries(st.sampled_from(["symbol", "symbols", "asset_type", "defaults", "other"]), JSON_VALUES, max_size=3) | JSON_VALUES
QUERY_VALUES = st.text(max_size=10) | st.sampled_from(["0", "-1", "366", "1e3", "true", "false", "1d", "1h", "stocks", "crypto", "all", "auto", ""])
REFRESH_QUERIES = st.dictionaries(st.sampled_from(["days_back", "interval", "asset_type", "async_mode", "x"]), QUERY_VALUES, max_size=4)
TEXT_DATES = st.text(max_size=12) | st.dates().map(str) | st.sampled_from(["1900-01-01", "2099-12-31", "0001-01-01", "2024-02-30"])


def _valid(model, body) -> bool:
    try:
        model.model_validate(body)
        return True
    except Exception:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    refresh=REFRESH_BODIES, query=REFRESH_QUERIES, symbols=SYMBOL_BODIES, start=TEXT_DATES, end=TEXT_DATES,
    path_symbol=st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and s not in {".", ".."}),
)
def test_fuzz_malformed_requests_get_4xx_never_500_and_change_nothing(client, service, refresh, query, symbols, start, end, path_symbol):
    from platform_api.service.models import AddSymbolRequest, PresetRefreshRequest, RefreshRequest

    assume(refresh is not None and not _valid(RefreshRequest, refresh) and not _valid(PresetRefreshRequest, refresh))
    assume(not _valid(RefreshRequest, query) and not _valid(PresetRefreshRequest, query))
    assume(not (_valid(AddSymbolRequest, symbols) and isinstance(symbols, dict) and (symbols.get("symbol") or symbols.get("symbols") or symbols.get("defaults"))))
    tracked = set(_stored_state(service)[0])
    assume(path_symbol.strip().upper() not in tracked)
    before = _stored_state(service)
    responses = [
        client.post("/data/refresh", content=json.dumps(refresh)),
        client.post("/data/refresh", params=query),
        client.post("/data/refresh/daily", content=json.dumps(refresh)),
        client.post("/data/refresh/weekly", params=query),
        client.post("/data/symbols", content=json.dumps(symbols)),
        client.post("/data/symbols", params={"symbol": path_symbol, "asset_type": "bond"}),
        client.delete(f"/data/symbols/{quote(path_symbol, safe='')}"),
        client.get("/data/coverage", params={"symbol": path_symbol}),
        client.get("/data/coverage/stats", params={"start": start, "end": end, "symbol": "AAPL"}),
        client.get(f"/data/jobs/{quote(path_symbol, safe='')}"),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500 or (response.request.method == "GET" and response.status_code == 200), (response.request.url, response.status_code, response.text)
    assert _stored_state(service) == before
