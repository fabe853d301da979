"""Interactive Brokers through the real ib_async client against a local TWS-protocol server."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tws_server import FakeTws  # noqa: E402

from platform_api.backfill import plan_backfill, run_backfill  # noqa: E402
from resources.ib_pacing import HistoricalRequest, PacingLimiter  # noqa: E402
from resources.ib_paging import page_days  # noqa: E402
from resources.ib_source import IBSource  # noqa: E402
from resources.lake import CURATED_BARS, raw_bars_table  # noqa: E402
from resources.sim_market import simulate_day  # noqa: E402

DAYS = [dt.date(2024, 12, 2), dt.date(2024, 12, 3), dt.date(2024, 12, 4)]


@pytest.fixture
def tws():
    server = FakeTws()
    yield server
    server.close()


def _source(tws, **overrides) -> IBSource:
    # IB's pacing rules with a short "identical request" gap, so retries of one page do not wait 15 s
    return IBSource(port=tws.port, base_delay_s=0.05, connect_timeout_s=5, identical_gap_s=0.3, pacing_backoff_s=0.3, **overrides)


def _expected(symbol: str, day: dt.date) -> pd.DataFrame:
    bars = simulate_day(7, symbol, day).bars.drop_duplicates("ts")
    return bars[(bars[["open", "high", "low", "close"]] > 0).all(axis=1) & (bars["high"] >= bars["low"])]


def test_strict_policy_pages_a_multi_day_1_min_range_into_one_day_requests(tws):
    assert [p.duration for p in page_days(DAYS, "1 min")] == ["1 D"] * 3
    assert [p.days for p in page_days(DAYS + [dt.date(2024, 12, 9)], "5 mins")] == [tuple(DAYS), (dt.date(2024, 12, 9),)]
    result = _source(tws, pacing_policy="strict").fetch_bars(["AAPL"], DAYS)
    requests = tws.historical_requests()
    assert sorted((r.fields[15], r.fields[16], r.fields[17], r.fields[19]) for r in requests) == [
        (f"{day:%Y%m%d} 23:59:59 US/Eastern", "1 min", "1 D", "TRADES") for day in DAYS
    ]
    for day in DAYS:
        bars = result.bars[("AAPL", day)]
        assert list(bars["ts"]) == list(_expected("AAPL", day)["ts"])  # every bar, once


def test_pacing_limiter_never_breaks_the_rules_in_a_burst_of_100():
    now = [0.0]
    limiter = PacingLimiter(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    symbols = ["AAPL", "MSFT", "NVDA", "SPY"]
    for i in range(100):
        limiter.acquire(HistoricalRequest(symbols[i % 4], "SMART", "TRADES", f"2024120{i % 7} 23:59:59", "1 D", "1 min"))
    times = [t for t, _ in limiter.sent]
    assert len(times) == 100 and times == sorted(times)
    for i, t in enumerate(times):  # at most 60 in any 600 s window
        assert sum(1 for u in times if t - 600 < u <= t) <= 60, i
    for symbol in symbols:  # at most 6 per contract in any 2 s
        mine = [t for t, r in limiter.sent if r.symbol == symbol]
        assert all(sum(1 for u in mine if t - 2 < u <= t) <= 6 for t in mine)
    seen: dict = {}
    for t, request in limiter.sent:  # no identical request within 15 s
        assert request not in seen or t - seen[request] >= 15
        seen[request] = t
    assert times[60] >= 600  # the 61st request had to wait for the window


def test_pacing_error_backs_off_and_retries(tws):
    tws.script = ["pacing", "pacing366"]
    result = _source(tws).fetch_bars(["MSFT"], DAYS[:1])
    assert result.pacing_retries == 2 and not result.errors
    assert len(result.bars[("MSFT", DAYS[0])]) == len(_expected("MSFT", DAYS[0]))
    assert len(tws.historical_requests()) == 3
    times = [r.at for r in tws.historical_requests()]
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.3  # the identical-request gap held


def test_no_data_days_are_empty_not_errors(tws):
    tws.no_data_days = {("NVDA", DAYS[1])}
    result = _source(tws).fetch_bars(["NVDA"], DAYS)
    assert result.empty_days == [("NVDA", DAYS[1])] and not result.errors
    assert set(result.bars) == {("NVDA", DAYS[0]), ("NVDA", DAYS[2])}


def test_a_request_without_answer_is_retried_not_recorded_as_no_data(tws):
    # ib_async cancels a request after its timeout and returns [] like an empty answer: only IB's 162 "no data" is empty
    tws.script = ["silent"]
    result = _source(tws, request_timeout_s=0.3).fetch_bars(["AAPL"], DAYS)
    assert not result.empty_days and not result.errors
    assert len(tws.historical_requests()) == 2 and result.timeouts == 1  # the 3-day page, once more
    for day in DAYS:
        assert list(result.bars[("AAPL", day)]["ts"]) == list(_expected("AAPL", day)["ts"])


def test_a_request_never_answered_fails_its_symbol_not_no_data(tws):
    tws.script = ["silent"] * 3
    tws.no_data_days = {("MSFT", DAYS[0])}
    result = _source(tws, request_timeout_s=0.3, max_retries=1, max_page_days=1, start_concurrent_requests=1).fetch_bars(["AAPL"], DAYS[:2])
    assert not result.empty_days and "no answer in time" in result.errors.get("AAPL", "")
    assert not result.bars  # a failed symbol keeps no days: the answered day's bars go too
    assert result.timeouts == 3  # one day's page unanswered twice, the other's once
    result = _source(tws, request_timeout_s=0.3).fetch_bars(["MSFT"], DAYS[:1])  # a real "no data" is still an empty day
    assert result.empty_days == [("MSFT", DAYS[0])] and not result.errors and not result.timeouts


def test_raw_bars_ib_fails_when_ib_never_answers(tws, tmp_path, monkeypatch):
    import functools

    import resources.build
    from definitions import build_definitions
    from resources.settings import load_settings

    monkeypatch.setattr(resources.build, "IBSource", functools.partial(IBSource, request_timeout_s=0.3, max_retries=1, base_delay_s=0.05))
    tws.script = ["silent"] * 2
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        report = run_backfill(instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-02"), defs=build_definitions(settings),
                              add_missing_symbols=True, asset_selection=["raw_bars_ib"])
        assert not report.success  # before: green, rows 0, "days_without_data: AAPL@2024-12-02"
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_bars_ib")) is None
        assert "no answer in time" in " ".join(str(r.error) for r in report.runs)


def test_an_unknown_symbol_fails_alone(tws):
    result = _source(tws).fetch_bars(["AAPL", "ZZZZ"], DAYS[:1])
    assert "ZZZZ" in result.errors and "error 200" in result.errors["ZZZZ"]
    assert set(result.bars) == {("AAPL", DAYS[0])}


@pytest.mark.parametrize("policy", [{"pacing_policy": "strict"}, {"max_page_days": 1, "max_concurrent_requests": 1, "start_concurrent_requests": 1}])
def test_a_dropped_connection_mid_backfill_resumes_without_duplicates_or_gaps(tws, policy):
    tws.script = ["", "drop"]  # the second historical request loses the connection
    result = _source(tws, max_parallel_requests=1, **policy).fetch_bars(["SPY"], DAYS)
    assert result.reconnects >= 1 and not result.errors
    for day in DAYS:
        bars = result.bars[("SPY", day)]
        assert list(bars["ts"]) == list(_expected("SPY", day)["ts"])
    assert sum(len(v) for v in result.bars.values()) == sum(len(_expected("SPY", d)) for d in DAYS)


def test_raw_bars_ib_asset_feeds_curated_bars(tws, tmp_path):
    from definitions import build_definitions
    from resources.settings import load_settings

    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(settings)
        assert defs.resolve_assets_def("raw_bars_ib").op.pool == "ib"
        report = run_backfill(instance, plan_backfill(["AAPL", "ZZZZ"], "2024-12-02", "2024-12-03"), defs=defs,
                              add_missing_symbols=True, asset_selection=["raw_bars_ib", "curated_bars"])
        assert report.success, [r.error for r in report.runs]
        lake = defs.resources["lake"]
        stored = lake.read_latest_batch(raw_bars_table("ib"), "AAPL", DAYS[0])
        assert set(stored["source"]) == {"ib"} and len(stored) == len(_expected("AAPL", DAYS[0]))
        curated = lake.read(CURATED_BARS, ["AAPL"], [DAYS[0]])
        assert len(curated) == 390 and set(curated["source"]) == {"ib"}
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_bars_ib"))
        assert "ZZZZ: IB:" in event.asset_materialization.metadata["symbols_failed"].value  # this date's own failed symbols
        key = dg.AssetCheckKey(dg.AssetKey("raw_bars_ib"), "symbols_complete")  # each date says which symbol is missing, and why
        evaluations = {r.evaluation.partition: r.evaluation for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
                       if r.evaluation and r.evaluation.partition}  # (and the run's summary, without a partition)
        assert set(evaluations) == {"2024-12-02", "2024-12-03"}
        for evaluation in evaluations.values():
            missing = evaluation.metadata["missing"].value
            assert not evaluation.passed and "ZZZZ (failed: IB:" in missing and "AAPL" not in missing


def _depth_script() -> list[tuple]:
    """(position, operation, side, price, size): build 10 bid and 10 ask rows, then churn."""
    script = []
    for level in range(10):
        script.append((level, 0, 1, round(100.0 - 0.01 * (level + 1), 2), 100 + level))
        script.append((level, 0, 0, round(100.0 + 0.01 * (level + 1), 2), 200 + level))
    script += [(0, 1, 1, 99.995, 150), (3, 2, 0, 0.0, 0), (9, 2, 1, 0.0, 0), (3, 0, 0, 100.045, 333), (1, 1, 0, 100.025, 10)]
    return script


def _capture(tws, tmp_path, duration, reconnects=0, **options):
    import asyncio
    import json

    from platform_assets.ingestion.depth_capture import record_depth
    from resources.l2_store import L2SnapshotStore

    store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)
    stats = asyncio.run(record_depth(_source(tws), store, "AAPL", interval_s=0.02, rotate_s=3600, flush_s=0.1, duration_s=duration, reconnects=reconnects,
                                    **options))
    folder = tmp_path / "level2" / "AAPL"
    snapshots = sorted(folder.glob("*_snapshots_*.parquet"))
    messages = [m for path in sorted(folder.glob("*_messages_*.json")) for m in json.loads(path.read_text())]
    return stats, store, snapshots, messages, sorted(folder.glob("session_stats_*.json"))


def test_live_depth_capture_book_matches_the_message_sequence(tws, tmp_path):
    from platform_assets.ingestion.depth_capture import replay
    from resources.schemas import L2Book
    import pyarrow.parquet as pq

    tws.depth_script = _depth_script()
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=1.0)
    assert stats.end_reason == "duration" and len(snapshots) == 1 and len(stats_files) == 1
    assert len(messages) == len(tws.depth_script) == stats.messages
    assert {m["operation"] for m in messages} == {"add", "update", "remove"} and {m["side"] for m in messages} == {"bid", "ask"}
    assert snapshots[0].name.startswith(pd.Timestamp.now(tz="America/New_York").strftime("%Y-%m-%d_snapshots_"))
    book = L2Book.from_arrow(pq.read_table(snapshots[0]))
    assert len(book) == stats.snapshots > 10
    expected = replay(messages).arrays()
    for got, want in zip((book.bid_prices[-1], book.bid_sizes[-1], book.ask_prices[-1], book.ask_sizes[-1]), expected):
        assert list(got) == list(want)
    assert book.bid_prices[-1][9] == 0 and book.ask_prices[-1][3] == 100.045  # a deleted row is zeros, a re-inserted one is back


def test_live_depth_capture_keeps_everything_recorded_when_the_connection_drops(tws, tmp_path):
    from platform_assets.ingestion.depth_capture import replay
    from resources.schemas import L2Book
    import json
    import pyarrow.parquet as pq

    tws.depth_script = _depth_script()
    tws.drop_depth_after = 12
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=5.0)
    assert stats.end_reason == "disconnected" and len(messages) == 12
    book = L2Book.from_arrow(pq.read_table(snapshots[0]))
    assert len(book) == stats.snapshots >= 1
    expected = replay(messages).arrays()
    assert list(book.bid_prices[-1]) == list(expected[0]) and list(book.ask_sizes[-1]) == list(expected[3])
    assert json.loads(stats_files[0].read_text())["end_reason"] == "disconnected"


def test_depth_capture_job_from_dagster(tws, tmp_path):
    from definitions import build_definitions
    from resources.settings import load_settings

    tws.depth_script = _depth_script()
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = build_definitions(settings).resolve_job_def("record_depth_job")
        config = {"ops": {"record_depth_op": {"config": {"symbol": "AAPL", "duration_s": 0.6, "interval_s": 0.05}}}}
        assert job.execute_in_process(run_config=config, instance=instance).success
    folder = settings.level2_path / "AAPL"
    assert len(list(folder.glob("*_snapshots_*.parquet"))) == 1 and len(list(folder.glob("*_messages_*.json"))) == 1
    assert len(list(folder.glob("session_stats_*.json"))) == 1


def test_record_depth_command_stops_cleanly_on_sigint(tws, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import time

    tws.depth_script = _depth_script()
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "IB_PORT": str(tws.port), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen(
        [sys.executable, "-m", "platform_api.cli", "record-depth", "--symbol", "AAPL", "--interval", "0.05", "--flush-seconds", "60"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    folder = tmp_path / "data" / "level2" / "AAPL"
    deadline = time.monotonic() + 30
    while not any(r.msg_id == 10 for r in tws.requests) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the script is replayed and snapshots are taken; nothing is flushed yet (flush every 60 s)
    assert not list(folder.glob("*_snapshots_*.parquet"))
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out
    assert len(list(folder.glob("*_snapshots_*.parquet"))) == 1  # written on the way out
    stats = json.loads(next(folder.glob("session_stats_*.json")).read_text())
    assert stats["end_reason"] == "stopped" and stats["messages"] == len(tws.depth_script) and stats["snapshots"] > 5


def test_live_depth_capture_reconnects_and_resubscribes_after_a_drop(tws, tmp_path):
    from platform_assets.ingestion.depth_capture import replay
    from resources.schemas import L2Book
    import pyarrow.parquet as pq

    tws.depth_script = _depth_script()
    tws.drop_depth_after, tws.drop_once = 12, True
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=1.5, reconnects=2)
    assert stats.end_reason == "duration" and stats.reconnects == 1
    assert len(messages) == 12 + len(tws.depth_script)  # everything before and after the drop is kept
    assert sum(1 for r in tws.requests if r.msg_id == 10) == 2  # subscribed twice
    book = L2Book.from_arrow(pq.read_table(snapshots[0]))
    after_drop = replay(messages[12:]).arrays()  # the book restarts from the full re-send
    assert list(book.bid_prices[-1]) == list(after_drop[0]) and list(book.ask_sizes[-1]) == list(after_drop[3])


def test_live_depth_reconnect_budget_counts_drops_in_a_row_not_a_whole_day(tws, tmp_path, monkeypatch):
    """``reconnects`` bounds the drops in a row: a drop long after the last reconnect (a nightly
    gateway restart, a blip hours later) starts a new count instead of ending the day's capture."""
    from platform_assets.ingestion import depth_capture

    tws.depth_script = _depth_script()
    tws.drop_depth_after, tws.drop_once = 12, False  # every subscription drops after 12 messages
    stats, *_ = _capture(tws, tmp_path / "in_a_row", duration=3.0, reconnects=2)
    assert stats.end_reason == "disconnected" and stats.reconnects == 2  # a third drop in a row ends it
    monkeypatch.setattr(depth_capture, "RECONNECT_STREAK_S", 0.0)  # every drop comes after a stable spell
    stats, *_ = _capture(tws, tmp_path / "spread_out", duration=3.0, reconnects=2)
    assert stats.end_reason == "duration" and stats.reconnects > 2


