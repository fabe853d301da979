import datetime as dt

import numpy as np
import pandas as pd
import pytest

from platform_assets.calendars import STOCKS, session_minutes
from platform_assets.curation.assets import book_activity
from platform_assets.curation.gap_engine import ImputationPolicy, curate_bars, l2_minute_activity
from resources.sim_market import FaultRates, simulate_day

HALF_DAY = dt.date(2024, 11, 29)
DST_DAY = dt.date(2024, 3, 11)


def _bars(timeline, drop=(), **overrides):
    n = len(timeline)
    close = 100 + np.arange(n) * 0.01
    frame = pd.DataFrame(
        {"ts": timeline, "open": close - 0.01, "high": close + 0.02, "low": close - 0.02, "close": close,
         "volume": np.full(n, 1000), "vwap": close, "trade_count": np.full(n, 10)}
    )
    for column, changes in overrides.items():
        for index, value in changes.items():
            frame.loc[index, column] = value
    return frame.drop(index=list(drop)).reset_index(drop=True)


def _activity(timeline, l2_minutes, frozen_minutes=()):
    """Two snapshots per given minute; frozen minutes repeat the previous book exactly."""
    stamps, tops, level = [], [], 100.0
    for minute in sorted(l2_minutes):
        for offset in (0, 30):
            stamps.append(timeline[minute] + pd.Timedelta(seconds=offset))
            if minute not in frozen_minutes:
                level += 0.01
            tops.append([level, level + 0.01, 100, 100])
    ts = pd.DatetimeIndex(stamps).tz_convert("UTC").tz_localize(None).to_numpy()
    return l2_minute_activity(ts, np.array(tops), timeline)


def test_half_day_timeline_and_imputation():
    timeline = session_minutes(STOCKS, HALF_DAY)
    raw = _bars(timeline, drop=[50, 51, 52])
    curated, stats, _ = curate_bars(raw, timeline, symbol="AAPL", day=HALF_DAY, source="sim")
    assert len(curated) == 210 and curated["ts"].is_unique
    assert curated["ts"].iloc[-1] == pd.Timestamp("2024-11-29 17:59", tz="UTC")
    gap = curated.iloc[50:53]
    assert gap["is_imputed"].all() and (gap["dq_status"] == "imputed").all()
    assert (gap["close"] == curated["close"].iloc[49]).all()  # close forward-filled
    assert (gap[["open", "high", "low"]].to_numpy() == curated["close"].iloc[49]).all()
    assert (gap["volume"] == 0).all() and (gap["trade_count"] == 0).all()
    assert (gap["gap_type"] == "unknown").all()  # no L2 data: cannot tell why
    assert (gap["gap_type_retrospective"] == "unknown").all()
    assert list(gap["gap_run_minutes"]) == [1, 2, 3]  # as of each minute: the run so far
    assert (gap["gap_run_minutes_total"] == 3).all()  # seen to its end
    assert stats.gap_runs == 1 and stats.max_gap_run == 3 and stats.imputed_minutes == 3
    assert not curated.drop(index=[50, 51, 52])["is_imputed"].any()


def test_dst_day_is_aligned_in_utc():
    timeline = session_minutes(STOCKS, DST_DAY)
    curated, stats, _ = curate_bars(_bars(timeline), timeline, symbol="AAPL", day=DST_DAY, source="sim")
    assert curated["ts"].iloc[0] == pd.Timestamp("2024-03-11 13:30", tz="UTC")
    assert stats.real_minutes == 390 and stats.gap_ratio == 0


def test_holiday_has_no_timeline():
    with pytest.raises(ValueError):
        session_minutes(STOCKS, dt.date(2024, 7, 4))


def test_invalid_rows_duplicates_and_off_session_are_counted_not_kept():
    timeline = session_minutes(STOCKS, DST_DAY)
    raw = _bars(timeline, close={10: 0.0}, high={20: 90.0}, volume={30: -5})
    extra = raw.iloc[[40, 40]].copy()
    off = raw.iloc[[0]].assign(ts=timeline[0] - pd.Timedelta(minutes=5))
    raw = pd.concat([raw, extra, off], ignore_index=True)
    curated, stats, rejected = curate_bars(raw, timeline, symbol="AAPL", day=DST_DAY, source="sim")
    assert stats.invalid_rows["non_positive_price"] == 1
    assert stats.invalid_rows["high_below_low"] == 1
    assert stats.invalid_rows["negative_volume"] == 1
    assert stats.invalid_rows["off_session"] == 1
    assert stats.duplicate_rows == 2
    assert len(rejected) == 6 and set(rejected["reject_reason"]) >= {"duplicate", "off_session"}
    assert list(curated.loc[[10, 20, 30], "gap_type"]) == ["invalid"] * 3
    assert list(curated.loc[[10, 20, 30], "gap_type_retrospective"]) == ["invalid"] * 3
    assert len(curated) == 390


