import datetime as dt

import numpy as np
import pandas as pd

from platform_assets.alignment.transforms import align_top_of_book
from platform_assets.calendars import STOCKS, session_minutes
from platform_assets.curation.assets import book_activity
from platform_assets.curation.gap_engine import curate_bars
from platform_assets.features.bar_features import compute_bar_features_v1, compute_bar_features_v2
from platform_assets.features.l2_features import VALUE_COLUMNS, compute_l2_features_v1, compute_l2_features_v2, crossed_snapshots
from platform_assets.features.labels import compute_labels, get_label_definition
from resources.schemas import L2Book
from resources.sim_market import simulate_day

DAY = dt.date(2024, 3, 12)


def _curated(seed=5):
    sim = simulate_day(seed, "AAPL", DAY)
    timeline = session_minutes(STOCKS, DAY)
    curated, _, _ = curate_bars(sim.bars, timeline, symbol="AAPL", day=DAY, source="sim", activity=book_activity(sim.book, timeline))
    return curated, sim.book, timeline


def test_perturbing_a_future_bar_never_changes_an_earlier_feature():
    curated, _, _ = _curated()
    base = compute_bar_features_v1(curated)
    for cut in (61, 150, 389):
        perturbed = curated.copy()
        perturbed.loc[cut:, ["open", "high", "low", "close"]] *= 1.5
        perturbed.loc[cut:, "volume"] *= 7
        changed = compute_bar_features_v1(perturbed)
        pd.testing.assert_frame_equal(base.iloc[:cut], changed.iloc[:cut])
        assert not base.iloc[cut:].equals(changed.iloc[cut:])


def test_feature_windows_and_lags():
    curated, _, _ = _curated()
    features = compute_bar_features_v1(curated)
    ret = np.log(curated["close"]).diff()
    assert features["ret_mean_20"].isna().sum() == 20  # first return is NaN, then 19 more
    np.testing.assert_allclose(features["ret_vol_60"].iloc[100], ret.iloc[41:101].std(), rtol=1e-12)
    np.testing.assert_allclose(features["ret_lag_5"].iloc[100], ret.iloc[95], rtol=1e-12)
    assert (features["available_ts"] - features["ts"] == pd.Timedelta(minutes=1)).all()


def test_label_horizons_look_ahead_exactly_h_minutes():
    curated, _, _ = _curated()
    labels = compute_labels(curated, get_label_definition("v1"))
    close = curated["close"].to_numpy()
    for h in (1, 5, 15):
        valid = labels[f"valid_{h}"].to_numpy()[:-h]
        np.testing.assert_allclose(labels[f"fwd_ret_{h}"].iloc[:-h][valid], np.log(close[h:] / close[:-h])[valid], rtol=1e-12)
        assert labels.loc[~labels[f"valid_{h}"], f"fwd_ret_{h}"].isna().all()  # invalid labels are NaN, never a number
        assert labels[f"fwd_ret_{h}"].iloc[-h:].isna().all()  # no label across the session end
        assert not labels[f"valid_{h}"].iloc[-h:].any()
    imputed = np.flatnonzero(curated["is_imputed"].to_numpy())
    assert len(imputed) and not labels["valid_1"].iloc[imputed].any()
    assert not labels["valid_1"].iloc[imputed - 1].any()  # the target bar is imputed
    assert not set(labels.columns) & set(compute_bar_features_v1(curated).columns) - {"date", "symbol", "ts", "available_ts"}


def test_alignment_uses_only_snapshots_before_the_bar_end():
    curated, book, _ = _curated()
    aligned = align_top_of_book(curated, book)
    usable = ~aligned["l2_stale"]
    assert usable.sum() > 350
    assert (aligned.loc[usable, "l2_ts"] < aligned.loc[usable, "bar_end"]).all()
    # Changing every snapshot at or after a bar's end leaves that bar's row unchanged.
    row = 200
    cut = aligned["bar_end"].iloc[row].tz_localize(None).to_datetime64()
    later = book.timestamp >= cut
    shifted = L2Book(book.timestamp, np.where(later[:, None], book.bid_prices + 5, book.bid_prices), book.bid_sizes,
                     np.where(later[:, None], book.ask_prices + 5, book.ask_prices), book.ask_sizes)
    again = align_top_of_book(curated, shifted)
    pd.testing.assert_frame_equal(aligned.iloc[: row + 1], again.iloc[: row + 1])
    assert not aligned.iloc[row + 1 :].equals(again.iloc[row + 1 :])