def test_a_second_depth_recording_of_the_same_symbol_is_refused(tws, tmp_path):
    """Two recorders of one symbol at once wrote over each other's files (same names when started in
    the same second); the second now fails at once naming the first, which records on unharmed."""
    import asyncio

    from platform_assets.ingestion.depth_capture import RecorderBusyError, record_depth
    from resources.l2_store import L2SnapshotStore

    tws.depth_script = _depth_script()
    store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)

    async def both():
        first = asyncio.create_task(record_depth(_source(tws), store, "AAPL", interval_s=0.02, flush_s=0.1, duration_s=1.0))
        await asyncio.sleep(0.3)
        with pytest.raises(RecorderBusyError, match="another depth recording of this symbol"):
            await record_depth(_source(tws), store, "AAPL", interval_s=0.02, flush_s=0.1, duration_s=1.0)
        other = await record_depth(_source(tws), store, "MSFT", interval_s=0.02, flush_s=0.1, duration_s=0.3)  # another symbol: fine
        return await first, other

    first, other = asyncio.run(both())
    assert first.end_reason == "duration" and first.snapshots > 0 and other.end_reason == "duration"
    again = asyncio.run(record_depth(_source(tws), store, "AAPL", interval_s=0.02, flush_s=0.1, duration_s=0.2))  # released
    assert again.end_reason == "duration"


