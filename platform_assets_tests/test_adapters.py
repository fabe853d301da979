"""Ingestion adapters (002): the document's usage examples with our module paths, run by the real
``databento`` client against the local TLS gateway; retries, errors, logs, counters, the registry
and a new source whose Dagster asset is generated from one class + one config entry."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import databento_dbn as dbn
import pandas as pd
import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))
from databento_gateway import DatabentoGateway  # noqa: E402
from dbn_builder import SimVendor, metadata, trade_bytes  # noqa: E402
from tws_server import FakeTws  # noqa: E402

import resources.databento_source as databento_source_module  # noqa: E402
from platform_assets.ingestion.adapter_assets import generated_raw_bars_assets  # noqa: E402
from resources.adapters import (  # noqa: E402
    AdapterRegistry,
    BarRecord,
    BaseAdapter,
    DatabentoStatisticsRecord,
    InteractiveBrokersAdapter,
    JsonFormatter,
)
from resources.adapters.databento_adapter import (  # noqa: E402
    DatabentoAdapter,
    DatabentoOHLCVRecord,
    DatabentoTBBORecord,
    DatabentoTradeRecord,
)
from resources.adapters.structured_logging import as_dict  # noqa: E402
from resources.databento_source import DatabentoSource  # noqa: E402
from resources.sim_market import simulate_day  # noqa: E402
from resources.settings import get_settings, load_settings  # noqa: E402

KEY = "db-ADAPTERKEY0123456789abcdefgh"
REPO = Path(__file__).resolve().parents[1]

# --- the ingestion document's configuration and job examples, as written ---------------------
config = {
    "api": {"key_env_var": "DATABENTO_API_KEY"},
    "retry_policy": {"max_retries": 3, "base_delay": 1.0},
}
ohlcv_job = {
    "name": "AAPL_Daily_OHLCV", "dataset": "GLBX.MDP3", "schema": "ohlcv-1d", "symbols": ["AAPL"], "stype_in": "continuous",
    "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-31T23:59:59Z",
}
trades_job = {
    "name": "Multi_Symbol_Trades", "dataset": "GLBX.MDP3", "schema": "trades", "symbols": ["AAPL", "MSFT", "GOOGL"], "stype_in": "continuous",
    "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-07T23:59:59Z", "date_chunk_interval_days": 1,
}
tbbo_job = {
    "name": "AAPL_TBBO", "dataset": "GLBX.MDP3", "schema": "tbbo", "symbols": ["AAPL"], "stype_in": "continuous",
    "start_date": "2024-01-01T09:30:00Z", "end_date": "2024-01-01T16:00:00Z",
}
# statistics has no example in the document: the same shape, over a week of sessions
statistics_job = {
    "name": "AAPL_MSFT_Statistics", "dataset": "GLBX.MDP3", "schema": "statistics", "symbols": ["AAPL", "MSFT"], "stype_in": "continuous",
    "start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-06T00:00:00Z",
}
FAST = {"api": {"key_env_var": "DATABENTO_API_KEY"}, "retry_policy": {"max_retries": 3, "base_delay": 0.01, "max_delay": 0.05}}


def sessions(start: str, end: str) -> list[dt.date]:
    from platform_assets.calendars import STOCKS, sessions_in_range

    return sessions_in_range(STOCKS, start, end)


@pytest.fixture
def vendor():
    return SimVendor(dataset="GLBX.MDP3")


@pytest.fixture
def gateway(tmp_path, vendor, monkeypatch):
    """The local gateway, set as the platform's DATABENTO_GATEWAY so the document's config (which
    names no server) reaches it."""
    gw = DatabentoGateway(provider=vendor, keys={KEY}, folder=tmp_path, stall_seconds=3)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gw.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    monkeypatch.setenv("DATABENTO_GATEWAY", gw.url)
    get_settings.cache_clear()
    yield gw
    gw.close()
    get_settings.cache_clear()


def test_basic_usage_connect_fetch_disconnect(gateway, capsys):
    # --- the document's "Basic Usage", with our module path -------------------------------------
    adapter = DatabentoAdapter(config)
    adapter.connect()
    try:
        job_config = {
            "dataset": "GLBX.MDP3",
            "schema": "ohlcv-1d",
            "symbols": ["AAPL", "MSFT"],
            "start_date": "2024-01-01T00:00:00Z",
            "end_date": "2024-01-31T23:59:59Z",
            "stype_in": "continuous",
        }
        for record in adapter.fetch_historical_data(job_config):
            print(f"Fetched: {record.symbol} at {record.ts_event}")
    finally:
        adapter.disconnect()
    # ---------------------------------------------------------------------------------------------
    lines = capsys.readouterr().out.splitlines()
    days = sessions("2024-01-01", "2024-01-31")
    assert len(days) == 21 and len(lines) == 2 * 21
    assert "Fetched: AAPL at 2024-01-02 00:00:00+00:00" in lines and "Fetched: MSFT at 2024-01-31 00:00:00+00:00" in lines
    requests = gateway.get_range_requests()  # ohlcv-1d: 30-day chunks -> [Jan 1, Jan 31), [Jan 31, Jan 31 23:59:59)
    assert [(r.form["start"], r.form["end"]) for r in requests] == [
        ("2024-01-01T00:00:00+00:00", "2024-01-31T00:00:00+00:00"), ("2024-01-31T00:00:00+00:00", "2024-01-31T23:59:59+00:00"),
    ]
    assert {(r.form["dataset"], r.form["stype_in"], r.form["symbols"], r.user) for r in requests} == {("GLBX.MDP3", "continuous", "AAPL,MSFT", KEY)}
    assert not adapter.is_connected
    assert adapter.metrics.records_fetched == 42 and adapter.metrics.api_calls_made == 2 and adapter.metrics.data_volume_mb > 0


def test_context_manager_usage_and_every_job_config_example(gateway):
    seen: dict[str, list] = {}

    def process_record(record):
        seen.setdefault(type(record).__name__, []).append(record)

    for job_config in (ohlcv_job, trades_job, tbbo_job, statistics_job):
        # --- the document's "Context Manager Usage" ---------------------------------------------
        with DatabentoAdapter(config) as adapter:
            for record in adapter.fetch_historical_data(job_config):
                process_record(record)
        # -----------------------------------------------------------------------------------------
        assert not adapter.is_connected and adapter.metrics.validation_errors == 0
    vendor = SimVendor(dataset="GLBX.MDP3")
    january = sessions("2024-01-01", "2024-01-31")
    daily = seen["DatabentoOHLCVRecord"]
    assert [r.ts_event.date() for r in daily] == january and {r.symbol for r in daily} == {"AAPL"}
    first = vendor.bars("AAPL", january[0])
    assert daily[0].open == pytest.approx(first["open"].iloc[0]) and daily[0].high == pytest.approx(first["high"].max())
    assert daily[0].volume == first["volume"].sum() and isinstance(daily[0], DatabentoOHLCVRecord)

    week = sessions("2024-01-01", "2024-01-07")  # Jan 1 is a holiday, the 6th and 7th a weekend
    trades = seen["DatabentoTradeRecord"]
    assert len(trades) == sum(len(vendor.bars(s, d)) for s in trades_job["symbols"] for d in week)
    assert {r.symbol for r in trades} == {"AAPL", "MSFT", "GOOGL"} and all(isinstance(r, DatabentoTradeRecord) for r in trades)
    assert all(r.side == "A" and r.action == "T" and r.price > 0 and r.ts_recv > r.ts_event for r in trades[:100])
    chunks = [(r.form["start"], r.form["end"]) for r in gateway.get_range_requests() if r.form["schema"] == "trades"]
    assert len(chunks) == 7 and chunks[0] == ("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00")

    # the document's tbbo example is New Year's Day: a holiday, one request, no record, no error
    assert "DatabentoTBBORecord" not in seen
    assert [r.form["schema"] for r in gateway.get_range_requests()].count("tbbo") == 1
    with DatabentoAdapter(config) as adapter:
        quotes = list(adapter.fetch_historical_data({**tbbo_job, "start_date": "2024-01-02T14:30:00Z", "end_date": "2024-01-02T21:00:00Z"}))
    assert len(quotes) == len(vendor.bars("AAPL", dt.date(2024, 1, 2))) and isinstance(quotes[0], DatabentoTBBORecord)
    assert all(q.bid_px < q.price < q.ask_px and q.bid_sz == 100 and q.ask_sz == 120 for q in quotes)

    stats = seen["DatabentoStatisticsRecord"]
    days = sessions("2024-01-02", "2024-01-05")
    assert len(stats) == 2 * len(days) * 5 and all(isinstance(s, DatabentoStatisticsRecord) for s in stats)
    aapl = {s.stat_name: s for s in stats if s.symbol == "AAPL" and s.ts_ref.date() == days[0]}
    bars = vendor.bars("AAPL", days[0])
    assert set(aapl) == {"OPENING_PRICE", "TRADING_SESSION_HIGH_PRICE", "TRADING_SESSION_LOW_PRICE", "CLOSE_PRICE", "CLEARED_VOLUME"}
    assert aapl["OPENING_PRICE"].price == pytest.approx(bars["open"].iloc[0]) and aapl["OPENING_PRICE"].quantity is None
    assert aapl["TRADING_SESSION_HIGH_PRICE"].price == pytest.approx(bars["high"].max())
    assert aapl["CLEARED_VOLUME"].price is None and aapl["CLEARED_VOLUME"].quantity == bars["volume"].sum()
    assert aapl["CLEARED_VOLUME"].stat_type == int(dbn.StatType.CLEARED_VOLUME.value) and aapl["OPENING_PRICE"].update_action == "new"


def test_context_manager_disconnects_when_the_body_raises(gateway):
    with pytest.raises(KeyError):
        with DatabentoAdapter(config) as adapter:
            assert adapter.is_connected
            raise KeyError("consumer failed")
    assert not adapter.is_connected


def _one_trade_per_request(request) -> bytes:
    """A cheap provider: each chunk answers one trade at its start (real DBN)."""
    start, end = pd.Timestamp(request.form["start"]), pd.Timestamp(request.form["end"])
    symbols = request.form["symbols"].split(",")
    bars = pd.DataFrame({"ts": [start], "close": [100.0], "volume": [10]})
    return metadata(request.form["dataset"], request.form["schema"], start, end, symbols) + trade_bytes(symbols[0], bars, "trades")


def test_date_chunking_for_large_ranges_weekly_chunks_logged_with_numbers(tmp_path, monkeypatch, caplog):
    gw = DatabentoGateway(provider=_one_trade_per_request, keys={KEY}, folder=tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gw.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    caplog.set_level(logging.INFO, logger="DatabentoAdapter")
    try:
        # --- the document's "Date Chunking for Large Ranges" ------------------------------------
        job_config = {
            "dataset": "GLBX.MDP3",
            "schema": "trades",
            "symbols": ["AAPL"],
            "start_date": "2024-01-01T00:00:00Z",
            "end_date": "2024-12-31T23:59:59Z",
            "date_chunk_interval_days": 7,  # Process in weekly chunks
            "stype_in": "continuous",
        }

        def chunked():
            with DatabentoAdapter({**config, "api": {**config["api"], "gateway": gw.url}}) as adapter:
                for record in adapter.fetch_historical_data(job_config):
                    # Records are automatically chunked and processed
                    yield record
        # -----------------------------------------------------------------------------------------
        records = list(chunked())
    finally:
        gw.close()
    requests = gw.get_range_requests()
    assert len(requests) == 53 == len(records)  # 366 days - 1 s in 7-day chunks
    bounds = [(pd.Timestamp(r.form["start"]), pd.Timestamp(r.form["end"])) for r in requests]
    assert bounds[0][0] == pd.Timestamp("2024-01-01T00:00Z") and bounds[-1][1] == pd.Timestamp("2024-12-31T23:59:59Z")
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])) and all(e - s <= pd.Timedelta(days=7) for s, e in bounds)
    chunk_logs = [as_dict(r) for r in caplog.records if r.getMessage() == "Fetching data chunk from Databento API"]
    assert [c["chunk_number"] for c in chunk_logs] == list(range(1, 54)) and {c["total_chunks"] for c in chunk_logs} == {53}
    first = chunk_logs[0]  # the document's "Example log output" fields
    assert {"timestamp", "level", "logger", "message", "dataset", "schema", "symbols", "start_date", "end_date", "chunk_number", "total_chunks"} <= set(first)
    assert (first["logger"], first["level"], first["dataset"], first["schema"], first["symbols"]) == ("DatabentoAdapter", "INFO", "GLBX.MDP3", "trades", ["AAPL"])
    assert (first["start_date"], first["end_date"]) == ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z")
    line = json.loads(JsonFormatter().format(caplog.records[[r.getMessage() for r in caplog.records].index("Fetching data chunk from Databento API")]))
    assert line["chunk_number"] == 1 and line["total_chunks"] == 53 and line["logger"] == "DatabentoAdapter"


def test_default_chunk_sizes_per_schema(gateway):
    """Without date_chunk_interval_days: ohlcv-1d 30 days, ohlcv-1m 7, trades 1, tbbo 1."""
    from resources.adapters.databento_adapter import date_chunks

    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    assert {s: len(date_chunks(s, start, end)) for s in ("ohlcv-1d", "ohlcv-1m", "trades", "tbbo")} == {"ohlcv-1d": 2, "ohlcv-1m": 9, "trades": 60, "tbbo": 60}
    with DatabentoAdapter(FAST) as adapter:
        list(adapter.fetch_historical_data({**trades_job, "symbols": ["AAPL"], "date_chunk_interval_days": None,
                                            "start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-04T12:00:00Z"}))
    assert len(gateway.get_range_requests()) == 3


def test_retries_then_success_counted_and_logged(gateway, caplog):
    gateway.script = ["429", "500", "503", "drop"]
    caplog.set_level(logging.WARNING, logger="DatabentoAdapter")
    with DatabentoAdapter(FAST | {"retry_policy": {"max_retries": 4, "base_delay": 0.01, "max_delay": 0.05}}) as adapter:
        records = list(adapter.fetch_historical_data({**ohlcv_job, "end_date": "2024-01-10T00:00:00Z"}))
    assert len(records) == len(sessions("2024-01-01", "2024-01-09"))
    metrics = adapter.metrics.as_dict()
    assert metrics["api_calls_made"] == 5 and metrics["retry_attempts"] == 4 and len(gateway.get_range_requests()) == 5
    assert metrics["records_fetched"] == len(records) and metrics["processing_time_ms"] >= 0 and metrics["data_volume_mb"] > 0
    retries = [as_dict(r) for r in caplog.records if r.getMessage() == "Databento request failed, retrying"]
    assert [r["attempt"] for r in retries] == [1, 2, 3, 4] and retries[0]["status"] == 429 and retries[1]["status"] == 500
    assert all(r["chunk_number"] == 1 and r["total_chunks"] == 1 for r in retries)


def test_retries_exhausted_raise_runtime_error(gateway):
    gateway.script = ["500"] * 10
    with pytest.raises(RuntimeError, match="after 2 retries") as caught:
        with DatabentoAdapter(FAST | {"retry_policy": {"max_retries": 2, "base_delay": 0.01, "max_delay": 0.02}}) as adapter:
            list(adapter.fetch_historical_data(ohlcv_job))
    assert not isinstance(caught.value, ConnectionError)
    assert len(gateway.get_range_requests()) == 3 and adapter.metrics.retry_attempts == 2 and adapter.metrics.api_calls_made == 3


def test_unreachable_api_raises_connection_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    adapter = DatabentoAdapter({"api": {"key_env_var": "DATABENTO_API_KEY", "gateway": f"https://127.0.0.1:{port}"},
                                "retry_policy": {"max_retries": 1, "base_delay": 0.01, "max_delay": 0.01}})
    # the document's error handling, in its order
    try:
        with adapter:
            list(adapter.fetch_historical_data(ohlcv_job))
        outcome = "ok"
    except ValueError:
        outcome = "config"
    except ConnectionError as e:
        outcome = f"connection: {e}"
    except RuntimeError:
        outcome = "runtime"
    assert outcome.startswith("connection: Databento ohlcv-1d request for ") and "failed after 1 retries" in outcome
    assert adapter.metrics.api_calls_made == 2 and adapter.metrics.retry_attempts == 1


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"api": {"key_env_var": "not a variable"}}, "not an environment variable name"),
        ({"api": {"key_env_var": "DATABENTO_API_KEY"}, "retry_policy": {"max_retries": -1}}, "max_retries"),
        ({"api": {"key_env_var": "DATABENTO_API_KEY"}, "retry_policy": {"max_retry": 3}}, "max_retry"),
        ({"api": {"key_env_var": "DATABENTO_API_KEY"}, "retry_policy": {"base_delay": 5.0, "max_delay": 1.0}}, "max_delay 1.0 < base_delay 5.0"),
        ({"api": "DATABENTO_API_KEY"}, "api"),
        ({"api": {"key_env_var": "DATABENTO_API_KEY"}, "retries": {}}, "retries"),
    ],
)
def test_bad_config_raises_value_error(bad, problem):
    with pytest.raises(ValueError, match=problem):
        DatabentoAdapter(bad)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"dataset": None}, "dataset"),
        ({"schema": "ohlcv-7m"}, "unsupported Databento schema 'ohlcv-7m'"),
        ({"symbols": []}, "symbols"),
        ({"start_date": "yesterday-ish"}, "start_date 'yesterday-ish' is not an ISO date-time"),
        ({"end_date": "2023-12-01T00:00:00Z"}, "end_date 2023-12-01T00:00:00Z must be after start_date"),
        ({"date_chunk_interval_days": 0}, "date_chunk_interval_days"),
        ({"stype": "continuous"}, "stype"),
    ],
)
def test_bad_job_config_raises_value_error_before_any_request(gateway, change, problem):
    job = {k: v for k, v in {**ohlcv_job, **change}.items() if v is not None}
    with DatabentoAdapter(config) as adapter, pytest.raises(ValueError, match=problem):
        adapter.fetch_historical_data(job)  # checked at the call, before iterating
    assert gateway.get_range_requests() == []


def test_key_comes_from_the_named_variable_and_never_reaches_logs_or_errors(gateway, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DATABENTO_API_KEY_PROD", KEY)
    monkeypatch.delenv("DATABENTO_API_KEY")
    production_config = {"api": {"key_env_var": "DATABENTO_API_KEY_PROD"},
                         "retry_policy": {"max_retries": 5, "base_delay": 0.01, "max_delay": 0.05, "backoff_multiplier": 2.0}}
    gateway.script = ["429"]
    with DatabentoAdapter(production_config) as adapter:
        assert len(list(adapter.fetch_historical_data(ohlcv_job))) == 21
    assert {r.user for r in gateway.get_range_requests()} == {KEY}

    with pytest.raises(ValueError, match="DATABENTO_API_KEY_DEV"):  # missing variable: a configuration error, named
        DatabentoAdapter({"api": {"key_env_var": "DATABENTO_API_KEY_DEV"}}).connect()

    wrong = "db-WRONGKEY0123456789abcdefghij"
    monkeypatch.setenv("DATABENTO_API_KEY_DEV", wrong)
    with pytest.raises(ConnectionError, match=r"\(401\): Authentication failed") as caught:
        with DatabentoAdapter({"api": {"key_env_var": "DATABENTO_API_KEY_DEV"}}) as adapter:
            list(adapter.fetch_historical_data(ohlcv_job))
    assert isinstance(caught.value, RuntimeError) and adapter.metrics.api_calls_made == 1  # no retry
    rendered = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (KEY, wrong):
        assert secret not in str(caught.value) and secret not in caplog.text and secret not in rendered
    assert "DATABENTO_API_KEY_PROD" in rendered  # the variable's name is fine to log


def test_invalid_vendor_records_are_skipped_and_counted_or_raised(gateway, vendor):
    vendor.corrupt = {("AAPL", "2024-01-02T15:00:00Z"): "high_below_low", ("AAPL", "2024-01-02T16:00:00Z"): "zero_price"}
    job = {**ohlcv_job, "schema": "ohlcv-1m", "start_date": "2024-01-02T14:30:00Z", "end_date": "2024-01-02T21:00:00Z"}
    with DatabentoAdapter(config) as adapter:
        records = list(adapter.fetch_historical_data(job))
    assert adapter.metrics.validation_errors == 2 and adapter.metrics.records_fetched == len(records) + 2
    assert not {pd.Timestamp("2024-01-02T15:00Z"), pd.Timestamp("2024-01-02T16:00Z")} & {pd.Timestamp(r.ts_event) for r in records}
    with DatabentoAdapter(config) as adapter, pytest.raises(ValidationError, match="high"):
        list(adapter.fetch_historical_data({**job, "on_invalid_record": "raise"}))


def test_the_resource_fetches_through_the_adapter_one_code_path(gateway):
    source = DatabentoSource(gateway=gateway.url, dataset="GLBX.MDP3", max_retries=2, base_delay=0.01, max_delay=0.02)
    adapter = source.adapter()
    assert isinstance(adapter, DatabentoAdapter) and adapter.settings.retry_policy.max_retries == 2
    assert adapter.settings.api.gateway == gateway.url and adapter.settings.dataset == "GLBX.MDP3"
    # the resource holds no request, chunking or retry code of its own
    code = inspect.getsource(databento_source_module)
    assert "get_range" not in code and "Retrying" not in code and "date_chunks(" not in code
    chunks = list(source.fetch(["AAPL"], "ohlcv-1d", pd.Timestamp("2024-01-02", tz="UTC"), pd.Timestamp("2024-01-04", tz="UTC")))
    assert len(chunks) == 1 and len(gateway.get_range_requests()) == 1


def test_registry_builds_adapters_by_name_and_rejects_unknown_providers():
    assert isinstance(AdapterRegistry.get_adapter("databento", config), DatabentoAdapter)
    for name in ("interactive_brokers", "ib", "tws"):
        assert isinstance(AdapterRegistry.get_adapter(name, {"port": 4002}), InteractiveBrokersAdapter)
    with pytest.raises(ValueError, match="Unknown provider: alpha_vantage"):
        AdapterRegistry.get_adapter("alpha_vantage", {})
    assert AdapterRegistry.source_priority()[:3] == ["databento", "ib", "sim"]
    registry = AdapterRegistry.isolated()
    with pytest.raises(ValueError, match="already taken"):
        registry.register("other", DatabentoAdapter, aliases=["ib"])
    with pytest.raises(ValueError, match="lake source 'sim'"):
        registry.register("other", DatabentoAdapter, source="sim")
    assert registry.register("other", DatabentoAdapter, priority=15).asset_key == "raw_bars_other"
    assert registry.source_priority() == ["databento", "other", "ib", "sim"] and isinstance(registry.get_adapter("other", config), DatabentoAdapter)
    with pytest.raises(ValueError, match="not a BaseAdapter"):
        registry.load_entries({"broken": {"adapter": "resources.lake:ParquetLake"}})
    with pytest.raises(ValueError, match="unknown keys colour"):
        registry.load_entries({"broken": {"adapter": DatabentoAdapter, "colour": "red"}})
    class Half(BaseAdapter):
        def connect(self):
            pass

    with pytest.raises(ValueError, match=r"Half is abstract \(implement fetch_historical_data, validate_config\)"):
        registry.register("half", Half)
    assert "broken" not in AdapterRegistry.sources and "other" not in AdapterRegistry.adapters  # isolated
    generated = generated_raw_bars_assets(registry)
    assert sorted(generated) == ["databento", "other"] and generated["other"].op.pool == "other"


def test_interactive_brokers_adapter_over_the_tws_protocol():
    tws = FakeTws()
    try:
        ib_config = {"port": tws.port, "connect_timeout_s": 5, "identical_gap_s": 0.3, "retry_policy": {"max_retries": 2, "base_delay": 0.05}}
        with AdapterRegistry.get_adapter("tws", ib_config) as adapter:
            assert adapter.is_connected
            bars = list(adapter.fetch_historical_data({"symbols": ["AAPL"], "start_date": "2024-12-02T00:00:00Z", "end_date": "2024-12-04T00:00:00Z"}))
    finally:
        tws.close()
    expected = 0
    for day in (dt.date(2024, 12, 2), dt.date(2024, 12, 3)):
        raw = simulate_day(7, "AAPL", day).bars.drop_duplicates("ts")
        valid = (raw[["open", "high", "low", "close"]] > 0).all(axis=1) & (raw["high"] >= raw["low"])
        expected += int(valid.sum())
    assert all(isinstance(b, BarRecord) and b.symbol == "AAPL" for b in bars)
    assert len(bars) + adapter.metrics.validation_errors == expected and len(bars) > 700
    assert adapter.metrics.api_calls_made == 1 and not adapter.is_connected  # one multi-day page covers both days of 1-min bars
    with pytest.raises(ConnectionError):
        InteractiveBrokersAdapter({"port": tws.port, "connect_timeout_s": 1, "retry_policy": {"max_retries": 1, "base_delay": 0.01}}).connect()


# --- Dagster: counters in run metadata; a new source's generated asset --------------------------
def _materialize(defs, instance, assets, symbols, start, end):
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_assets.universe import add_symbols

    add_symbols(instance, symbols)
    report = run_backfill(instance, plan_backfill(symbols, start, end), defs=defs, asset_selection=assets)
    assert report.success, [r.error for r in report.runs]
    return report


def test_adapter_counters_in_each_databento_runs_metadata(tmp_path, gateway, vendor):
    from definitions import build_definitions

    vendor.corrupt = {("AAPL", "2024-12-02T15:00:00Z"): "zero_price"}
    gateway.script = ["429"]
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        defs = build_definitions(settings)
        _materialize(defs, instance, ["raw_bars_databento", "raw_trades_databento", "l2_snapshots_databento"], ["AAPL"], "2024-12-02", "2024-12-03")
        meta = {k: {n: v.value for n, v in instance.get_latest_materialization_event(dg.AssetKey(k)).asset_materialization.metadata.items()}
                for k in ("raw_bars_databento", "raw_trades_databento", "l2_snapshots_databento")}
        records = instance.fetch_materializations(dg.AssetKey("raw_bars_databento"), limit=10).records
        per_date = {r.event_log_entry.asset_materialization.partition: {n: v.value for n, v in r.event_log_entry.asset_materialization.metadata.items()} for r in records}
    bars = meta["raw_bars_databento"]
    expected = sum(len(vendor.bars("AAPL", d)) for d in (dt.date(2024, 12, 2), dt.date(2024, 12, 3)))
    assert set(per_date) == {"2024-12-02", "2024-12-03"}  # each date's materialization carries that date's own numbers
    assert sum(m["rows"] for m in per_date.values()) == expected - 1 and per_date["2024-12-02"]["malformed_rows_quarantined"] == 1
    assert per_date["2024-12-03"]["malformed_rows_quarantined"] == 0 and per_date["2024-12-02"]["symbols_written"] == 1
    assert bars["records_fetched"] == expected and bars["validation_errors"] == 1  # the run's adapter counters, on each date
    assert bars["provider"] == "databento" and bars["dataset"] == "XNAS.ITCH"
    assert bars["data_volume_mb"] > 0 and bars["processing_time_ms"] >= 0
    # one 429 hit whichever asset ran first: its run counts one retry and one more call
    assert sum(m["retry_attempts"] for m in meta.values()) == 1
    calls = {"raw_bars_databento": 1, "raw_trades_databento": 2, "l2_snapshots_databento": 2}  # 7-day, 1-day chunks, 1 per L2 day
    assert {k: m["api_calls_made"] - m["retry_attempts"] for k, m in meta.items()} == calls
    trades = meta["raw_trades_databento"]
    assert trades["records_fetched"] == trades["rows"] > 0 and trades["validation_errors"] == 0
    l2 = meta["l2_snapshots_databento"]
    # historical L2 is sampled on live capture's 1 s grid by default: 6.5 h x 3600 snapshots per day (README "Historical L2 sampling")
    assert l2["records_fetched"] > 0 and l2["snapshots_written"] == 2 * 23_400
    assert l2["l2_sampling"] == {"mode": "grid", "interval_ms": 1000, "clock": "ts_recv"}
    assert KEY not in json.dumps(meta, default=str)


DUMMY_SOURCE = '''
"""A made-up vendor: the one class a new source needs."""
import pandas as pd
from platform_assets.calendars import STOCKS, session_minutes
from resources.adapters import BarRecord, BaseAdapter
from resources.adapters.interactive_brokers_adapter import session_days
from resources.adapters.ranges import parse_instant
import os


class DummyAdapter(BaseAdapter):
    def validate_config(self):
        if not isinstance(self.config.get("price"), (int, float)):
            raise ValueError("DummyAdapter config needs a numeric 'price'")
        return True

    def connect(self):
        if not os.environ.get(self.config["api"]["key_env_var"]):
            raise ValueError("no dummy key")
        self._connected = True

    def fetch_historical_data(self, job_config):
        start, end = parse_instant(job_config["start_date"], "start"), parse_instant(job_config["end_date"], "end")
        for day in session_days(start, end):
            self.metrics.api_calls_made += 1
            for symbol in job_config["symbols"]:
                for i, ts in enumerate(session_minutes(STOCKS, day)):
                    self.metrics.records_fetched += 1
                    price = self.config["price"] + i / 100
                    if i == 7:  # a bad tick the validation drops
                        price = -1.0
                    try:
                        yield BarRecord(symbol=symbol, ts_event=ts.to_pydatetime(), open=price, high=price, low=price, close=price, volume=100)
                    except ValueError:
                        self.metrics.validation_errors += 1
'''

DUMMY_ENTRY = """
dummy:
  adapter: dummy_source:DummyAdapter
  config: {price: 50.0, api: {key_env_var: DUMMY_API_KEY}}
  priority: 5
