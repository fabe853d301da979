"""IB at the speed IB allows (pacing by bar size) and live bars into the raw layer.

The real ib_async client against the local TWS-protocol server, which simulates IB's limits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tws_server import FakeTws, _day_bars, five_second_bars  # noqa: E402

from platform_assets.ingestion.live_bars import MinuteBuilder, missing_range, record_bars  # noqa: E402
from resources.ib_pacing import AdaptiveLimiter, HistoricalRequest, is_pacing_error  # noqa: E402
from resources.ib_paging import max_page_days, page_days  # noqa: E402
from resources.ib_source import BarEvent, IBSource  # noqa: E402
from resources.lake import CURATED_BARS, ParquetLake, raw_bars_table  # noqa: E402

SYMBOLS = [f"S{i:02d}" for i in range(12)]
DEC = [dt.date(2024, 12, 2) + dt.timedelta(days=i) for i in range(12)]
WEEKDAYS = [d for d in DEC if d.weekday() < 5]  # 2024-12-02 .. 2024-12-13, 10 trading days
LIVE_DAY = dt.date(2024, 12, 2)


@pytest.fixture
def tws():
    server = FakeTws()
    yield server
    server.close()


def _source(tws, **overrides) -> IBSource:
    options = {"port": tws.port, "base_delay_s": 0.05, "connect_timeout_s": 5, "identical_gap_s": 0.3, "pacing_backoff_s": 0.2, **overrides}
    return IBSource(**options)


def _all_bars_once(tws, result, symbols, days) -> None:
    for symbol in symbols:
        for day in days:
            want = tws.day_bars(symbol, day)
            got = result.bars[(symbol, day)]
            assert list(got["ts"]) == list(want["ts"]), (symbol, day)  # every bar, once, in order
            assert np.allclose(got["close"].to_numpy(float), want["close"].to_numpy(float))


# ---------------------------------------------------------------------------------------- pure rules
def test_page_sizes_follow_the_bar_size():
    assert max_page_days("1 min") == 10 and max_page_days("30 secs") == 1 and max_page_days("1 min", multi_day=False) == 1
    assert max_page_days("1 min", override=3) == 3 and max_page_days("30 secs", override=10) == 1  # small bars stay strict
    assert max_page_days("1 day") == 365 and max_page_days("5 mins") == 10
    assert [(p.duration, len(p.days)) for p in page_days(WEEKDAYS, "1 min", 10)] == [("10 D", 8), ("2 D", 2)]
    with pytest.raises(ValueError, match="between 1 and 365"):
        max_page_days("1 min", override=0)


def test_pacing_errors_are_recognised():
    assert is_pacing_error(162, "Historical Market Data Service error message:API historical data query cancelled: pacing violation")
    assert is_pacing_error(366, "No historical data query found for ticker id") and is_pacing_error(100, "Max rate of messages per second has been exceeded")
    assert is_pacing_error(420, "Invalid Real-time Query:Historical data request pacing violation")
    assert not is_pacing_error(162, "Historical Market Data Service error message:HMDS query returned no data")
    assert not is_pacing_error(200, "No security definition has been found for the request")


def test_adaptive_limiter_halves_once_per_burst_and_grows_back():
    now = [0.0]
    limiter = AdaptiveLimiter(max_concurrent=8, start_concurrent=8, identical_gap=15, backoff=2, clock=lambda: now[0])
    for _ in range(4):  # four answers of one burst fail together: one halving, one back-off
        limiter.open += 1
        limiter.release(ok=False, pacing=True)
    assert limiter.allowed == 4 and limiter.resume_at == 2.0 and limiter.stats.pacing_errors == 4
    request = HistoricalRequest("AAPL", "SMART", "TRADES", "20241202 23:59:59 US/Eastern", "10 D", "1 min")
    assert limiter.delay_for(request) == 2.0  # the back-off holds every request
    now[0] = 3.0
    grown = []
    for _ in range(30):  # about one more open request per window of answers, up to the cap
        limiter.open += 1
        limiter.release(ok=True)
        grown.append(limiter.allowed)
    assert grown[2] == 4 and grown[4] == 5 and grown[-1] == 8 and 20 <= grown.index(8) <= 26, grown
    limiter.stats.sent.append((3.0, request))
    limiter._last_identical[request] = 3.0
    assert limiter.delay_for(request) == 15.0  # never an identical request within 15 s
    with pytest.raises(ValueError, match="50"):
        AdaptiveLimiter(max_concurrent=51)


def test_minute_builder_writes_only_complete_minutes():
    bars = _day_bars(7, "AAPL", LIVE_DAY, False)
    start = bars["ts"].iloc[0]
    builder, done = MinuteBuilder(), []
    for step in range(6, 36):  # starts mid-minute (second 30) and stops mid-minute (second 55 of minute 2 missing)
        for t, o, h, l, c, v, w, n in five_second_bars(bars, start + pd.Timedelta(seconds=5 * step)):
            done += builder.add(pd.Timestamp(t, unit="s", tz="UTC"), o, h, l, c, v, w, n)
    assert [r["ts"] for r in done] == [start + pd.Timedelta(minutes=1), start + pd.Timedelta(minutes=2)]
    want = bars.iloc[1]
    assert (done[0]["open"], done[0]["high"], done[0]["low"], done[0]["close"], done[0]["volume"], done[0]["trade_count"]) == (
        want["open"], want["high"], want["low"], want["close"], want["volume"], want["trade_count"])
    assert missing_range(start, start + pd.Timedelta(minutes=4), None) == (start + pd.Timedelta(minutes=1), start + pd.Timedelta(minutes=4))
    assert missing_range(start, start + pd.Timedelta(minutes=1), None) is None


# ---------------------------------------------------------------------------------------- historical speed
def test_one_min_bars_come_in_multi_day_pages(tws):
    result = _source(tws).fetch_bars(["AAPL", "MSFT"], WEEKDAYS)
    assert result.policy == "adaptive" and not result.errors
    requests = tws.historical_requests()
    assert sorted((r.fields[3], r.fields[15], r.fields[17]) for r in requests) == sorted(
        (s, end, duration) for s in ("AAPL", "MSFT") for end, duration in (("20241211 23:59:59 US/Eastern", "10 D"), ("20241213 23:59:59 US/Eastern", "2 D")))
    _all_bars_once(tws, result, ["AAPL", "MSFT"], WEEKDAYS)  # 20 symbol-days from 4 requests


def test_open_requests_grow_to_the_cap_and_never_beyond(tws):
    tws.known_symbols, tws.fast_bars, tws.latency_s = set(SYMBOLS), True, 0.3  # IB takes its time to answer
    limiter = _source(tws).adaptive_limiter()
    result = _source(tws).fetch_bars(SYMBOLS, WEEKDAYS * 2 + [d + dt.timedelta(days=14) for d in WEEKDAYS], limiter=limiter)
    assert not result.errors and result.requests == len(tws.historical_requests()) == 12 * 3
    assert tws.peak_open_historical == 6 == limiter.stats.peak_open  # the server saw the cap (6), never more
    assert limiter.stats.limits[0][1] == 2 and max(w for _, w in limiter.stats.limits) == 6  # started cautious, grew


def test_a_burst_of_pacing_errors_slows_the_client_and_it_recovers_with_nothing_lost(tws):
    tws.known_symbols, tws.fast_bars, tws.latency_s = set(SYMBOLS), True, 0.05
    tws.simulate_limits, tws.soft_max_open = True, 3  # IB soft-throttles: a 4th open request gets 162 "max rate"
    limiter = _source(tws, start_concurrent_requests=6).adaptive_limiter()
    result = _source(tws).fetch_bars(SYMBOLS, WEEKDAYS, limiter=limiter)
    assert not result.errors and tws.pacing_errors >= 3 and result.pacing_retries == tws.pacing_errors
    _all_bars_once(tws, result, SYMBOLS, WEEKDAYS)  # nothing lost, nothing twice
    first_error = next(i for i, (_, w) in enumerate(limiter.stats.limits) if i and w < limiter.stats.limits[i - 1][1])
    error_at, halved = limiter.stats.limits[first_error]
    assert halved <= 3
    arrivals = [r.at for r in tws.historical_requests()]
    later = [t for t in arrivals if t > error_at + 0.01]
    assert later and min(later) >= error_at + 0.2 * 0.9  # the back-off held every new request
    assert any(w > halved for t, w in limiter.stats.limits if t > error_at)  # and it grew back after
    identical: dict = {}
    for r in tws.historical_requests():  # never an identical request within the gap
        key = tuple(r.fields[3:20])
        assert key not in identical or r.at - identical[key] >= 0.3 * 0.95
        identical[key] = r.at


def test_strict_rules_still_hold_for_30_second_bars(tws):
    scale = 200.0  # the server's 600 s / 15 s / 2 s rules become 3 s / 75 ms / 10 ms
    tws.known_symbols, tws.fast_bars, tws.simulate_limits, tws.time_scale = set(SYMBOLS), True, True, scale
    window = 600 / scale
    source = _source(tws, pacing_window_s=window * 1.02, identical_gap_s=15 / scale, per_contract_window_s=2 / scale, max_parallel_requests=6)
    result = source.fetch_bars(SYMBOLS[:7], WEEKDAYS, bar_size="30 secs")
    assert result.policy == "strict" and not result.errors and tws.pacing_errors == 0  # IB's hard rules were never broken
    requests = tws.historical_requests()
    assert len(requests) == 70 and {r.fields[17] for r in requests} == {"1 D"}  # one day per request
    arrivals = sorted(r.at for r in requests)
    assert arrivals[60] - arrivals[0] >= window  # the 61st waited for the 10-minute window
    assert all(sum(1 for u in arrivals if t - window < u <= t) <= 60 for t in arrivals)
    tws.requests.clear()
    rushed = _source(tws, pacing_policy="auto", max_concurrent_requests=6, start_concurrent_requests=6, max_pacing_retries=0, max_retries=0)
    rushed.fetch_bars(SYMBOLS[:7], WEEKDAYS, bar_size="30 secs", limiter=rushed.adaptive_limiter())
    assert tws.pacing_errors > 0  # the simulated IB does reject a client that ignores the hard rules


# ---------------------------------------------------------------------------------------- TwsClient
def test_tws_client_methods_of_the_design(tws):
    client = _source(tws)
    with pytest.raises(ConnectionError, match="connect"):
        client.request_historical_bars("AAPL", "2024-12-02 15:00", "2024-12-03 15:00")
    client.connect()
    try:
        assert client.is_connected()
        events = list(client.request_historical_bars("AAPL", pd.Timestamp("2024-12-02 15:00", tz="UTC"), pd.Timestamp("2024-12-03 15:00", tz="UTC")))
        want = pd.concat([tws.day_bars("AAPL", d) for d in DEC[:2]])
        want = want[(want["ts"] >= pd.Timestamp("2024-12-02 15:00", tz="UTC")) & (want["ts"] < pd.Timestamp("2024-12-03 15:00", tz="UTC"))]
        assert [e.ts for e in events] == [t.to_pydatetime() for t in want["ts"]] and all(isinstance(e, BarEvent) and e.source == "TWS" for e in events)
        assert {e.contract_id for e in events} == {str(100_000 + sum(map(ord, "AAPL")))}
        handle = client.subscribe_market_data("MSFT")
        client.wait(0.3)
        live = handle.events()
        assert len(live) >= 10 and all(e.ts.second % 5 == 0 for e in live)
        client.unsubscribe_market_data(handle)
        deadline = time.monotonic() + 5
        while not any(r.msg_id == 51 for r in tws.requests) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(r.msg_id == 51 for r in tws.requests)  # cancelRealTimeBars reached the server
        with pytest.raises(LookupError, match="error 200"):
            client.subscribe_market_data("ZZZZ")
    finally:
        client.disconnect()
    assert not client.is_connected()


# ---------------------------------------------------------------------------------------- live bars
def _check_live_day(tws, lake, symbol) -> pd.DataFrame:
    stored = lake.read_latest_batch(raw_bars_table("ib_live"), symbol, LIVE_DAY)
    assert set(stored["source"]) == {"ib_live"} and stored["ts"].is_unique
    assert stored["ts"].iloc[0] == pd.Timestamp("2024-12-02 14:30", tz="UTC")  # backfilled from the open
    day = tws.day_bars(symbol, LIVE_DAY)
    want = day[day["ts"] <= stored["ts"].iloc[-1]]
    assert list(stored["ts"]) == list(want["ts"])  # every minute IB has up to the last one recorded: no gap, none twice
    for column in ("open", "high", "low", "close", "volume", "trade_count"):
        assert np.allclose(stored[column].to_numpy(float), want[column].to_numpy(float)), column
    return stored


def test_live_bars_survive_a_dropped_connection_without_gaps_or_duplicates(tws, tmp_path):
    tws.rt_interval_s, tws.drop_realtime_after = 0.005, 150  # a minute every 60 ms; the connection drops once
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    stats = asyncio.run(record_bars(_source(tws), lake, ["AAPL", "MSFT"], flush_s=0.2, duration_s=2.0))
    assert stats.end_reason == "duration" and stats.reconnects == 1 and not stats.gaps and not stats.refused
    assert len(tws.realtime_requests()) == 4  # both symbols subscribed again after the drop
    stored = [_check_live_day(tws, lake, s) for s in ("AAPL", "MSFT")]
    assert stats.minutes + stats.backfilled == sum(len(s) for s in stored) and stats.minutes > 10 and stats.backfilled >= 2
    backfills = [r for r in tws.historical_requests() if r.fields[17].endswith(" S")]
    assert len(backfills) == stats.backfill_requests >= 3  # the open for each symbol, then the minutes lost to the drop
    assert len(lake.batch_files(raw_bars_table("ib_live"), "AAPL", LIVE_DAY)) >= 2  # flushed as append-only batches


def test_record_bars_job_lands_in_raw_and_curated_prefers_ib_over_ib_live(tws, tmp_path):
    from definitions import build_definitions
    from platform_api.backfill import plan_backfill, run_backfill
    from resources.settings import load_settings

    tws.rt_interval_s = 0.005
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(settings)
        config = {"ops": {"record_bars_op": {"config": {"symbols": ["AAPL"], "duration_s": 1.0, "flush_s": 0.3}}}}
        assert defs.resolve_job_def("record_bars_job").execute_in_process(run_config=config, instance=instance).success
        lake = defs.resources["lake"]
        live = _check_live_day(tws, lake, "AAPL")
        report = run_backfill(instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-02"), defs=defs, add_missing_symbols=True,
                              asset_selection=["curated_bars"])
        curated = lake.read(CURATED_BARS, ["AAPL"], [LIVE_DAY])
        assert set(curated["source"]) == {"ib_live"}, report  # during the session: the live bars
        live_minutes = curated[curated["ts"].isin(live["ts"])]
        assert len(live_minutes) == len(live)
        report = run_backfill(instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-02"), defs=defs, asset_selection=["raw_bars_ib", "curated_bars"])
        assert report.success, [r.error for r in report.runs]
        curated = lake.read(CURATED_BARS, ["AAPL"], [LIVE_DAY])
        assert set(curated["source"]) == {"ib"} and len(curated) == 390  # the end-of-day pull supersedes them


def test_record_bars_job_fails_when_the_connection_is_lost_for_good(tws, tmp_path):
    """A session that ends because IB could not be reconnected keeps what it recorded but fails
    (it used to succeed, ending 'disconnected', as if the capture had been complete)."""
    from definitions import build_definitions
    from resources.settings import load_settings

    tws.rt_interval_s, tws.drop_realtime_after = 0.005, 150
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(settings)
        config = {"ops": {"record_bars_op": {"config": {"symbols": ["AAPL"], "duration_s": 5.0, "flush_s": 0.3, "reconnects": 0}}}}
        result = defs.resolve_job_def("record_bars_job").execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "record_bars AAPL: disconnected" in failure.event_specific_data.error.message
    assert ParquetLake(base_path=str(tmp_path / "data"), fsync=False).batch_files(raw_bars_table("ib_live"), "AAPL", LIVE_DAY)  # kept


def test_live_bars_name_a_symbol_ib_refuses_while_the_others_record(tws, tmp_path):
    """No real-time permission for one symbol: it used to record nothing, unnamed, exit 0."""
    tws.rt_interval_s = 0.005
    tws.realtime_errors = {"MSFT": (354, "Requested market data is not subscribed.")}
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    stats = asyncio.run(record_bars(_source(tws), lake, ["AAPL", "MSFT"], flush_s=0.2, duration_s=1.5))
    assert stats.end_reason == "duration" and stats.refused == {"MSFT": "IB error 354: Requested market data is not subscribed."}
    _check_live_day(tws, lake, "AAPL")  # recorded on
    assert not lake.batch_files(raw_bars_table("ib_live"), "MSFT", LIVE_DAY)
    tws.realtime_errors["AAPL"] = (10089, "Requested market data requires additional subscription for API.")
    started = time.monotonic()
    stats = asyncio.run(record_bars(_source(tws), ParquetLake(base_path=str(tmp_path / "b"), fsync=False), ["AAPL", "MSFT"], flush_s=0.2, duration_s=20.0))
    assert time.monotonic() - started < 10 and stats.end_reason.startswith("refused: ") and "AAPL IB error 10089" in stats.end_reason


def test_record_bars_command_stops_cleanly_on_sigint(tws, tmp_path):
    tws.rt_interval_s = 0.005
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "IB_PORT": str(tws.port), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen(
        [sys.executable, "-m", "platform_api.cli", "record-bars", "--symbols", "AAPL,MSFT", "--flush-seconds", "60"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 30
    while len({r.fields[3] for r in tws.historical_requests()}) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # both symbols completed a live minute and asked for the minutes since the open
    time.sleep(1.0)  # minutes are recorded; nothing is flushed yet (every 60 s)
    lake = ParquetLake(base_path=str(tmp_path / "data"), fsync=False)
    assert not lake.batch_files(raw_bars_table("ib_live"), "AAPL", LIVE_DAY)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and "(stopped)" in out, out
    for symbol in ("AAPL", "MSFT"):
        assert len(lake.batch_files(raw_bars_table("ib_live"), symbol, LIVE_DAY)) == 1, out  # written on the way out
        _check_live_day(tws, lake, symbol)


def test_ib_backfill_bench_runs_and_the_new_policy_is_faster():
    from bench import ib_backfill

    results = ib_backfill.run(symbols=2, days=20, old_symbols=2, old_days=3)
    assert len(results) == 1 and results[0].ratio > 1 and "symbol-days per simulated hour" in results[0].note
