import datetime as dt

import numpy as np
import pandas as pd

from platform_assets.calendars import STOCKS, session_minutes
from resources.sim_market import FaultRates, simulate_day

DAY = dt.date(2024, 3, 12)


def test_deterministic_for_a_seed():
    a, b = simulate_day(3, "AAPL", DAY), simulate_day(3, "AAPL", DAY)
    pd.testing.assert_frame_equal(a.bars, b.bars)
    np.testing.assert_array_equal(a.book.bid_prices, b.book.bid_prices)
    c = simulate_day(4, "AAPL", DAY)
    assert not a.bars["close"].equals(c.bars["close"])


def test_clean_bars_are_consistent_and_u_shaped():
    day = simulate_day(1, "MSFT", DAY, rates=FaultRates.none())
    bars = day.bars
    assert len(bars) == 390 and day.faults.empty
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    volumes = [simulate_day(s, "MSFT", DAY, rates=FaultRates.none()).bars["volume"].to_numpy() for s in range(10)]
    volume = np.mean(volumes, axis=0)
    assert volume[:30].mean() > 1.5 * volume[180:210].mean()
    assert volume[-30:].mean() > 1.5 * volume[180:210].mean()


def test_book_follows_the_price_and_has_ten_levels():
    day = simulate_day(1, "MSFT", DAY, rates=FaultRates.none())
    book = day.book
    assert book.bid_prices.shape == (780, 10)
    assert (book.bid_prices[:, 0] < book.ask_prices[:, 0]).all()
    assert (np.diff(book.bid_prices, axis=1) < 0).all() and (np.diff(book.ask_prices, axis=1) > 0).all()
    mid = (book.bid_prices[1::2, 0] + book.ask_prices[1::2, 0]) / 2
    assert np.max(np.abs(mid / day.bars["close"].to_numpy() - 1)) < 0.01


def test_faults_are_where_the_fault_list_says():
    rates = FaultRates(halt_prob=1.0, feed_gap_prob=1.0, bad_tick_prob=1.0, duplicate_prob=1.0, crossed_book_prob=1.0)
    day = simulate_day(11, "NVDA", DAY, rates=rates)
    kinds = set(day.faults["kind"])
    assert {"halt", "feed_gap", "bad_tick", "duplicate", "crossed_book"} <= kinds
    bar_ts = set(day.bars["ts"])
    book_ts = pd.DatetimeIndex(day.book.timestamp).tz_localize("UTC")
    for fault in day.faults.itertuples():
        window = pd.date_range(fault.start_ts, fault.end_ts, freq="1min", inclusive="left")
        in_window = (book_ts >= fault.start_ts) & (book_ts < fault.end_ts)
        if fault.kind in ("halt", "feed_gap", "no_trade"):
            assert not bar_ts & set(window), fault
        if fault.kind == "feed_gap":
            assert not in_window.any()
        if fault.kind == "halt":
            frozen = day.book.bid_sizes[in_window]
            assert len(frozen) and (frozen == frozen[0]).all()
        if fault.kind == "duplicate":
            assert (day.bars["ts"] == fault.start_ts).sum() == 2
        if fault.kind == "crossed_book":
            row = np.flatnonzero(book_ts == fault.start_ts)[0]
            assert day.book.bid_prices[row, 0] > day.book.ask_prices[row, 0]
    assert len(session_minutes(STOCKS, DAY)) == 390


def test_the_offline_source_never_delivers_what_has_not_happened(monkeypatch):
    """Like a vendor, the simulator hands out only bars whose minute has ended, snapshots taken and
    faults begun by the time of the request; a finished session comes back whole."""
    import pandas as pd

    from platform_assets.calendars import STOCKS, session_bounds
    from resources import offline_source
    from resources.offline_source import OfflineSource, as_of

    day = dt.date(2024, 12, 2)
    whole = OfflineSource().day("AAPL", day)  # long past: unchanged
    opening, close = session_bounds(STOCKS, day)
    assert len(whole.bars) > 300 and whole.bars["ts"].max() + pd.Timedelta(minutes=1) <= close
    for now in (opening - pd.Timedelta(hours=3), opening + pd.Timedelta(minutes=90, seconds=30), close - pd.Timedelta(minutes=1), close):
        part = as_of(whole, now)
        assert (part.bars["ts"] + pd.Timedelta(minutes=1) <= now).all() and (pd.to_datetime(part.book.timestamp).tz_localize("UTC") <= now).all()
        assert len(part.bars) == int((whole.bars["ts"] + pd.Timedelta(minutes=1) <= now).sum())  # nothing else dropped
        assert len(part.faults) == int((pd.to_datetime(whole.faults["start_ts"], utc=True) < now).sum())
    before_open = as_of(whole, opening - pd.Timedelta(seconds=1))
    assert len(before_open.bars) == 0 and len(before_open.book) == 0 and len(before_open.faults) == 0
    assert as_of(whole, close) is whole  # complete: the same object
    monkeypatch.setattr(offline_source, "_now", lambda: opening + pd.Timedelta(minutes=30, seconds=5))  # the resource asks the clock
    assert len(OfflineSource().day("AAPL", day).bars) == int((whole.bars["ts"] < opening + pd.Timedelta(minutes=29, seconds=6)).sum())


def test_simulated_sessions_are_those_of_earlier_releases():
    """The simulator builds its bars from arrays (duplicates inserted by a stable sort of row
    numbers, faults framed only when read): its sessions must stay those stored before, bar for bar
    (hashes computed by the session-16 code, which concatenated and sorted frames)."""
    from resources.lake import content_hash

    for day, bars_hash, faults_hash in (("2024-03-04", "69fac0549257f470", "44a6e64e81177ad5"), ("2024-03-13", "934ed699c4dee02d", "707ad9a73a1eb728")):
        sim = simulate_day(9, "AAPL", dt.date.fromisoformat(day))
        assert (sim.faults["kind"] == "duplicate").any()
        assert content_hash(sim.bars) == bars_hash
        assert content_hash(sim.faults.astype(str)) == faults_hash
        assert sim.bars.index.equals(pd.RangeIndex(len(sim.bars))) and sim.bars["ts"].is_monotonic_increasing