"""

SNAPSHOT = '''
import json, sys, datetime as dt, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from definitions import build_definitions
from platform_assets.curation.assets import CurationConfig
from resources.settings import load_settings
from resources.lake import CURATED_BARS
sys.path.insert(0, sys.argv[2])
from test_adapters import _materialize

settings = load_settings(DATA_PATH_OVERRIDE=sys.argv[1] + "/data", LAKE_FSYNC="false")
defs = build_definitions(settings)
graph = defs.resolve_asset_graph()
node = graph.get(dg.AssetKey("raw_bars_dummy"))
out = {
    "keys": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "curated_deps": sorted(k.to_user_string() for k in graph.get(dg.AssetKey("curated_bars")).parent_keys),
    "group": node.group_name, "pool": defs.resolve_assets_def("raw_bars_dummy").op.pool,
    "checks": sorted(c.name for c in defs.resolve_assets_def("raw_bars_dummy").check_specs),
    "priority": CurationConfig().priority(),
}
import os
os.makedirs(sys.argv[1] + "/home", exist_ok=True)
with dg.instance_for_test(temp_dir=sys.argv[1] + "/home") as instance:
    _materialize(defs, instance, ["raw_bars_dummy", "curated_bars"], ["ZZDM"], "2024-12-02", "2024-12-03")
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_bars_dummy"))
    out["metadata"] = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    curated = defs.resources["lake"].read(CURATED_BARS, ["ZZDM"], [dt.date(2024, 12, 2)])
    out["curated"] = {"rows": len(curated), "sources": sorted(set(curated["source"])), "first_close": float(curated["close"].iloc[0])}
print("SNAPSHOT " + json.dumps(out, default=str))
'''


def test_a_new_source_is_one_class_plus_one_config_entry_and_gets_its_asset_generated(tmp_path):
    (tmp_path / "dummy_source.py").write_text(DUMMY_SOURCE)
    entries = tmp_path / "adapters.yaml"
    entries.write_text(DUMMY_ENTRY)
    env = {**os.environ, "INGESTION_ADAPTERS_FILE": str(entries), "DUMMY_API_KEY": "dummy-secret",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]), "DATA_PATH_OVERRIDE": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", SNAPSHOT, str(tmp_path), str(Path(__file__).parent)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    snapshot = json.loads(done.stdout.split("SNAPSHOT ", 1)[1])
    assert "raw_bars_dummy" in snapshot["keys"] and "raw_bars_databento" in snapshot["keys"] and "raw_bars_ib" in snapshot["keys"]
    assert "raw_bars_dummy" in snapshot["curated_deps"] and snapshot["group"] == "dummy" and snapshot["pool"] == "dummy"
    assert any(c.startswith("dq_") for c in snapshot["checks"])
    assert snapshot["priority"] == ["dummy", "databento", "ib", "ib_live", "sim"]
    meta = snapshot["metadata"]
    assert meta["source"] == "dummy" and meta["rows"] == 389 and meta["malformed_rows_quarantined"] == 0  # the latest date's own numbers
    assert "symbols_complete" in snapshot["checks"]  # a generated raw-bars asset says per date which symbols were stored
    assert meta["validation_errors"] == 2 and meta["records_fetched"] == 2 * 390 and meta["api_calls_made"] == 2
    assert snapshot["curated"] == {"rows": 390, "sources": ["dummy"], "first_close": 50.0}
    assert "dummy-secret" not in done.stdout + done.stderr


def test_the_documents_testing_fixture_config_builds_without_a_key_and_fetch_connects_on_demand(gateway, monkeypatch):
    """The document's unit-test fixture builds an adapter from ``{"api": {"key_env_var": "TEST_API_KEY"}}``
    and calls fetch_historical_data without connect(): construction needs no key, the fetch connects."""
    monkeypatch.delenv("TEST_API_KEY", raising=False)
    adapter = DatabentoAdapter({"api": {"key_env_var": "TEST_API_KEY"}})
    assert adapter.validate_config() is True and not adapter.is_connected
    monkeypatch.setenv("TEST_API_KEY", KEY)
    records = list(adapter.fetch_historical_data({**ohlcv_job, "end_date": "2024-01-05T00:00:00Z"}))
    assert len(records) == 3 and isinstance(records[0], DatabentoOHLCVRecord) and adapter.is_connected
    adapter.disconnect()


def test_the_guides_mock_pattern_runs_as_written_without_a_key(monkeypatch):
    """Seed 002, "Unit Testing with Mocks", verbatim: the fixture's ``TEST_API_KEY`` is never set
    there, and with ``databento.Historical`` patched nothing needs it. The official client still
    refuses a missing key at ``connect()`` (``MissingApiKeyError``, a ``ValueError``)."""
    from unittest.mock import Mock, patch

    monkeypatch.delenv("TEST_API_KEY", raising=False)
    job_config = {"dataset": "GLBX.MDP3", "schema": "ohlcv-1d", "symbols": ["AAPL"],
                  "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-02T00:00:00Z"}
    mock_record = DatabentoOHLCVRecord(symbol="AAPL", ts_event=dt.datetime(2024, 1, 2), open=1.0, high=2.0, low=0.5, close=1.5,
                                       volume=3, instrument_id=7, publisher_id=2)
    config = {"api": {"key_env_var": "TEST_API_KEY"}}
    adapter = DatabentoAdapter(config)
    with patch('databento.Historical') as mock_client:
        mock_store = Mock()
        mock_store.__iter__ = Mock(return_value=iter([mock_record]))
        mock_client.return_value.timeseries.get_range.return_value = mock_store
        records = list(adapter.fetch_historical_data(job_config))
    assert len(records) == 1
    assert isinstance(records[0], DatabentoOHLCVRecord)
    assert mock_client.call_args.kwargs["key"] is None  # no key invented for the stand-in
    metrics = dict(adapter.metrics)  # the document's "Key metrics to monitor" dict
    assert list(metrics) == ["records_fetched", "api_calls_made", "retry_attempts", "validation_errors", "processing_time_ms", "data_volume_mb"]
    assert adapter.metrics["api_calls_made"] == 1 and "retry_attempts" in adapter.metrics
    with pytest.raises(ValueError, match="TEST_API_KEY"):  # the real client: a configuration error, named
        DatabentoAdapter(config).connect()


def test_the_guides_mock_pattern_a_client_returning_its_store_yields_validated_records(monkeypatch):
    """Seed 002, "Unit Testing with Mocks": ``databento.Historical`` patched, ``get_range``
    returning an iterable store instead of writing the DBN file. Record objects are read attribute
    by attribute (fixed-point prices decoded, ns times, the requested symbol); a record model
    instance passes as it is; an object with no usable prices is counted as invalid."""
    from unittest.mock import Mock, patch

    monkeypatch.setenv("TEST_API_KEY", KEY)
    job = {"dataset": "XNAS.ITCH", "schema": "ohlcv-1d", "symbols": ["AAPL"],
           "start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-03T00:00:00Z"}
    bar = Mock()
    bar.ts_event = 1_704_153_600_000_000_000
    bar.open, bar.high, bar.low, bar.close, bar.volume = 185_000_000_000, 188_000_000_000, 183_000_000_000, 185_500_000_000, 1000
    given = DatabentoOHLCVRecord(symbol="AAPL", ts_event=dt.datetime(2024, 1, 2), open=1.0, high=2.0, low=0.5, close=1.5, volume=3,
                                 instrument_id=7, publisher_id=2)
    unusable = Mock()  # attributes are Mocks, not numbers
    adapter = DatabentoAdapter({"api": {"key_env_var": "TEST_API_KEY"}})
    with patch("databento.Historical") as mock_client:
        mock_store = Mock()
        mock_store.__iter__ = Mock(return_value=iter([bar, given, unusable]))
        mock_client.return_value.timeseries.get_range.return_value = mock_store
        records = list(adapter.fetch_historical_data(job))
    assert [type(r) for r in records] == [DatabentoOHLCVRecord, DatabentoOHLCVRecord]
    first = records[0]
    assert (first.symbol, first.open, first.high, first.low, first.close, first.volume) == ("AAPL", 185.0, 188.0, 183.0, 185.5, 1000)
    assert first.ts_event == dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    assert records[1] is given
    assert adapter.metrics.validation_errors == 1 and adapter.metrics.api_calls_made == 1
