"""Registered feature groups and their versions (``source`` says which input each one reads).

A version is immutable once published: changing a computation means registering a new version
(``v2``), which is written to its own table (``features/{group}/version=v2``) next to ``v1``, so
models trained on ``v1`` keep reading exactly what they were trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from platform_assets.features import bar_features, l2_features
from resources.validation import validate_version


@dataclass(frozen=True)
class FeatureGroupVersion:
    group: str
    version: str
    description: str
    columns: tuple[str, ...]
    compute: Callable
    source: str = "curated_bars"
    """What ``compute`` reads: ``curated_bars`` (``compute(curated)``) or ``l2_snapshots``
    (``compute(timeline, book, symbol=, day=)``). The look-ahead audit runs every registered
    version from this, so a new version is audited with no code change."""
    compute_many: Callable | None = None
    """``compute`` of many sessions in one vectorised pass, equal value for value; None = ``compute``
    session by session. ``curated_bars``: ``compute_many(curated)`` of many (symbol, session)s (rows
    by symbol, date, ts); ``l2_snapshots``: ``compute_many([(day, timeline, book), ...], symbol=)``
    of one symbol's sessions in time order."""
    curated_columns: tuple[str, ...] | None = None
    """The curated-bar columns ``compute`` reads (the feature backfill reads only these); None = all."""

    def compute_sessions(self, curated):
        """Features of every (symbol, session) in ``curated`` (``compute_many`` when registered)."""
        import pandas as pd

        if self.compute_many is not None:
            return self.compute_many(curated)
        parts = [self.compute(g) for _, g in curated.groupby(["symbol", "date"], sort=True)]
        return pd.concat(parts, ignore_index=True) if parts else self.compute(curated)

    def compute_l2_sessions(self, sessions, *, symbol: str):
        """Features of one symbol's ``(day, timeline, book)`` sessions (an ``l2_snapshots`` version;
        ``compute_many`` when registered), rows in session order."""
        import pandas as pd

        if self.compute_many is not None:
            return self.compute_many(sessions, symbol=symbol)
        return pd.concat([self.compute(timeline, book, symbol=symbol, day=day) for day, timeline, book in sessions], ignore_index=True)


FEATURE_GROUPS: dict[str, dict[str, FeatureGroupVersion]] = {
    bar_features.FEATURE_GROUP: {
        "v1": FeatureGroupVersion(
            bar_features.FEATURE_GROUP,
            "v1",
            "1-min log returns, trailing mean/volatility over 5/20/60 bars, return lags 1/5/10, volume ratio",
            tuple(bar_features.VALUE_COLUMNS),
            bar_features.compute_bar_features_v1,
            compute_many=bar_features.compute_bar_features_v1_many,
            curated_columns=bar_features.INPUT_COLUMNS,
        ),
        "v2": FeatureGroupVersion(
            bar_features.FEATURE_GROUP,
            "v2",
            "v1 (1-min log returns, trailing mean/volatility over 5/20/60 bars, lags, volume ratio) plus flags for windows holding imputed minutes (imputed_in_window_5/20/60) and the as-of gap run and type",
            tuple(bar_features.VALUE_COLUMNS_V2),
            bar_features.compute_bar_features_v2,
            compute_many=bar_features.compute_bar_features_v2_many,
            curated_columns=bar_features.INPUT_COLUMNS_V2,
        ),
    },
    l2_features.FEATURE_GROUP: {
        "v1": FeatureGroupVersion(
            l2_features.FEATURE_GROUP,
            "v1",
            "order-book spread, level-0/10-level imbalance, microprice offset, depth, as of each bar end",
            tuple(l2_features.VALUE_COLUMNS),
            l2_features.compute_l2_features_v1,
            source="l2_snapshots",
            compute_many=l2_features.compute_l2_features_v1_many,
        ),
        "v2": FeatureGroupVersion(
            l2_features.FEATURE_GROUP,
            "v2",
            "v1's book features from the last sound snapshot (crossed/locked books passed over) plus crossed_book_skipped",
            tuple(l2_features.VALUE_COLUMNS_V2),
            l2_features.compute_l2_features_v2,
            source="l2_snapshots",
            compute_many=l2_features.compute_l2_features_v2_many,
        ),
    },
}


class UnknownFeatureGroupError(KeyError):
    """The feature group or version is not registered."""


def curated_columns_of(specs) -> list[str] | None:
    """The curated-bar columns the given versions read together (None: every column)."""
    columns: dict[str, None] = {}
    for spec in specs:
        if spec.curated_columns is None:
            return None
        columns.update(dict.fromkeys(spec.curated_columns))
    return list(columns)


def get_feature_group(group: str, version: str) -> FeatureGroupVersion:
    if group not in FEATURE_GROUPS:
        raise UnknownFeatureGroupError(f"unknown feature group {group!r}; known: {', '.join(sorted(FEATURE_GROUPS))}")
    validate_version(version)
    versions = FEATURE_GROUPS[group]
    if version not in versions:
        raise UnknownFeatureGroupError(f"unknown version {version!r} of feature group {group!r}; known: {', '.join(sorted(versions))}")
    return versions[version]