def _snapshot_times(snapshots) -> pd.DatetimeIndex:
    from resources.schemas import L2Book
    import pyarrow.parquet as pq

    return pd.DatetimeIndex(np.concatenate([L2Book.from_arrow(pq.read_table(path)).timestamp for path in snapshots])).tz_localize("UTC")


def _gaps(stats_files) -> list[dict]:
    import json

    return json.loads(stats_files[0].read_text()).get("gaps", [])


def test_live_depth_writes_a_gap_not_a_frozen_book_while_ib_data_is_down(tws, tmp_path):
    tws.depth_script = _depth_script()
    tws.depth_events = [  # the socket stays up, depth stops, then IB says it is back
        ("error", 1100, "Connectivity between IB and Trader Workstation has been lost."),
        ("error", 2103, "Market data farm connection is broken:usfarm"), ("pause", 0.6),
        ("error", 1102, "Connectivity between IB and Trader Workstation has been restored - data maintained."),
    ]
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=1.8)
    down, back = tws.depth_event_times[0], tws.depth_event_times[-1]
    times = _snapshot_times(snapshots)
    assert not ((times > down + pd.Timedelta("200ms")) & (times < back)).any()  # before: a snapshot of the frozen book every 20 ms
    assert (times > back).any()  # recording goes on after the outage
    assert sum(1 for r in tws.requests if r.msg_id == 10) == 2 and len(messages) == 2 * len(tws.depth_script)  # the book re-sent in full
    [gap] = _gaps(stats_files)
    assert "1100" in gap["reason"] and "2103" in gap["reason"] and gap["resumed"]
    start, end = pd.Timestamp(gap["start"]), pd.Timestamp(gap["end"])
    assert start <= down + pd.Timedelta("200ms") and end >= back and not ((times > start) & (times < end)).any()


