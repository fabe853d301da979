"""A run during the session builds the minutes that have ended, never the ones still to come.

The offline source delivers, like a vendor, only the bars whose minute has ended; curation, the L2
features and crypto curation used to lay out the whole session anyway, so a noon run invented the
afternoon as 239 ``feed_gap`` minutes (forward-filled close), failed DQ on them and built no
features for the day. The wall clock is moved with ``resources.clock.utc_now`` (the one clock the
offline source and the steps share); everything else is real: the graph, the lake, Dagster.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from platform_api.backfill import plan_backfill, run_backfill
from platform_assets.calendars import CRYPTO, STOCKS, elapsed_session_minutes, session_minutes
from resources import clock
from resources.lake import CURATED_BARS, feature_table, labels_table

DAY = dt.date(2024, 12, 9)  # a Monday: 14:30-21:00 UTC
NOON = pd.Timestamp("2024-12-09T17:00:00Z")  # 12:00 New York
EVENING = pd.Timestamp("2024-12-09T22:00:00Z")


def test_elapsed_minutes_are_the_bars_that_have_ended():
    full = session_minutes(STOCKS, DAY)
    assert elapsed_session_minutes(STOCKS, DAY, now=EVENING).equals(full)
    assert len(elapsed_session_minutes(STOCKS, DAY, now=pd.Timestamp("2024-12-09T14:00:00Z"))) == 0
    at_noon = elapsed_session_minutes(STOCKS, DAY, now=NOON)
    assert len(at_noon) == 150 and at_noon[-1] == pd.Timestamp("2024-12-09T16:59:00Z")
    assert len(elapsed_session_minutes(STOCKS, DAY, now=NOON + pd.Timedelta(seconds=59))) == 150  # 16:59's bar ends at 17:00
    assert len(elapsed_session_minutes(CRYPTO, DAY, now=NOON)) == 17 * 60


def test_a_noon_run_curates_the_morning_and_the_evening_run_the_whole_session(platform, monkeypatch):
    monkeypatch.setattr(clock, "utc_now", lambda: NOON)
    report = run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs, add_missing_symbols=True)
    assert report.complete, report.failures()
    lake = platform.defs.resources["lake"]
    curated = lake.read(CURATED_BARS, ["AAPL"], [DAY])
    assert len(curated) == 150 and pd.DatetimeIndex(curated["ts"]).max() == pd.Timestamp("2024-12-09T16:59:00Z")
    assert not (pd.DatetimeIndex(curated["ts"]) + pd.Timedelta(minutes=1) > NOON).any(), "no minute still to come"
    assert (curated["gap_type"] == "feed_gap").sum() < 30, curated["gap_type"].value_counts()  # the sim's own faults only
    for table in (feature_table("bar_features", "v1"), feature_table("l2_features", "v1"), labels_table("v1")):
        assert len(lake.read(table, ["AAPL"], [DAY])) == 150, table
    labels = lake.read(labels_table("v1"), ["AAPL"], [DAY]).sort_values("ts")
    assert not labels["valid_15"].tail(15).any(), "a horizon past the minutes so far is never a label"
    morning = curated.set_index("ts")[["close", "volume", "is_imputed", "gap_type"]]

    monkeypatch.setattr(clock, "utc_now", lambda: EVENING)  # after the close: the whole session
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs).complete
    full = lake.read(CURATED_BARS, ["AAPL"], [DAY])
    assert len(full) == 390 and len(lake.read(labels_table("v1"), ["AAPL"], [DAY])) == 390
    same_minutes = full.set_index("ts").loc[morning.index, morning.columns]
    pd.testing.assert_frame_equal(same_minutes, morning)  # the morning is what it was at noon (as-of gap types)
