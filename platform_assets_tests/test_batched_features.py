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