def test_live_depth_watchdog_stops_snapshots_when_depth_updates_stop(tws, tmp_path):
    tws.depth_script = _depth_script()  # ~0.25 s of updates, then silence with the socket up
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=1.5, stale_s=0.3)
    [gap] = _gaps(stats_files)
    assert gap["reason"] == "no depth update for 0.3 s" and not gap["resumed"] and gap["end"] == stats.ended_at
    last_update = pd.Timestamp(messages[-1]["timestamp"])
    assert pd.Timestamp(gap["start"]) - last_update < pd.Timedelta("1s")
    assert _snapshot_times(snapshots).max() <= pd.Timestamp(gap["start"])


def test_live_depth_records_the_gap_of_a_dropped_connection(tws, tmp_path):
    tws.depth_script = _depth_script()
    tws.drop_depth_after, tws.drop_once = 12, True
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=1.5, reconnects=2)
    [gap] = _gaps(stats_files)  # before: only "reconnects": 1
    assert gap["reason"] == "connection to TWS/IB Gateway lost" and gap["resumed"]
    start, end = pd.Timestamp(gap["start"]), pd.Timestamp(gap["end"])
    assert pd.Timestamp(messages[11]["timestamp"]) <= start < end == pd.Timestamp(messages[12]["timestamp"])  # until the re-sent book
    times = _snapshot_times(snapshots)
    assert not ((times > start) & (times < end)).any() and (times >= end).any()


