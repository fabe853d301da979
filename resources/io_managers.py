"""The lake I/O manager: loads any asset partition (or range of partitions) as a DataFrame.

Assets write their own (symbol, date) files through the lake resource and return
``MaterializeResult`` (so a ranged run streams partition by partition instead of holding the whole
range in memory). This I/O manager is the read side used by ``Definitions.load_asset_value`` and
by TF_1: for a date-partitioned asset it returns every stored symbol of the requested dates.
Input metadata narrows the load: ``{"symbols": [...], "version": "v1"}`` (versioned tables default
to their newest stored version), and ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` loads the
dates of ``[start, end)`` in one call (without a partition key): half-open in UTC like every range
of the platform, so ``end`` is the first date NOT loaded.

``training_datasets`` (partitioned by dataset name) loads the latest build of the name, or the
build named by input metadata ``{"dataset_id": "<name>-<hash>"}``: the immutable stored frame,
identical to ``load_dataset(id).to_pandas()``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from resources.dataset_store import DatasetStore
from resources.l2_store import L2SnapshotStore
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake, Table, labels_table, feature_table, raw_bars_table
from resources.validation import normalize_symbols, parse_half_open_dates, validate_version

RAW_ASSET_PREFIX = "raw_bars_"
L2_ASSET_PREFIX = "l2_snapshots_"
VERSIONED = {"bar_features": "features/bar_features", "l2_features": "features/l2_features", "labels": "labels"}
PLAIN = {"curated_bars": CURATED_BARS, "aligned_bars": ALIGNED_BARS}
TRAINING_DATASETS = "training_datasets"


def _date_range(start, end) -> list[dt.date]:
    """Every calendar date of ``[start, end)`` given in input metadata (``end`` excluded)."""
    if not (start and end):
        raise ValueError("load a date range with both metadata start and end (YYYY-MM-DD, end excluded)")
    first, last = parse_half_open_dates(start, end)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class LakeIOManager(dg.ConfigurableIOManager):
    """Reads lake tables and L2 snapshot files back as pandas DataFrames."""

    base_path: str
    level2_path: str

    @property
    def lake(self) -> ParquetLake:
        return ParquetLake(base_path=self.base_path, fsync=False)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned a value; lake assets write their partitions "
                "through the lake resource and return MaterializeResult"
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = context.asset_key.path[-1]
        metadata = dict(context.definition_metadata or {})
        if name == TRAINING_DATASETS:
            return self.load_training_dataset(metadata.get("dataset_id") or context.asset_partition_key)
        dates = (
            [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
            if context.has_asset_partitions
            else None
        )
        if dates is None and (metadata.get("start") or metadata.get("end")):
            dates = _date_range(metadata.get("start"), metadata.get("end"))
        symbols = normalize_symbols(metadata["symbols"]) if metadata.get("symbols") else None
        return self.load(name, dates=dates, symbols=symbols, version=metadata.get("version"))

    def load(self, name: str, *, dates=None, symbols=None, version: str | None = None) -> pd.DataFrame:
        """Load a dataset by asset name for the given dates/symbols (None = all stored)."""
        if name.startswith(L2_ASSET_PREFIX):
            return self._load_l2(dates, symbols)
        if name.startswith(RAW_ASSET_PREFIX):
            return self._load_raw(raw_bars_table(name.removeprefix(RAW_ASSET_PREFIX)), dates, symbols)
        if name in PLAIN:
            table = PLAIN[name]
        elif name in VERSIONED:
            table = self._versioned_table(VERSIONED[name], version)
        else:
            raise KeyError(f"the lake I/O manager does not know asset {name!r}")
        stored = self.lake.list_partitions(table)
        if dates is not None:
            stored = stored[stored["date"].isin(set(dates))]
        if symbols is not None:
            stored = stored[stored["symbol"].isin(set(symbols))]
        return self.lake.read(table, sorted(set(stored["symbol"])), sorted(set(stored["date"])))

    def load_training_dataset(self, name_or_id: str) -> pd.DataFrame:
        """A stored training dataset (an id, or a name = its latest build) as pandas."""
        store = DatasetStore(self.base_path, fsync=False)
        return store.read_pandas(store.resolve(name_or_id))

    def _versioned_table(self, name: str, version: str | None) -> Table:
        if version is None:
            versions = sorted(p.name.split("=", 1)[1] for p in (self.lake.root / name).glob("version=*"))
            if not versions:
                raise FileNotFoundError(f"no stored version of {name} in {self.lake.root}")
            version = max(versions, key=lambda v: int(v[1:]))
        validate_version(version)
        group = name.split("/", 1)[1] if name.startswith("features/") else None
        return feature_table(group, version) if group else labels_table(version)

    def _load_raw(self, table: Table, dates, symbols) -> pd.DataFrame:
        stored = self.lake.list_partitions(table)
        if dates is not None:
            stored = stored[stored["date"].isin(set(dates))]
        if symbols is not None:
            stored = stored[stored["symbol"].isin(set(symbols))]
        frames = [self.lake.read_latest_batch(table, row.symbol, row.date) for row in stored.itertuples()]
        frames = [f for f in frames if f is not None]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _load_l2(self, dates, symbols) -> pd.DataFrame:
        root = Path(self.level2_path)
        wanted_symbols = symbols or sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
        store = L2SnapshotStore(level2_path=self.level2_path)
        frames = []
        for symbol in wanted_symbols:
            days = dates or sorted({dt.date.fromisoformat(p.name[:10]) for p in store.symbol_dir(symbol).glob("*_snapshots_*.parquet")})
            for day in days:
                for path in store.day_files(symbol, day):
                    frames.append(pq.read_table(path).to_pandas().assign(symbol=symbol, date=day))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