def test_feed_gap_no_trade_and_halt_are_told_apart():
    timeline = session_minutes(STOCKS, DST_DAY)
    no_trade, feed_gap, halt = [100], [200, 201, 202], list(range(300, 308))
    raw = _bars(timeline, drop=no_trade + feed_gap + halt)
    l2 = [m for m in range(390) if m not in feed_gap]
    activity = _activity(timeline, l2, frozen_minutes=set(halt))
    curated, stats, _ = curate_bars(raw, timeline, symbol="AAPL", day=DST_DAY, source="sim", activity=activity)
    assert curated.loc[100, "gap_type"] == curated.loc[100, "gap_type_retrospective"] == "no_trade"
    assert set(curated.loc[feed_gap, "gap_type"]) == set(curated.loc[feed_gap, "gap_type_retrospective"]) == {"feed_gap"}
    assert set(curated.loc[halt, "gap_type_retrospective"]) == {"halt"}
    # as of each minute a frozen quiet run is a halt only once halt_min_minutes (5) have passed
    assert list(curated.loc[halt, "gap_type"]) == ["no_trade"] * 4 + ["halt"] * 4
    assert list(curated.loc[halt, "gap_run_minutes"]) == list(range(1, 9))
    assert stats.gap_minutes == {"no_trade": 1, "halt": 8, "feed_gap": 3, "invalid": 0, "unknown": 0}
    # A short frozen quiet run stays a no-trade run under a stricter halt policy.
    strict = ImputationPolicy(halt_min_minutes=10)
    curated, _, _ = curate_bars(raw, timeline, symbol="AAPL", day=DST_DAY, source="sim", activity=activity, policy=strict)
    assert set(curated.loc[halt, "gap_type"]) == set(curated.loc[halt, "gap_type_retrospective"]) == {"no_trade"}


def test_unknown_as_of_a_minute_means_no_l2_so_far():
    timeline = session_minutes(STOCKS, DST_DAY)
    raw = _bars(timeline, drop=[10, 11, 200])
    activity = _activity(timeline, range(100, 390))  # L2 capture starts at minute 100
    curated, _, _ = curate_bars(raw, timeline, symbol="AAPL", day=DST_DAY, source="sim", activity=activity)
    assert list(curated.loc[[10, 11], "gap_type"]) == ["unknown"] * 2  # nothing known about the book yet
    assert list(curated.loc[[10, 11], "gap_type_retrospective"]) == ["feed_gap"] * 2
    assert curated.loc[200, "gap_type"] == curated.loc[200, "gap_type_retrospective"] == "no_trade"


def test_leading_gap_is_not_back_filled():
    timeline = session_minutes(STOCKS, DST_DAY)
    curated, stats, _ = curate_bars(_bars(timeline, drop=[0, 1]), timeline, symbol="AAPL", day=DST_DAY, source="sim")
    assert curated.loc[[0, 1], "close"].isna().all()
    assert (curated.loc[[0, 1], "dq_status"] == "missing").all()
    assert curated.loc[[0, 1], "is_imputed"].all()  # no real bar there: never taken for one
    assert stats.missing_minutes == 2


def test_simulated_faults_land_in_the_right_gap_type():
    rates = FaultRates(halt_prob=1.0, feed_gap_prob=1.0, bad_tick_prob=1.0, duplicate_prob=1.0)
    checked = set()
    for seed in range(6):
        sim = simulate_day(seed, "AAPL", DST_DAY, rates=rates)
        timeline = session_minutes(STOCKS, DST_DAY)
        curated, stats, _ = curate_bars(sim.bars, timeline, symbol="AAPL", day=DST_DAY, source="sim", activity=book_activity(sim.book, timeline))
        by_ts = curated.set_index("ts")["gap_type_retrospective"]
        expected = {"halt": "halt", "feed_gap": "feed_gap", "no_trade": "no_trade", "bad_tick": "invalid"}
        for fault in sim.faults.itertuples():
            if fault.kind in expected:
                window = pd.date_range(fault.start_ts, fault.end_ts, freq="1min", inclusive="left")
                assert set(by_ts.loc[window]) == {expected[fault.kind]}, (seed, fault)
                checked.add(fault.kind)
        assert stats.duplicate_rows == (sim.faults["kind"] == "duplicate").sum()
    assert checked == {"halt", "feed_gap", "no_trade", "bad_tick"}