@pytest.mark.parametrize(("code", "message"), [(354, "Requested market data is not subscribed."),
                                             (10092, "Deep market data is not supported for this combination of security/exchange")])
def test_live_depth_refused_by_ib_ends_the_session_with_the_reason(tws, tmp_path, code, message):
    """No market-data permission: IB answers the depth request with an error and sends nothing.
    The session used to run on silently ("0 snapshots ... (duration)", exit 0, a green op)."""
    import time

    tws.depth_script = _depth_script()
    tws.depth_errors = {"AAPL": (code, message)}
    started = time.monotonic()
    stats, store, snapshots, messages, stats_files = _capture(tws, tmp_path, duration=20.0)
    assert time.monotonic() - started < 10  # at once, not at the end of the duration
    assert stats.end_reason == f"depth refused: IB error {code}: {message}" and stats.snapshots == 0 and not snapshots
    assert json.loads(stats_files[0].read_text())["end_reason"] == stats.end_reason


def test_record_depth_command_exits_non_zero_when_ib_refuses_depth(tws, tmp_path):
    import os
    import subprocess

    tws.depth_errors = {"AAPL": (354, "Requested market data is not subscribed.")}
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "IB_PORT": str(tws.port), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    child = subprocess.run(
        [sys.executable, "-m", "platform_api.cli", "record-depth", "--symbol", "AAPL", "--interval", "0.05", "--duration", "30"],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == 1, child.stdout + child.stderr
    assert "FAILED: depth refused: IB error 354: Requested market data is not subscribed." in child.stdout


def test_recorder_commands_name_an_unreachable_gateway_in_one_line(tmp_path):
    """After the connect retries (~1 min of backoff), one FAILED line and exit 1, no traceback."""
    import os
    import socket
    import subprocess

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "IB_PORT": str(port), "LAKE_FSYNC": "false", "PYTHONWARNINGS": "ignore"}
    children = [  # both at once: the backoff is the same wait
        subprocess.Popen([sys.executable, "-m", "platform_api.cli", *command, "--duration", "5"], cwd=Path(__file__).resolve().parent.parent,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in (["record-depth", "--symbol", "AAPL"], ["record-bars", "--symbols", "AAPL"])
    ]
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 1, out + err
        assert "FAILED: " in out and "Traceback" not in out + err, out + err


def test_depth_capture_job_fails_when_ib_refuses_depth(tws, tmp_path):
    from definitions import build_definitions
    from resources.settings import load_settings

    tws.depth_errors = {"AAPL": (354, "Requested market data is not subscribed.")}
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = build_definitions(settings).resolve_job_def("record_depth_job")
        config = {"ops": {"record_depth_op": {"config": {"symbol": "AAPL", "duration_s": 30, "interval_s": 0.05}}}}
        result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "IB error 354" in failure.event_specific_data.error.message


def test_raw_bars_ib_with_every_symbol_failed_or_ib_unreachable_judges_its_dates_so_they_are_retried(tws, tmp_path, monkeypatch):
    """Every symbol unknown to IB, or no gateway listening: the run fails and each date's
    ``symbols_complete`` fails at ERROR naming the symbols and why, so the daily schedule retries
    the date. Both used to raise before any verdict: the date stayed unjudged (PLANNED), a failing
    retry even replaced an earlier ERROR verdict, and the schedule never re-ran the date."""
    import functools
    import socket

    import resources.build
    from definitions import build_definitions
    from platform_assets.automation.schedules import sessions_to_retry
    from resources.settings import load_settings

    def verdict(instance, day):
        key = dg.AssetCheckKey(dg.AssetKey("raw_bars_ib"), "symbols_complete")
        return next(r.evaluation for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
                    if r.evaluation is not None and r.evaluation.partition == day)

    monkeypatch.setattr(resources.build, "IBSource", functools.partial(IBSource, max_retries=1, base_delay_s=0.05, connect_timeout_s=2))
    tws.known_symbols = {"SPY"}
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(settings)
        report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-02"), defs=defs,
                              add_missing_symbols=True, asset_selection=["raw_bars_ib"])
        assert not report.success and "error 200" in report.runs[0].error
        first = verdict(instance, "2024-12-02")
        assert not first.passed and first.severity == dg.AssetCheckSeverity.ERROR
        assert "AAPL (failed: IB:" in first.metadata["missing"].value and "MSFT (failed: IB:" in first.metadata["missing"].value
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        unreachable = build_definitions(load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(closed)))
        report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-03", "2024-12-03"), defs=unreachable, asset_selection=["raw_bars_ib"])
        assert not report.success and "cannot connect to TWS/IB Gateway" in report.runs[0].error
        second = verdict(instance, "2024-12-03")
        assert not second.passed and second.severity == dg.AssetCheckSeverity.ERROR and "cannot connect" in second.metadata["missing"].value
        graph = defs.resolve_asset_graph()
        selection = [dg.AssetKey("raw_bars_ib")]
        assert list(sessions_to_retry(instance, graph, selection, DAYS)) == DAYS[:2]
        tws.known_symbols = {"AAPL", "MSFT"}
        assert run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-03"), defs=defs, asset_selection=["raw_bars_ib"]).success
        assert verdict(instance, "2024-12-02").passed and verdict(instance, "2024-12-03").passed
