"""Many-session feature and label functions equal the per-(symbol, session) ones, value for value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from platform_assets.features.bar_features import (
    compute_bar_features_v1,
    compute_bar_features_v1_many,
    compute_bar_features_v2,
    compute_bar_features_v2_many,
)
from platform_assets.features.labels import LABEL_DEFINITIONS, LabelDefinition, compute_labels, compute_labels_many


def _session(rng: np.random.Generator, symbol: str, day: dt.date, n: int) -> pd.DataFrame:
    ts = pd.date_range(pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(hours=14, minutes=30), periods=n, freq="min")
    status = rng.choice(["ok", "ok", "ok", "ok", "imputed", "missing"], size=n)
    volume = rng.integers(0, 2000, size=n).astype(float)
    volume[rng.random(n) < 0.1] = 0.0
    return pd.DataFrame({
        "date": [day] * n, "symbol": [symbol] * n, "ts": ts,
        "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.001, size=n))),
        "volume": volume, "dq_status": status, "is_imputed": status != "ok",
        "gap_run_minutes": rng.integers(0, 30, size=n), "gap_type": rng.choice(["", "no_trade", "feed_gap", "halt"], size=n),
    })


@pytest.fixture(scope="module")
def sessions() -> list[pd.DataFrame]:
    rng = np.random.default_rng(20)
    days = [dt.date(2024, 11, 25) + dt.timedelta(days=i) for i in range(6)]
    lengths = [390, 210, 61, 20, 1, 390]  # full, half day, around the longest window, tiny, one bar
    return [_session(rng, symbol, day, n) for symbol in ("AAPL", "BRK.B", "MSFT") for day, n in zip(days, lengths)]


def _shuffled(sessions: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(sessions, ignore_index=True).sample(frac=1.0, random_state=3)  # any input order


@pytest.mark.parametrize("per_session, many", [(compute_bar_features_v1, compute_bar_features_v1_many), (compute_bar_features_v2, compute_bar_features_v2_many)])
def test_bar_features_of_many_sessions_equal_the_per_session_values(sessions, per_session, many):
    expected = pd.concat([per_session(s) for s in sessions], ignore_index=True)
    got = many(_shuffled(sessions))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["ret_mean_60"].notna().any() and got["ret_1"].isna().sum() >= len(sessions)  # windows and session starts exercised


@pytest.mark.parametrize("definition", [*LABEL_DEFINITIONS.values(), LabelDefinition("v9", (1, 30, 400), "horizons past a session")])
def test_labels_of_many_sessions_equal_the_per_session_values(sessions, definition):
    expected = pd.concat([compute_labels(s, definition) for s in sessions], ignore_index=True)
    got = compute_labels_many(_shuffled(sessions), definition)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got[f"valid_{definition.horizons[0]}"].any()


def test_an_empty_input_gives_an_empty_frame_with_the_columns():
    empty = _session(np.random.default_rng(0), "AAPL", dt.date(2024, 11, 25), 0)
    assert list(compute_bar_features_v2_many(empty).columns) == list(compute_bar_features_v2(empty).columns)
    assert compute_labels_many(empty, LABEL_DEFINITIONS["v1"]).empty


def test_each_version_reads_only_its_declared_curated_columns(sessions):
    """The feature backfill reads only ``curated_columns`` from the lake: every registered version
    computes the same values from those columns alone as from the whole curated frame."""
    from platform_assets.features.registry import FEATURE_GROUPS, curated_columns_of
    from platform_assets.curation.gap_engine import CURATED_COLUMNS

    whole = pd.concat(sessions, ignore_index=True)
    rng = np.random.default_rng(5)
    for name in [*CURATED_COLUMNS, "adj_factor_split", "adj_factor"]:  # the other curated columns, with values that would change features
        if name not in whole:
            whole[name] = rng.random(len(whole)) if name not in ("source", "gap_type_retrospective") else "x"
    specs = [spec for group in FEATURE_GROUPS.values() for spec in group.values() if spec.source == "curated_bars"]
    assert specs and all(spec.curated_columns for spec in specs)
    for spec in specs:
        only = whole[list(spec.curated_columns)]
        assert len(only.columns) < len(whole.columns)
        pd.testing.assert_frame_equal(spec.compute_sessions(only), spec.compute_sessions(whole), check_exact=True)
    assert curated_columns_of(specs)[:3] == ["date", "symbol", "ts"] and curated_columns_of([*specs, _all_columns_spec(specs[0])]) is None


def _all_columns_spec(spec):
    import dataclasses

    return dataclasses.replace(spec, curated_columns=None)


@pytest.mark.parametrize("n", [3, 5, 61, 2047, 2049, 5000])
def test_trailing_mean_and_std_in_one_pass_equal_numpys_bit_for_bit(n):
    from platform_assets.features.bar_features import _trailing, _trailing_mean_std

    values = np.random.default_rng(n).normal(0, 1e-3, n)
    values[::97] = np.nan
    for window in (5, 20, 60):
        mean, std = _trailing_mean_std(values, window)
        np.testing.assert_array_equal(mean, _trailing(values, window, lambda w: w.mean(axis=1)))
        np.testing.assert_array_equal(std, _trailing(values, window, lambda w: w.std(axis=1, ddof=1)))


# ------------------------------------------------------------------ L2 sessions in one pass
def _l2_sessions(rng: np.random.Generator, gap: pd.Timedelta, shuffle_last: bool = False):
    """Back-to-back sessions of 40 minutes ``gap`` apart (closer than the 5-minute staleness when
    the gap is small, so a pass that let one session see another's snapshots would differ); one
    session has no snapshot at all, one only late snapshots."""
    from resources.schemas import L2Book

    sessions, start = [], pd.Timestamp("2024-11-25 14:30", tz="UTC")
    for k, n_snap in enumerate([120, 0, 80, 15, 200]):
        timeline = pd.date_range(start, periods=40, freq="min")
        span = np.sort(rng.integers(0, 40 * 60_000, n_snap)) * 1_000_000
        if k == 3:
            span = span // 4 + 30 * 60 * 1_000_000_000  # only in the last 10 minutes
        stamps = (timeline[0].tz_convert("UTC").tz_localize(None).to_datetime64() + span.astype("timedelta64[ns]")).astype("datetime64[ns]")
        bid = 100 + rng.normal(0, 0.1, (n_snap, 10)).cumsum(axis=0)
        book = L2Book(stamps, bid, rng.integers(0, 500, (n_snap, 10)), bid + rng.uniform(-0.01, 0.05, (n_snap, 10)), rng.integers(0, 500, (n_snap, 10)))
        sessions.append((dt.date(2024, 11, 25) + dt.timedelta(days=k), timeline, book))
        start = timeline[-1] + gap
    if shuffle_last:  # a book reaching back into the session before it: not in time order across sessions
        day, timeline, book = sessions[-1]
        early = book.timestamp.copy()
        early[0] = sessions[-2][1][0].tz_convert("UTC").tz_localize(None).to_datetime64()
        sessions[-1] = (day, timeline, type(book)(early, book.bid_prices, book.bid_sizes, book.ask_prices, book.ask_sizes))
    return sessions


def _bars_of(sessions) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"date": [day] * len(t), "symbol": "AAPL", "ts": t, "close": np.arange(len(t), dtype=float)}) for day, t, _ in sessions],
        ignore_index=True,
    )


@pytest.mark.parametrize("gap, shuffle_last", [(pd.Timedelta(minutes=1), False), (pd.Timedelta(hours=17), False), (pd.Timedelta(minutes=1), True)])
def test_alignment_of_many_sessions_equals_each_session_alone(gap, shuffle_last):
    from platform_assets.alignment.transforms import align_sessions_top_of_book, align_top_of_book

    sessions = _l2_sessions(np.random.default_rng(8), gap, shuffle_last)
    bars = _bars_of(sessions)
    bounds = np.cumsum([0, *(len(t) for _, t, _ in sessions)])
    expected = pd.concat([align_top_of_book(bars.iloc[a:b].reset_index(drop=True), s[2]) for s, a, b in zip(sessions, bounds, bounds[1:])], ignore_index=True)
    got = align_sessions_top_of_book(bars, [(a, b, s[2]) for s, a, b in zip(sessions, bounds, bounds[1:])])
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    first_bars = got.iloc[bounds[1:-1]]  # the first bar of each later session sees none of the session before
    assert first_bars["l2_stale"].iloc[0] and got["l2_stale"].sum() > 40 and (~got["l2_stale"]).sum() > 100
    with pytest.raises(ValueError, match="cover"):
        align_sessions_top_of_book(bars, [(0, 10, sessions[0][2])])


@pytest.mark.parametrize("gap, shuffle_last", [(pd.Timedelta(minutes=1), False), (pd.Timedelta(minutes=1), True)])
def test_l2_features_of_many_sessions_equal_each_session_alone(gap, shuffle_last):
    from platform_assets.features.l2_features import compute_l2_features_v1, compute_l2_features_v1_many, compute_l2_features_v2
    from platform_assets.features.registry import FEATURE_GROUPS

    sessions = _l2_sessions(np.random.default_rng(9), gap, shuffle_last)
    expected = pd.concat([compute_l2_features_v1(t, b, symbol="AAPL", day=d) for d, t, b in sessions], ignore_index=True)
    got = compute_l2_features_v1_many(sessions, symbol="AAPL")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["spread_bps"].notna().sum() > 100 and got["spread_bps"].isna().sum() > 40
    spec = FEATURE_GROUPS["l2_features"]["v1"]
    pd.testing.assert_frame_equal(spec.compute_l2_sessions(sessions, symbol="AAPL"), expected, check_exact=True)
    expected_v2 = pd.concat([compute_l2_features_v2(t, b, symbol="AAPL", day=d) for d, t, b in sessions], ignore_index=True)
    got_v2 = FEATURE_GROUPS["l2_features"]["v2"].compute_l2_sessions(sessions, symbol="AAPL")
    pd.testing.assert_frame_equal(got_v2, expected_v2, check_exact=True)
    assert got_v2["crossed_book_skipped"].sum() > 5 and not (got_v2["spread_bps"] < 0).any()  # the sessions hold crossed books


def _random_sessions(seed: int):
    """Sessions with random overlaps and gaps (-15 min .. 17 h) and snapshots in a random part of
    each: exercises the in-order pass (a bar whose session's snapshots end before later sessions'
    begin) and the one-session-at-a-time pass (books out of time order across sessions)."""
    from resources.schemas import L2Book

    rng = np.random.default_rng(seed)
    sessions, start = [], pd.Timestamp("2024-11-25 14:30", tz="UTC")
    for k in range(int(rng.integers(1, 7))):
        timeline = pd.date_range(start, periods=int(rng.integers(1, 60)), freq="min")
        n_snap = int(rng.choice([0, 3, 50]))
        lo, hi = np.sort(rng.integers(0, len(timeline) * 60_000, 2))
        span = np.sort(rng.integers(lo, hi + 1, n_snap)) * 1_000_000
        stamps = (timeline[0].tz_convert("UTC").tz_localize(None).to_datetime64() + span.astype("timedelta64[ns]")).astype("datetime64[ns]")
        bid = 100 + rng.normal(0, 0.1, (n_snap, 10))
        book = L2Book(stamps, bid, rng.integers(1, 500, (n_snap, 10)), bid + 0.02, rng.integers(1, 500, (n_snap, 10)))
        sessions.append((dt.date(2024, 11, 25) + dt.timedelta(days=k), timeline, book))
        start = timeline[-1] + pd.Timedelta(minutes=int(rng.choice([-15, -3, 1, 2, 17 * 60])))
    return sessions


def test_many_session_passes_equal_each_session_alone_on_random_overlaps():
    from platform_assets.alignment.transforms import align_sessions_top_of_book, align_top_of_book
    from platform_assets.features.l2_features import compute_l2_features_v1, compute_l2_features_v1_many

    for seed in range(60):
        sessions = _random_sessions(seed)
        bars = _bars_of(sessions)
        bounds = np.cumsum([0, *(len(t) for _, t, _ in sessions)])
        expected = pd.concat([align_top_of_book(bars.iloc[a:b].reset_index(drop=True), s[2]) for s, a, b in zip(sessions, bounds, bounds[1:])], ignore_index=True)
        got = align_sessions_top_of_book(bars, [(a, b, s[2]) for s, a, b in zip(sessions, bounds, bounds[1:])])
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=f"alignment, seed {seed}")
        expected = pd.concat([compute_l2_features_v1(t, b, symbol="AAPL", day=d) for d, t, b in sessions], ignore_index=True)
        pd.testing.assert_frame_equal(compute_l2_features_v1_many(sessions, symbol="AAPL"), expected, check_exact=True, obj=f"l2 features, seed {seed}")
