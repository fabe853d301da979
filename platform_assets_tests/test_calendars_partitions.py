import datetime as dt

import pandas as pd
import pytest

from platform_assets.calendars import STOCKS, is_session, session_minutes, sessions_in_range
from platform_assets.partitions import stock_date_partitions, trading_date_partitions


def test_partition_keys_are_exactly_the_xnys_sessions():
    keys = stock_date_partitions.get_partition_keys()
    first, last = dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
    expected = [d.isoformat() for d in sessions_in_range(STOCKS, first, last)]
    assert keys == expected
    assert "2024-11-28" not in keys  # Thanksgiving
    assert "2024-11-29" in keys  # half day
    assert "2025-01-09" not in keys  # ad-hoc closure (national day of mourning)
    assert "2024-07-06" not in keys  # Saturday


def test_full_half_and_dst_days():
    assert len(session_minutes(STOCKS, dt.date(2024, 11, 27))) == 390
    half = session_minutes(STOCKS, dt.date(2024, 11, 29))
    assert len(half) == 210
    assert half[-1] == pd.Timestamp("2024-11-29 17:59", tz="UTC")  # 12:59 ET
    # The Monday after the spring DST switch opens an hour earlier in UTC than the Friday before.
    assert session_minutes(STOCKS, dt.date(2024, 3, 8))[0] == pd.Timestamp("2024-03-08 14:30", tz="UTC")
    assert session_minutes(STOCKS, dt.date(2024, 3, 11))[0] == pd.Timestamp("2024-03-11 13:30", tz="UTC")


def test_a_session_timeline_is_the_callers_own_copy_of_the_cached_one():
    day = dt.date(2024, 11, 27)
    first = session_minutes(STOCKS, day)
    first.name = "renamed"
    first.asi8[0] = 0  # a caller writing into its timeline's values
    second = session_minutes(STOCKS, "2024-11-27")
    expected = pd.date_range(pd.Timestamp("2024-11-27 14:30", tz="UTC"), periods=390, freq="1min", name="ts")
    pd.testing.assert_index_equal(second, expected, exact=True)
    assert second.freq == expected.freq and second is not first


def test_holiday_has_no_session():
    assert not is_session(STOCKS, dt.date(2024, 12, 25))
    with pytest.raises(ValueError, match="not a XNYS trading session"):
        session_minutes(STOCKS, dt.date(2024, 12, 25))


def test_partition_definition_is_cheap_at_scale():
    # 5+ years of keys from a fresh definition (no per-key work at definition time beyond holidays).
    partitions = trading_date_partitions(STOCKS, dt.date(2020, 1, 2))
    keys = partitions.get_partition_keys()
    assert len(keys) > 5 * 250
    assert keys[0] == "2020-01-02"


def test_backfill_chunks_cut_on_month_starts_within_the_run_cap():
    """A multi-run backfill cuts its date range on the first session of a month, so each month file
    of a symbol is written by one run (no second run merging into it, concurrently with workers)."""
    from platform_api.backfill import month_aligned_chunks, plan_backfill
    from platform_assets.partitions import MAX_DATES_PER_RUN

    plan = plan_backfill(["AAPL"], "2021-01-04", "2025-12-31")
    assert [day for chunk in plan.chunks for day in chunk] == plan.dates  # every date once, in order
    assert all(0 < len(chunk) <= MAX_DATES_PER_RUN for chunk in plan.chunks)
    assert len(plan.chunks) == -(-len(plan.dates) // MAX_DATES_PER_RUN)  # no more runs than an even split
    assert all(chunk[0].day <= 4 and chunk[0].month in (1, 4, 7, 10) for chunk in plan.chunks)  # quarters
    # two chunks for two workers: the cut moves to a month start near the middle when there is one
    sessions = sessions_in_range(STOCKS, dt.date(2024, 9, 23), dt.date(2024, 11, 29))  # even cut: Oct 28
    first, second = month_aligned_chunks(sessions, 2, MAX_DATES_PER_RUN)
    assert second[0] == dt.date(2024, 11, 1) and first + second == sessions
    # none near (one month split in two): the even cut
    june = sessions_in_range(STOCKS, dt.date(2024, 6, 3), dt.date(2024, 6, 28))
    assert [len(c) for c in month_aligned_chunks(june, 2, MAX_DATES_PER_RUN)] == [10, 9]
    assert [len(c) for c in month_aligned_chunks(june, 1, 5)] == [5, 5, 5, 4]  # the cap holds


def test_a_long_lived_process_extends_its_calendar_horizon_day_by_day(monkeypatch):
    """The calendar is kept per day: a process (the UI, the preload server's workers) still running
    months later knows sessions 400 days past its new today, not past the day it started."""
    import types

    from platform_assets import calendars

    today = dt.date.today()
    assert STOCKS.calendar.last_session.date() <= today + calendars.CALENDAR_HORIZON
    later = today + dt.timedelta(days=200)
    monkeypatch.setattr(calendars, "dt", types.SimpleNamespace(date=types.SimpleNamespace(today=lambda: later), timedelta=dt.timedelta))
    assert STOCKS.calendar.last_session.date() > today + calendars.CALENDAR_HORIZON
