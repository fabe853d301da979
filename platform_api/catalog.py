"""The catalog: which datasets and feature groups exist, what dates they cover, which versions.

    list_datasets() -> list[DatasetInfo]            # contract 000, 7.1
    list_feature_groups() -> list[FeatureGroupInfo]  # contract 000, 7.2

Answered from the lake (what is stored) and the registries / Dagster definitions (what is
defined), so a dataset that is defined but never materialized is listed with no date range
(``available_date_range`` None). ``available_date_range`` is (first, last) stored date, both
stored: to read all of it, pass ``end = last + 1 day`` to the half-open retrieval functions.

Built datasets are listed after the defined ones, only once something is stored: one entry per
training dataset name, ``training/<name>`` of type ``training`` (``versions`` = its immutable
dataset ids, oldest first; ``latest_pipeline_version`` = the latest build's id; the range = the
sessions of its ``[start, end)``), and one per scored model, ``predictions/<model>`` of type
``predictions`` (``versions`` = model versions, range = scored dates).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from platform_api.errors import UnknownDatasetError
from resources.dataset_store import DatasetStore
from resources.lake import symbol_layout
from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from resources.settings import PlatformSettings, get_settings

DATASET_TYPES = {
    "raw_bars": "raw",
    "l2_snapshots": "raw",
    "curated_bars": "curated",
    "aligned_bars": "curated",
    "labels": "labels",
    **{group: "features" for group in FEATURE_GROUPS},
}
# Version of the code that derives each non-versioned dataset; bumped when its output changes.
PIPELINE_VERSIONS = {"raw_bars": "raw-v1", "l2_snapshots": "l2-v1", "curated_bars": "curation-v1", "aligned_bars": "alignment-v1"}


@dataclass(frozen=True)
class DatasetInfo:
    """Contract 7.1: ``name``, ``type`` raw | curated | features | labels, ``available_date_range``
    (first, last stored date), ``latest_pipeline_version``. Extras: ``symbols`` stored, stored
    ``versions`` (feature groups, labels), raw ``sources``."""

    name: str
    type: str
    available_date_range: tuple[dt.date, dt.date] | None
    latest_pipeline_version: str
    symbols: int = 0
    versions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.available_date_range:
            out["available_date_range"] = [d.isoformat() for d in self.available_date_range]
        return out


@dataclass(frozen=True)
class FeatureGroupInfo:
    """Contract 7.2: ``feature_group``, registered ``versions`` (oldest first), ``description`` (of
    the latest version). Extras: ``stored_versions`` (versions with data in the lake), ``columns``
    per version."""

    feature_group: str
    versions: list[str]
    description: str
    stored_versions: list[str] = field(default_factory=list)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _version_key(version: str) -> int:
    return int(version[1:])


def _subdirs(folder: Path, prefix: str = "") -> list[str]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [e.name[len(prefix):] for e in entries if e.is_dir() and e.name.startswith(prefix)]


def _hive_range(table_dir: Path) -> tuple[tuple[dt.date, dt.date] | None, int]:
    """(min date, max date) over ``symbol=*/date=*`` folders, and the number of symbols."""
    first = last = None
    symbols = _subdirs(table_dir, "symbol=")
    for symbol in symbols:
        dates = [d.isoformat() for d in symbol_layout(table_dir / f"symbol={symbol}")] or _subdirs(table_dir / f"symbol={symbol}", "date=")
        if dates:
            first = min(first or dates[0], min(dates))
            last = max(last or dates[0], max(dates))
    if first is None:
        return None, 0
    return (dt.date.fromisoformat(first), dt.date.fromisoformat(last)), len(symbols)


def _merge(ranges) -> tuple[dt.date, dt.date] | None:
    ranges = [r for r in ranges if r]
    return (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None


def _l2_range(level2: Path) -> tuple[tuple[dt.date, dt.date] | None, int]:
    days, symbols = [], 0
    for symbol in _subdirs(level2):
        names = [n[:10] for n in os.listdir(level2 / symbol) if "_snapshots_" in n and n.endswith(".parquet")]
        if names:
            symbols += 1
            days += [min(names), max(names)]
    return ((dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))) if days else None), symbols


def _dataset(name: str, settings: PlatformSettings) -> DatasetInfo:
    root = Path(settings.base_path) / "lake"
    kind = DATASET_TYPES[name]
    if name == "raw_bars":
        sources = tuple(sorted(_subdirs(root / "raw_bars", "source=")))
        found = [_hive_range(root / "raw_bars" / f"source={s}") for s in sources]
        return DatasetInfo(name, kind, _merge(r for r, _ in found), PIPELINE_VERSIONS[name], max((n for _, n in found), default=0), sources=sources)
    if name == "l2_snapshots":
        date_range, symbols = _l2_range(Path(settings.level2_path))
        return DatasetInfo(name, kind, date_range, PIPELINE_VERSIONS[name], symbols)
    if kind in ("features", "labels"):
        folder = root / ("labels" if kind == "labels" else f"features/{name}")
        stored = tuple(sorted(_subdirs(folder, "version="), key=_version_key))
        found = [_hive_range(folder / f"version={v}") for v in stored]
        registered = LABEL_DEFINITIONS if kind == "labels" else FEATURE_GROUPS[name]
        latest = max(registered, key=_version_key)
        return DatasetInfo(name, kind, _merge(r for r, _ in found), latest, max((n for _, n in found), default=0), versions=stored)
    date_range, symbols = _hive_range(root / name)
    return DatasetInfo(name, kind, date_range, PIPELINE_VERSIONS[name], symbols)


def _training_datasets(settings: PlatformSettings) -> list[DatasetInfo]:
    store = DatasetStore(settings.base_path, fsync=False)
    out = []
    for name in store.names():
        ids = store.dataset_ids(name)
        if not ids:
            continue
        config = store.manifest(ids[-1])["config"]
        first = dt.datetime.fromisoformat(config["start"]).date()
        last = (dt.datetime.fromisoformat(config["end"]) - dt.timedelta(microseconds=1)).date()
        out.append(DatasetInfo(f"training/{name}", "training", (first, last), store.latest_id(name) or ids[-1], len(config["symbols"]), versions=tuple(ids)))
    return out


def _predictions(settings: PlatformSettings) -> list[DatasetInfo]:
    root = Path(settings.base_path) / "lake" / "predictions"
    out = []
    for model in sorted(_subdirs(root, "model=")):
        versions = tuple(sorted(_subdirs(root / f"model={model}", "version=")))
        found = [_hive_range(root / f"model={model}" / f"version={v}") for v in versions]
        out.append(DatasetInfo(f"predictions/{model}", "predictions", _merge(r for r, _ in found), versions[-1] if versions else "",
                               max((n for _, n in found), default=0), versions=versions))
    return out


def list_datasets(settings: PlatformSettings | None = None, *, include_outputs: bool = False) -> list[DatasetInfo]:
    """Every dataset: name, type (raw/curated/features/labels: contract 7.1's vocabulary), stored
    date range, pipeline version. Extra: ``include_outputs=True`` adds the stored training datasets
    (``training/<name>``, type training) and predictions (``predictions/<model>``, type
    predictions), which the health and DQ functions do not judge."""
    settings = settings or get_settings()
    listed = [_dataset(name, settings) for name in DATASET_TYPES]
    return listed + _training_datasets(settings) + _predictions(settings) if include_outputs else listed


def get_dataset(name: str, settings: PlatformSettings | None = None) -> DatasetInfo:
    if name not in DATASET_TYPES:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASET_TYPES)}")
    return _dataset(name, settings or get_settings())


def list_feature_groups(settings: PlatformSettings | None = None) -> list[FeatureGroupInfo]:
    """Registered feature groups with their versions (and which versions hold stored data)."""
    settings = settings or get_settings()
    root = Path(settings.base_path) / "lake" / "features"
    out = []
    for group, versions in sorted(FEATURE_GROUPS.items()):
        ordered = sorted(versions, key=_version_key)
        stored = sorted((v for v in _subdirs(root / group, "version=") if v in versions), key=_version_key)
        latest = versions[ordered[-1]]
        out.append(FeatureGroupInfo(group, ordered, latest.description, stored, {v: versions[v].columns for v in ordered}))
    return out
