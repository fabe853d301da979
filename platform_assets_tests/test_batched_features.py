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