def test_last_real_close_is_the_latest_ok_bar_whatever_the_row_order():
    from platform_assets.curation.assets import last_real_close

    bars = pd.DataFrame({
        "ts": pd.to_datetime(["2024-11-26 14:32", "2024-11-26 14:30", "2024-11-26 14:33", "2024-11-26 14:31"], utc=True),
        "close": [3.0, 1.0, 4.0, 2.0],
        "dq_status": ["ok", "ok", "imputed", "ok"],
    })
    assert last_real_close(bars) == 3.0  # 14:33 is imputed: the latest real bar is 14:32
    assert last_real_close(bars.drop(columns="dq_status")) == 4.0
    assert last_real_close(bars.assign(dq_status="missing")) is None and last_real_close(bars.iloc[:0]) is None


def test_many_sessions_at_once_equal_each_session_alone():
    """curate_sessions (one call for a symbol's sessions) gives every session exactly what
    curate_bars gives it alone: nothing (a fill, a gap run, a frozen run, L2 seen so far) carries
    over from one session into the next, and stats and rejected rows stay per session."""
    from platform_assets.calendars import sessions_in_range
    from platform_assets.curation.gap_engine import curate_sessions

    rates = FaultRates(no_trade_minute_rate=0.05, halt_prob=0.7, feed_gap_prob=0.7, bad_tick_prob=0.8, duplicate_prob=0.8)
    days = sessions_in_range(STOCKS, dt.date(2024, 11, 20), dt.date(2024, 12, 6))  # holds the half day
    rng = np.random.default_rng(7)
    raws, timelines, activities, sources = [], [], [], []
    for index, day in enumerate(days):
        sim = simulate_day(index, "AAPL", day, rates=rates)
        timeline = session_minutes(STOCKS, day)
        raw = sim.bars
        if index % 5 == 1:
            raw = raw.iloc[120:]  # starts late: no close to carry from the day before
        if index % 4 == 2:
            raw = raw.sample(frac=1.0, random_state=index)  # rows out of order
        if index % 6 == 3:
            raw = raw.iloc[:0]
        raws.append(raw)
        timelines.append(timeline)
        activities.append(None if index % 3 == 0 else book_activity(sim.book, timeline))
        sources.append("databento" if index % 2 else "sim")
    policy = ImputationPolicy(halt_min_minutes=3)
    curated, stats, rejected = curate_sessions(
        pd.concat(raws, ignore_index=True), [len(r) for r in raws], timelines,
        symbol="AAPL", days=days, sources=sources, activities=activities, policy=policy,
    )
    alone = [
        curate_bars(raw, timeline, symbol="AAPL", day=day, source=source, activity=activity, policy=policy)
        for raw, timeline, day, source, activity in zip(raws, timelines, days, sources, activities)
    ]
    pd.testing.assert_frame_equal(curated, pd.concat([a[0] for a in alone], ignore_index=True))
    assert [s.as_dict() for s in stats] == [a[1].as_dict() for a in alone]
    for mine, theirs in zip(rejected, alone):
        pd.testing.assert_frame_equal(mine, theirs[2])
    # the inputs exercise what could leak across a session boundary
    assert sum(s.missing_minutes for s in stats) > 0 and sum(s.gap_minutes["halt"] for s in stats) > 0
    assert sum(len(r) for r in rejected) > 0 and {s.expected_minutes for s in stats} == {210, 390}


def test_raw_bar_times_of_any_unit_land_on_the_same_minutes():
    timeline = session_minutes(STOCKS, DST_DAY)
    raw = _bars(timeline, drop=[7])
    micro = raw.assign(ts=raw["ts"].astype("datetime64[us, UTC]"))
    expected, stats, _ = curate_bars(raw, timeline, symbol="AAPL", day=DST_DAY, source="sim")
    curated, micro_stats, _ = curate_bars(micro, timeline, symbol="AAPL", day=DST_DAY, source="sim")
    pd.testing.assert_frame_equal(curated, expected)
    assert micro_stats.as_dict() == stats.as_dict() and stats.real_minutes == 389
