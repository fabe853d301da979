"""The HTTP data API guide (seed 003), example by example, against the real service over loopback.

One test per documented example request (JSON bodies and the curl query strings) checking the
documented response fields; the service runs with a two-symbol universe (AAPL, BTC-USD) seeded
on its first start. Jobs started in the background are waited for, so they never overlap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re

import httpx
import pytest
import requests
from service_harness import running_service, wait_for_job

from platform_api.jobs import refresh_window
from platform_api.retrieval import get_curated_bars
from platform_assets.calendars import CRYPTO, STOCKS, session_minutes, sessions_in_range
from platform_assets.partitions import last_partition_date
from resources.settings import load_settings

LAYER_FIELDS = {"earliest", "latest", "file_count", "total_rows"}
STARTED_FIELDS = {"message", "estimated_duration", "symbols_count", "status"}
RESULT_ENTRY_FIELDS = {"symbol", "success", "rows", "date_range", "latest_price"}
SUMMARY_FIELDS = {"total_symbols", "successful", "failed", "success_rate"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("contract")) as running:
        yield running


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service[0], timeout=300) as http:
        yield http


def _window(days_back: int, *markets) -> tuple[dt.date, dt.date]:
    """A refresh's window: the last ``days_back`` days ending at the newest day complete in every
    market refreshed (``jobs.refresh_window``; stocks unless told)."""
    return refresh_window(days_back, markets=markets or (STOCKS,))


def _sessions(market, start: dt.date, end: dt.date) -> list[dt.date]:
    """The sessions a refresh of [start, end] covers: up to the newest partition (between midnight UTC
    and midnight New York, today's session has none yet)."""
    return sessions_in_range(market, start, min(end, last_partition_date(market)))


def _assert_started(response: httpx.Response, symbols_count: int) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert STARTED_FIELDS <= set(body), body
    assert body["message"] == "Data refresh started in background" and body["status"] == "started"
    assert re.fullmatch(r"\d+ seconds", body["estimated_duration"]) and body["symbols_count"] == symbols_count
    assert body["status_url"] == f"/data/jobs/{body['job_id']}"  # our extras
    return body


def _assert_completed(response: httpx.Response, symbols: list[str], days_back: int) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Data refresh completed" and body["status"] == "completed"
    result = body["result"]
    assert set(result) == {"success", "failed", "summary"} and set(result["summary"]) == SUMMARY_FIELDS
    assert result["failed"] == [] and [e["symbol"] for e in result["success"]] == symbols
    assert result["summary"] == {"total_symbols": len(symbols), "successful": len(symbols), "failed": 0, "success_rate": 100.0}
    start, end = _window(days_back)
    for entry in result["success"]:
        assert RESULT_ENTRY_FIELDS <= set(entry) and entry["success"] is True
        market = CRYPTO if entry["symbol"].endswith("-USD") else STOCKS
        sessions = _sessions(market, start, end)
        assert entry["date_range"] == f"{sessions[0]} to {sessions[-1]}"
    return body


@contextlib.contextmanager
def _tracking_only(client: httpx.Client, keep: list[str]):
    """Test set-up, not part of the examples: track only ``keep`` for the duration (requests for
    "all" symbols then do less work), then track the others again."""
    listed = client.get("/data/symbols").json()
    others = [s for s in listed["stocks"] + listed["crypto"] if s not in keep]
    for symbol in others:
        assert client.delete(f"/data/symbols/{symbol}").status_code == 200
    try:
        yield
    finally:
        for symbol in others:
            assert client.post("/data/symbols", json={"symbol": symbol}).status_code == 200


def _settings(service):
    return load_settings(DATA_PATH_OVERRIDE=str(service[2]), LAKE_FSYNC="false")


# ----------------------------------------------------------------------------- symbols
def test_get_all_symbols(client):
    body = client.get("/data/symbols").json()
    assert body == {"stocks": ["AAPL"], "crypto": ["BTC-USD"], "total": 2}


def test_get_only_stocks_and_only_crypto(client):
    assert client.get("/data/symbols?asset_type=stocks").json() == {"stocks": ["AAPL"], "crypto": [], "total": 1}
    assert client.get("/data/symbols?asset_type=crypto").json() == {"stocks": [], "crypto": ["BTC-USD"], "total": 1}


@pytest.mark.parametrize(
    ("payload", "asset_type"),
    [({"symbol": "NVDA"}, "stock"), ({"symbol": "SOL-USD", "asset_type": "crypto"}, "crypto"), ({"symbol": "TSLA", "asset_type": "stock"}, "stock")],
)
def test_add_symbol_examples_then_remove(client, payload, asset_type):
    symbol = payload["symbol"]
    response = client.post("/data/symbols", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("message", "symbol", "asset_type")} == {"message": f"Symbol {symbol} added successfully", "symbol": symbol, "asset_type": asset_type}
    listed = client.get("/data/symbols").json()
    assert symbol in listed["crypto" if asset_type == "crypto" else "stocks"] and listed["total"] == 3
    removed = client.delete(f"/data/symbols/{symbol}")
    assert removed.status_code == 200 and removed.json() == {"message": f"Symbol {symbol} removed successfully", "symbol": symbol}
    assert symbol not in str(client.get("/data/symbols").json())


def test_symbol_management_workflow_with_curl_query_strings(client):
    assert client.get("/data/symbols").json()["total"] == 2  # curl "http://localhost:8000/data/symbols"
    added = client.post("/data/symbols?symbol=NVDA")  # curl -X POST ".../data/symbols?symbol=NVDA"
    assert added.status_code == 200 and added.json()["message"] == "Symbol NVDA added successfully" and added.json()["asset_type"] == "stock"
    assert client.get("/data/symbols?asset_type=stocks").json()["stocks"] == ["AAPL", "NVDA"]
    assert client.delete("/data/symbols/NVDA").json() == {"message": "Symbol NVDA removed successfully", "symbol": "NVDA"}
    assert client.get("/data/symbols?asset_type=stocks").json() == {"stocks": ["AAPL"], "crypto": [], "total": 1}


def test_invalid_symbol_is_the_guides_400(client):
    response = client.post("/data/symbols", json={"symbol": "INVALID_SYMBOL"})
    assert response.status_code == 400 and response.json() == {"detail": "Invalid symbol format: INVALID_SYMBOL"}
    assert client.post("/data/symbols?symbol=INVALID_SYMBOL").json() == {"detail": "Invalid symbol format: INVALID_SYMBOL"}
    assert client.post("/data/symbols", json={"symbol": "SOL-USD", "asset_type": "stock"}).json() == {"detail": "Invalid symbol format: SOL-USD"}


# ----------------------------------------------------------------------------- refresh
def test_refresh_only_stocks_last_7_days_synchronous(client, service):
    response = client.post("/data/refresh", json={"days_back": 7, "asset_type": "stocks", "async_mode": False})
    body = _assert_completed(response, ["AAPL"], 7)
    entry = body["result"]["success"][0]
    start, end = _window(7)
    sessions = _sessions(STOCKS, start, end)
    assert entry["rows"] == len(sessions)  # interval 1d: one bar per session
    minute_bars = get_curated_bars(["AAPL"], start, end + dt.timedelta(days=1), settings=_settings(service))
    assert entry["latest_price"] == pytest.approx(float(minute_bars["close"].iloc[-1]))


def test_refresh_all_symbols_30_days_background(client):
    response = client.post("/data/refresh", json={"days_back": 30, "asset_type": "all", "async_mode": True})
    started = _assert_started(response, 2)
    status = wait_for_job(client, started["status_url"])
    assert status["state"] == "SUCCEEDED" and status["params"]["days_back"] == 30, status


def test_refresh_crypto_only_hourly_data(client, service):
    started = _assert_started(client.post("/data/refresh", json={"asset_type": "crypto", "interval": "1h"}), 1)
    status = wait_for_job(client, started["status_url"])
    assert status["state"] == "SUCCEEDED" and status["params"]["interval"] == "1h" and status["params"]["asset_type"] == "crypto"
    hourly = client.post("/data/refresh", json={"asset_type": "crypto", "interval": "1h", "days_back": 2, "async_mode": False}).json()
    daily = client.post("/data/refresh", json={"asset_type": "crypto", "interval": "1d", "days_back": 2, "async_mode": False}).json()
    assert hourly["result"]["success"][0]["rows"] == 48 and daily["result"]["success"][0]["rows"] == 2  # 24 hourly bars per UTC day
    start, end = _window(2, CRYPTO)
    bars = get_curated_bars(["BTC-USD"], start, end + dt.timedelta(days=1), frequency="1h", settings=_settings(service))
    assert len(bars) == 48 and hourly["result"]["success"][0]["latest_price"] == pytest.approx(float(bars["close"].iloc[-1]))


def test_hourly_stock_bars_follow_the_session(client):
    body = client.post("/data/refresh", json={"asset_type": "stocks", "interval": "1h", "days_back": 7, "async_mode": False}).json()
    start, end = _window(7)
    expected = sum(math.ceil(len(session_minutes(STOCKS, d)) / 60) for d in _sessions(STOCKS, start, end))
    assert body["result"]["success"][0]["rows"] == expected  # 09:30-10:30 ... 15:30-16:00: 7 per regular session


def test_curl_refresh_all_data_last_30_days(client):
    with _tracking_only(client, ["AAPL"]):
        response = client.post("/data/refresh?days_back=30")  # curl -X POST ".../data/refresh?days_back=30": no body
        started = _assert_started(response, 1)
        status = wait_for_job(client, started["status_url"])
    assert status["state"] == "SUCCEEDED" and status["params"]["days_back"] == 30 and status["params"]["asset_type"] == "all"


def test_curl_refresh_only_stocks_synchronously(client):
    response = client.post("/data/refresh?asset_type=stocks&async_mode=false")
    _assert_completed(response, ["AAPL"], 30)


# ----------------------------------------------------------------------------- coverage
def test_coverage_summary_for_all_symbols(client):
    body = client.get("/data/coverage").json()  # after the 30-day refreshes above
    assert {"stocks", "crypto", "total_symbols", "coverage_stats"} <= set(body)
    assert set(body["stocks"]) == {"AAPL"} and set(body["crypto"]) == {"BTC-USD"} and body["total_symbols"] == 2
    for layers in (body["stocks"]["AAPL"], body["crypto"]["BTC-USD"]):
        assert {"raw", "processed"} <= set(layers) and all(set(layers[k]) == LAYER_FIELDS for k in layers)
    start, end = _window(30)
    aapl = body["stocks"]["AAPL"]["processed"]
    sessions = _sessions(STOCKS, start, end)
    assert aapl["earliest"] <= sessions[0].isoformat() and aapl["latest"] == sessions[-1].isoformat() and aapl["file_count"] >= 1
    assert aapl["total_rows"] >= 210 * len(sessions)
    assert aapl["total_rows"] >= 210 * len(sessions)
    assert body["coverage_stats"] == {"full_coverage": 2, "partial_coverage": 0, "no_coverage": 0}


def test_coverage_for_one_symbol(client):
    body = client.get("/data/coverage?symbol=AAPL").json()
    assert body["symbol"] == "AAPL" and {"raw", "processed"} <= set(body["coverage"])
    assert all(set(layer) == LAYER_FIELDS for layer in body["coverage"].values())
    assert body["coverage"]["raw"]["total_rows"] > 0 and body["status"] == "full"


def test_coverage_counts_a_new_symbol_as_no_coverage_until_refreshed(client):
    client.post("/data/symbols", json={"symbol": "MSFT"})
    try:
        body = client.get("/data/coverage").json()
        assert body["coverage_stats"] == {"full_coverage": 2, "partial_coverage": 0, "no_coverage": 1} and body["total_symbols"] == 3
        assert body["stocks"]["MSFT"]["raw"] == {"earliest": None, "latest": None, "file_count": 0, "total_rows": 0}
        assert client.get("/data/coverage?symbol=MSFT").json()["status"] == "none"
    finally:
        client.delete("/data/symbols/MSFT")
    assert client.get("/data/coverage?symbol=ZZZZ").status_code == 404  # neither tracked nor stored


# ----------------------------------------------------------------------------- scheduled operations
@pytest.mark.parametrize(("preset", "days"), [("daily", 7), ("weekly", 30), ("monthly", 90)])
def test_scheduled_refresh(client, preset, days):
    with _tracking_only(client, ["AAPL"]):
        response = client.post(f"/data/refresh/{preset}")  # curl -X POST ".../data/refresh/daily": no body
        assert response.status_code == 200, response.text
        body = response.json()
        assert {k: body[k] for k in ("message", "schedule", "status")} == {"message": f"{preset.capitalize()} refresh started", "schedule": f"Last {days} days", "status": "started"}
        status = wait_for_job(client, body["status_url"])
    assert status["state"] == "SUCCEEDED" and status["params"]["days_back"] == days, status


# ----------------------------------------------------------------------------- integration patterns
def test_frontend_integration_pattern(client):
    with _tracking_only(client, ["AAPL"]):
        coverage = client.get("/data/coverage").json()  # const coverage = await fetch('/data/coverage')
        assert coverage["coverage_stats"]["no_coverage"] == 0  # AAPL was refreshed above: the page would not refresh
        response = client.post("/data/refresh", json={"days_back": 30}, headers={"Content-Type": "application/json"})  # what it sends when > 0
        assert wait_for_job(client, _assert_started(response, 1)["status_url"])["state"] == "SUCCEEDED"
        symbols = client.get("/data/symbols").json()
    assert symbols == {"stocks": ["AAPL"], "crypto": [], "total": 1}


def test_external_tool_sync_portfolio_pattern(client, service):
    api = service[0]  # the guide's "http://api"; its code with the `requests` library, as written

    def sync_portfolio_data(portfolio_symbols):
        for symbol in portfolio_symbols:
            requests.post(f"{api}/data/symbols", json={"symbol": symbol})
        response = requests.post(f"{api}/data/refresh", json={"days_back": 90, "async_mode": False})
        return response.json()

    with _tracking_only(client, ["AAPL"]):
        body = sync_portfolio_data(["AAPL"])  # adding a tracked symbol again is harmless
    assert body["status"] == "completed" and body["result"]["summary"] == {"total_symbols": 1, "successful": 1, "failed": 0, "success_rate": 100.0}
    start, end = _window(90, STOCKS, CRYPTO)  # the guide's snippet refreshes every asset type
    assert body["result"]["success"][0]["rows"] == len(_sessions(STOCKS, start, end))


def test_handling_async_operations_pattern(client, service):
    with _tracking_only(client, ["AAPL"]):
        response = requests.post(f"{service[0]}/data/refresh", params={"async_mode": True})  # sends async_mode=True
        assert response.json()["status"] == "started"
        status = wait_for_job(client, response.json()["status_url"])
        coverage = client.get("/data/coverage").json()  # the guide polls coverage until full
    assert status["state"] == "SUCCEEDED" and coverage["coverage_stats"]["full_coverage"] == 1 and coverage["total_symbols"] == 1