def test_stale_book_is_not_used():
    curated, book, _ = _curated()
    keep = book.timestamp < np.datetime64("2024-03-12T15:00")
    aligned = align_top_of_book(curated, book.take(np.flatnonzero(keep)))
    late = aligned["ts"] >= pd.Timestamp("2024-03-12 15:05", tz="UTC")
    assert aligned.loc[late, "l2_stale"].all() and aligned.loc[late, "bid_px_0"].isna().all()


def test_l2_features_no_look_ahead_and_missing_levels():
    _, book, timeline = _curated()
    features = compute_l2_features_v1(timeline, book, symbol="AAPL", day=DAY)
    assert len(features) == 390
    assert (features["l2_age_s"].dropna() > 0).all()
    sizes = book.bid_sizes.copy()
    sizes[:, 8:] = 0
    thinner = compute_l2_features_v1(timeline, L2Book(book.timestamp, book.bid_prices, sizes, book.ask_prices, book.ask_sizes), symbol="AAPL", day=DAY)
    assert (thinner["bid_depth_10"] <= features["bid_depth_10"]).all()


def test_l2_features_v2_pass_over_crossed_books_and_flag_them():
    _, book, timeline = _curated()
    clean_v1 = compute_l2_features_v1(timeline, book, symbol="AAPL", day=DAY)
    clean_v2 = compute_l2_features_v2(timeline, book, symbol="AAPL", day=DAY)
    assert not crossed_snapshots(book).any() and not clean_v2["crossed_book_skipped"].any()
    pd.testing.assert_frame_equal(clean_v2[clean_v1.columns], clean_v1, check_exact=True)  # a sound book: v2 is v1

    bid = book.bid_prices.copy()
    bad = np.zeros(len(book), dtype=bool)
    bad[::7] = True
    bid[bad, 0] = book.ask_prices[bad, 0] + 0.03  # every 7th snapshot crossed (a vendor fault)
    faulty = L2Book(book.timestamp, bid, book.bid_sizes, book.ask_prices, book.ask_sizes)
    v1 = compute_l2_features_v1(timeline, faulty, symbol="AAPL", day=DAY)
    v2 = compute_l2_features_v2(timeline, faulty, symbol="AAPL", day=DAY)
    assert (v1["spread_bps"] < 0).sum() > 10  # v1 hands the crossed books on
    assert not (v2["spread_bps"] < 0).any() and v2["spread_bps"].notna().sum() > 350
    # Independently: v2's book values are v1 over the snapshots that are not crossed.
    sound = compute_l2_features_v1(timeline, book.take(np.flatnonzero(~bad)), symbol="AAPL", day=DAY)
    pd.testing.assert_frame_equal(v2[sound.columns], sound, check_exact=True)
    # The flag: the newest snapshot strictly before the bar end was crossed, i.e. where v1 read one.
    bar_end = (timeline + pd.Timedelta(minutes=1)).tz_convert("UTC").tz_localize(None).to_numpy()
    newest = np.searchsorted(book.timestamp, bar_end, side="left") - 1
    expected = (newest >= 0) & bad[np.clip(newest, 0, None)] & v1["spread_bps"].notna().to_numpy()
    np.testing.assert_array_equal(v2["crossed_book_skipped"].to_numpy(), expected)
    assert expected.sum() > 10 and (v2.loc[expected, "l2_age_s"] > v1.loc[expected, "l2_age_s"]).all()
    unchanged = ~expected
    pd.testing.assert_frame_equal(v2.loc[unchanged, VALUE_COLUMNS], v1.loc[unchanged, VALUE_COLUMNS], check_exact=True)


def test_v2_flags_windows_holding_imputed_minutes():
    curated, _, _ = _curated()
    v1, v2 = compute_bar_features_v1(curated), compute_bar_features_v2(curated)
    pd.testing.assert_frame_equal(v1, v2[v1.columns])  # v2 only adds columns
    not_real = (curated["dq_status"] != "ok").to_numpy()
    for i in (0, 30, 100, 389):
        assert v2["imputed_in_window_20"].iloc[i] == not_real[max(0, i - 20) : i + 1].any()
    first = int(np.flatnonzero(not_real)[0])
    assert not v2["imputed_in_window_5"].iloc[:first].any() and v2["imputed_in_window_5"].iloc[first : first + 6].all()
    assert (v2["gap_run_minutes"] == curated["gap_run_minutes"]).all()
