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
