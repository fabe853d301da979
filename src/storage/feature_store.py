"""Seed 001 section 3.3.3: ``FeatureStore``, computed features by group and version.

    store = FeatureStore()
    store.get_features_for_training("bar_features", "v1", start, end, ["AAPL", "MSFT"])   # [start, end) UTC
    store.get_features_for_inference("bar_features", "v1", ts, ["AAPL"])                 # rows known at ts
    # both frames carry the metadata columns feature_group and version (seed 001 3.7.2)
    store.write_features(frame, "my_group", "v1", PartitionKey("AAPL", "2024-12-02"))

Reads go through the platform's point-in-time API (``platform_api.get_features_for_training`` /
``get_features_for_inference``: never a row whose ``available_ts`` is after the decision time) and
return its feature frame. A write stores one (symbol, date) partition of
``lake/features/<group>/version=<v>`` atomically; the frame needs ``ts`` and ``available_ts``
(when the row became known), and gets ``feature_group`` / ``feature_version`` columns. The
platform's own groups are computed by their assets (``run_feature_pipeline``); a write to one of
their registered versions is refused, so stored features always match their definition.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from resources.lake import feature_table
from resources.validation import InvalidInputError, validate_version
from src.storage.curated_store import check_partition_rows
from src.storage.lake_store import LakeStore
from src.storage.partition_key import PartitionKey


class FeatureStore(LakeStore):
    """Feature tables of the lake."""

    def write_features(self, df: pd.DataFrame, feature_group: str, version: str, partition_key) -> None:
        from platform_assets.features.registry import FEATURE_GROUPS

        key = PartitionKey.of(partition_key)
        version = validate_version(version)
        if not isinstance(feature_group, str) or not feature_group.replace("_", "").isalnum() or not feature_group[:1].isalpha():
            raise InvalidInputError(f"feature_group must be a name like 'my_features', got {feature_group!r}")
        if version in FEATURE_GROUPS.get(feature_group, {}):
            raise InvalidInputError(f"{feature_group} {version} is computed by the platform (run_feature_pipeline); register a new version instead")
        check_partition_rows(df, key, ["ts", "available_ts"])
        frame = df.assign(symbol=key.symbol, date=key.date, feature_group=feature_group, feature_version=version)
        self.lake.write_partition(feature_table(feature_group, version), key.symbol, key.date, frame.reset_index(drop=True))

    def get_features_for_training(self, feature_group: str, version: str, start: dt.datetime, end: dt.datetime, symbols: list[str]) -> pd.DataFrame:
        from platform_api.retrieval import get_features_for_training

        found = get_features_for_training([feature_group], {feature_group: version}, symbols, start, end, settings=self.settings).features
        return _with_group_columns(found, feature_group, version)

    def get_features_for_inference(self, feature_group: str, version: str, ts: dt.datetime, symbols: list[str]) -> pd.DataFrame:
        from platform_api.retrieval import get_features_for_inference

        found = get_features_for_inference([feature_group], {feature_group: version}, symbols, ts, settings=self.settings).features
        return _with_group_columns(found, feature_group, version)


def _with_group_columns(frame: pd.DataFrame, feature_group: str, version: str) -> pd.DataFrame:
    """``frame`` with the metadata columns of seed 001 section 3.7.2, ``feature_group`` and
    ``version`` (the group's stored rows name the version ``feature_version``)."""
    return frame.assign(feature_group=feature_group, version=version)
