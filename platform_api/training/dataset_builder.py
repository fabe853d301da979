"""DatasetBuilder (design 001, 3.8.1): persist a reproducible training dataset, hand back a handle.

    build_training_dataset(cfg: TrainingDatasetConfig) -> DatasetHandle

Steps (as the design lists them): query the feature store for the requested groups/versions
(``get_features_for_training``, point in time, half-open ``[start, end)`` UTC), join the labels
of a versioned definition row by row, apply the final filters (``drop_imputed``,
``require_label``), persist the frame and return a handle.

Reproducibility (what "which exact rows did this model train on?" needs):

* A dataset is **immutable**: ``lake/training_datasets/name=<name>/id=<dataset id>/`` holds
  ``data.parquet`` and ``manifest.json`` (config, rows, per-column schema, content hash, file
  sha256, the source partitions with their Dagster materialization (run id, storage id, data
  version), a fingerprint of the source files, extraction time). Nothing ever rewrites it, so the
  handle loads the identical frame (pandas, pyarrow, DuckDB, the I/O manager) months later, even
  after the feature tables were re-computed.
* The **dataset id is content-addressed**: ``<name>-<first 12 hex of the content hash>``. The
  name is the config's identity (``cfg.name``, or ``ds-<config hash>`` when not given; one name =
  one config, a different config under a taken name is refused).
* **Rebuilding the same config reports whether the data changed**: unchanged data gives the same
  dataset id back (``changed=False``, nothing written); changed data gives a **new dataset id**
  beside the old one (``changed=True``, ``previous_dataset_id``, and ``diff``: rows added,
  removed and changed per column, keyed by (symbol, ts)). Every build, changed or not, is one line
  of ``builds.jsonl`` and one Dagster materialization of the ``training_datasets`` partition
  ``<name>`` (metadata: dataset_id, changed, content_hash).

``build_training_dataset`` runs the Dagster asset (so the UI shows each build, its config and its
lineage); ``build_dataset`` is the same work without Dagster (used by the asset and the bench).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa

from platform_api import errors as api_errors
from platform_api.errors import InvalidOptionError
from platform_api.instance import get_instance
from platform_api.inputs import RANGE_CONVENTION, normalize_symbols, parse_time_range, require_choice, resolve_feature_versions
from platform_api.retrieval import DEFAULT_LABEL_DEF_VERSION, LABEL_SOURCES, _label_definition, expected_sessions, get_features_for_training
from platform_assets.calendars import STOCKS
from resources.dataset_store import DatasetStore, UnknownTrainingDatasetError, validate_dataset_name
from resources.lake import feature_table, labels_table, layout_files, symbol_layout
from resources.settings import PlatformSettings, get_settings

TRAINING_DATASETS_ASSET = "training_datasets"
TRAINING_DATASET_JOB = "training_dataset_build"
DERIVED_NAME_PREFIX = "ds-"
DIFF_KEYS = ["symbol", "ts"]

__all__ = [
    "TrainingDatasetConfig", "DatasetHandle", "build_training_dataset", "build_dataset", "load_dataset",
    "list_training_datasets", "UnknownTrainingDatasetError",
]


@dataclass
class TrainingDatasetConfig:
    """Design 3.8.1: ``feature_groups``, ``feature_versions``, ``label_source``, ``start``, ``end``
    (half-open ``[start, end)`` UTC; a bare date is its midnight), ``symbols``.

    Extras (label definition and adjustment options):

    * ``name``: the dataset's name (its identity across rebuilds); default ``ds-<config hash>``.
    * ``label_def_version`` (default v1) and ``include_labels`` (default True): the versioned
      label definition joined row by row (``fwd_ret_h``, ``valid_h``, ``label_available_ts``).
    * ``require_label``: keep only rows whose label column (e.g. ``fwd_ret_5``) is valid.
    * ``drop_imputed`` (default True): drop rows whose bar was imputed (forward-filled).
    * ``strict``: refuse a range with missing sessions (``IncompleteCoverageError``).
    """

    feature_groups: list[str]
    feature_versions: dict[str, str]
    label_source: str
    start: dt.datetime
    end: dt.datetime
    symbols: list[str]
    name: str | None = None
    label_def_version: str = DEFAULT_LABEL_DEF_VERSION
    include_labels: bool = True
    require_label: str | None = None
    drop_imputed: bool = True
    strict: bool = False

    def canonical(self) -> dict:
        """The validated config in canonical form (what the config hash and the manifest hold)."""
        versions = resolve_feature_versions(self.feature_groups, self.feature_versions)
        start, end = parse_time_range(self.start, self.end)
        require_choice("label_source", self.label_source, LABEL_SOURCES)
        definition = _label_definition(self.label_def_version or DEFAULT_LABEL_DEF_VERSION)
        if self.require_label is not None:
            if not self.include_labels:
                raise InvalidOptionError("require_label needs include_labels=True")
            require_choice("require_label", self.require_label, [c for c in definition.columns if c.startswith("fwd_ret")])
        for option in ("include_labels", "drop_imputed", "strict"):
            if not isinstance(getattr(self, option), bool):
                raise InvalidOptionError(f"{option} must be true or false, got {getattr(self, option)!r}")
        return {
            "feature_groups": list(versions), "feature_versions": versions, "label_source": self.label_source,
            "start": start.isoformat(), "end": end.isoformat(), "symbols": normalize_symbols(self.symbols),
            "label_def_version": definition.version, "include_labels": self.include_labels, "require_label": self.require_label,
            "drop_imputed": self.drop_imputed, "strict": self.strict, "range": RANGE_CONVENTION,
        }

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()

    def dataset_name(self) -> str:
        """``name`` (validated) or ``ds-<first 12 hex of the config hash>``."""
        if self.name is None:
            return f"{DERIVED_NAME_PREFIX}{self.config_hash()[:12]}"
        name = validate_dataset_name(self.name)
        if name.startswith(DERIVED_NAME_PREFIX) and name != f"{DERIVED_NAME_PREFIX}{self.config_hash()[:12]}":
            raise InvalidOptionError(f"dataset name {name!r}: names starting with {DERIVED_NAME_PREFIX!r} are derived from the config; pick another name")
        return name

    def to_dict(self) -> dict:
        """The validated fields as plain JSON values (run config of the Dagster asset, CLI --json)."""
        canonical = self.canonical()
        return {"name": self.name, **{k: canonical[k] for k in TrainingDatasetConfig.__dataclass_fields__ if k != "name"}}


@dataclass
class DatasetHandle:
    """A stored, immutable training dataset (one dataset id) and what this build found.

    ``to_pandas()`` / ``to_arrow()`` / ``to_duckdb()`` load it; ``manifest`` describes it;
    ``verify()`` re-checks the file checksum and the content hash. ``changed`` is True when this
    build's data differ from the previous build of the same name (then ``previous_dataset_id``
    and ``diff`` say how); ``created`` is True when this build wrote the folder.
    """

    dataset_id: str
    name: str
    path: str
    manifest_path: str
    rows: int
    content_hash: str
    changed: bool = False
    created: bool = False
    previous_dataset_id: str | None = None
    diff: dict | None = None
    base_path: str = ""
    _manifest: dict | None = field(default=None, repr=False)

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = json.loads(Path(self.manifest_path).read_text())
        return self._manifest

    @property
    def store(self) -> DatasetStore:
        return DatasetStore(self.base_path, fsync=False)

    def to_arrow(self) -> pa.Table:
        return self.store.read_arrow(self.dataset_id)

    def to_pandas(self) -> pd.DataFrame:
        return self.store.read_pandas(self.dataset_id)

    def to_duckdb(self, conn: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the file (the connection is pinned to UTC when created here)."""
        if conn is None:
            conn = duckdb.connect(":memory:")
            conn.execute("SET TimeZone = 'UTC'")
        return conn.sql("SELECT * FROM read_parquet($path, hive_partitioning = false)", params={"path": self.path})

    def verify(self) -> dict:
        return self.store.verify(self.dataset_id)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return out


# ----------------------------------------------------------------------------- lineage
def _latest_materializations(instance: dg.DagsterInstance, asset: str, partitions: list[str]) -> dict[str, dict]:
    """Per partition key: the newest materialization's run id, storage id, time and data version."""
    found: dict[str, dict] = {}
    if not partitions:
        return found
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=partitions)
    cursor = None
    while len(found) < len(partitions):
        result = instance.fetch_materializations(records_filter, limit=max(100, len(partitions)), cursor=cursor)
        for record in result.records:
            event = record.asset_materialization
            if event is None or event.partition in found:
                continue
            found[event.partition] = {
                "run_id": record.run_id, "storage_id": record.storage_id,
                "timestamp": pd.Timestamp(record.timestamp, unit="s", tz="UTC").isoformat(),
                "data_version": (event.tags or {}).get("dagster/data_version"),
            }
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def _files_fingerprint(base_path: str, table, symbols: list[str], days: set[dt.date]) -> dict:
    """The stored files a pull reads: count, bytes and a hash of (path, size, mtime) - changes
    whenever a source file is rewritten, even with equal content."""
    root = Path(base_path) / "lake"
    digest, count, size = hashlib.sha256(), 0, 0
    for symbol in symbols:
        for path in layout_files(symbol_layout(root / table.relative_dir() / f"symbol={symbol}"), days):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            count, size = count + 1, size + stat.st_size
    return {"files": count, "bytes": size, "fingerprint": digest.hexdigest()[:16]}


def source_lineage(canonical: dict, base_path: str, instance: dg.DagsterInstance | None) -> list[dict]:
    """One entry per source table: its asset, stored files and, per session partition, the
    Dagster materialization that wrote it (empty when no instance is given or it never ran)."""
    start, end = pd.Timestamp(canonical["start"]), pd.Timestamp(canonical["end"])
    sessions = expected_sessions(start, end)
    days = {start.date() - dt.timedelta(days=1) + dt.timedelta(days=i) for i in range((end - start).days + 3)}
    tables = [(group, group, version, feature_table(group, version)) for group, version in canonical["feature_versions"].items()]
    if canonical["include_labels"]:
        tables.append(("labels", "labels", canonical["label_def_version"], labels_table(canonical["label_def_version"])))
    out = []
    for name, asset, version, table in tables:
        keys = [d.isoformat() for d in sessions]
        materialized = _latest_materializations(instance, asset, keys) if instance is not None else {}
        out.append({
            "table": str(table), "asset": asset, "version": version, "partitions_expected": len(keys),
            "partitions_materialized": len(materialized), "materializations": materialized,
            "stored_files": _files_fingerprint(base_path, table, canonical["symbols"], days),
        })
    return out


# ----------------------------------------------------------------------------- diff
def diff_frames(old: pd.DataFrame, new: pd.DataFrame, keys: list[str] = DIFF_KEYS) -> dict:
    """Rows added / removed (by key) and changed (per column, NaN == NaN) between two builds."""
    out = {"rows_before": len(old), "rows_after": len(new)}
    if not set(keys) <= set(old.columns) & set(new.columns):
        return {**out, "comparable": False}
    out["columns_added"] = [c for c in new.columns if c not in old.columns]
    out["columns_removed"] = [c for c in old.columns if c not in new.columns]
    merged = old.merge(new, on=keys, how="outer", suffixes=("__old", "__new"), indicator=True)
    out["rows_added"] = int((merged["_merge"] == "right_only").sum())
    out["rows_removed"] = int((merged["_merge"] == "left_only").sum())
    both = merged[merged["_merge"] == "both"]
    changed_columns, changed_rows = {}, pd.Series(False, index=both.index)
    for column in (c for c in new.columns if c in old.columns and c not in keys):
        a, b = both[f"{column}__old"], both[f"{column}__new"]
        differs = ~((a == b) | (a.isna() & b.isna()))
        if differs.any():
            changed_columns[column] = int(differs.sum())
            changed_rows |= differs.to_numpy()
    out["rows_changed"] = int(changed_rows.sum())
    out["changed_columns"] = changed_columns
    if out["rows_changed"]:
        first = both[changed_rows.to_numpy()].iloc[0]
        out["first_changed_row"] = {k: str(first[k]) for k in keys}
    out["comparable"] = True
    return out


# ----------------------------------------------------------------------------- build
def _bound_config(store: DatasetStore, name: str, config_hash: str) -> None:
    """A name belongs to one config: refuse another config under a taken name."""
    for dataset_id in store.dataset_ids(name)[-1:]:
        stored = store.manifest(dataset_id).get("config_hash")
        if stored and stored != config_hash:
            raise InvalidOptionError(
                f"dataset name {name!r} was built from another config (hash {stored[:12]}, this one {config_hash[:12]}); "
                "choose a new name, or leave the name out to derive it from the config"
            )


def handle_from_store(store: DatasetStore, dataset_id: str, **extra) -> DatasetHandle:
    manifest = store.manifest(dataset_id)
    return DatasetHandle(
        dataset_id=dataset_id, name=manifest["dataset_name"], path=str(store.data_path(dataset_id)), manifest_path=str(store.manifest_path(dataset_id)),
        rows=int(manifest["rows"]), content_hash=manifest["content_hash"], base_path=str(store.root.parent.parent), _manifest=manifest, **extra,
    )


def build_dataset(
    cfg: TrainingDatasetConfig, *, settings: PlatformSettings | None = None, instance: dg.DagsterInstance | None = None,
    run_id: str | None = None, name: str | None = None,
) -> DatasetHandle:
    """Build (or confirm) the dataset of ``cfg`` without going through Dagster; see the module doc.

    ``instance`` (optional) adds the source partitions' materialization records to the manifest;
    ``run_id`` names the Dagster run doing the build; ``name`` overrides ``cfg.dataset_name()``
    (the asset passes its partition key, which must equal it).
    """
    settings = settings or get_settings()
    canonical = cfg.canonical()
    config_hash = cfg.config_hash()
    expected = cfg.dataset_name()
    if name is not None and name != expected:
        raise InvalidOptionError(f"partition {name!r} does not match the config's dataset name {expected!r}")
    name = expected
    store = DatasetStore(settings.base_path, fsync=settings.lake_fsync)
    with store.lock(name):
        _bound_config(store, name, config_hash)
        started = pd.Timestamp.now(tz="UTC")
        pulled = get_features_for_training(
            canonical["feature_groups"], canonical["feature_versions"], canonical["symbols"], canonical["start"], canonical["end"],
            include_labels=canonical["include_labels"], label_source=canonical["label_source"],
            label_def_version=canonical["label_def_version"], strict=canonical["strict"], settings=settings,
        )
        frame = pulled.model_frame(drop_imputed=canonical["drop_imputed"], require_label=canonical["require_label"])
        metadata = {k: v for k, v in pulled.metadata.items() if k not in ("rows", "files_read", "lake")}
        manifest = {
            "config": canonical, "config_hash": config_hash, "user_config": cfg.to_dict(),
            "extraction_ts": pulled.metadata["extraction_ts"], "built_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "pull_seconds": None, "run_id": run_id, "rows_pulled": len(pulled.features), "files_read": pulled.metadata["files_read"],
            "retrieval_metadata": metadata, "sources": source_lineage(canonical, str(settings.base_path), instance),
            "filters": {"drop_imputed": canonical["drop_imputed"], "require_label": canonical["require_label"]},
            "key": DIFF_KEYS, "session_timezone": STOCKS.timezone,
        }
        previous = store.latest_id(name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        del pulled, frame  # at 50 symbols x 1 year each copy is ~0.7 GB: keep only the Arrow table
        manifest["pull_seconds"] = round((pd.Timestamp.now(tz="UTC") - started).total_seconds(), 3)
        dataset_id, created = store.write(name, table, manifest)
        changed = previous is not None and previous != dataset_id
        diff = diff_frames(store.read_pandas(previous), store.read_pandas(dataset_id)) if changed else None
        store.log_build(name, {
            "dataset_id": dataset_id, "built_at": pd.Timestamp.now(tz="UTC").isoformat(), "changed": changed, "created": created,
            "previous_dataset_id": previous, "run_id": run_id, "diff": diff, "pid": os.getpid(),
        })
    return handle_from_store(store, dataset_id, changed=changed, created=created, previous_dataset_id=previous, diff=diff)


def load_dataset(name_or_id: str, *, settings: PlatformSettings | None = None) -> DatasetHandle:
    """The handle of a stored dataset: an id (``momentum-3f9a0c1d2b4e``) or a name (its latest build)."""
    settings = settings or get_settings()
    store = DatasetStore(settings.base_path, fsync=False)
    return handle_from_store(store, store.resolve(name_or_id))


def list_training_datasets(*, settings: PlatformSettings | None = None) -> list[dict]:
    """Every stored dataset id (all names, oldest first per name) with its summary and whether it is the latest."""
    settings = settings or get_settings()
    store = DatasetStore(settings.base_path, fsync=False)
    out = []
    for name in store.names():
        latest = store.latest_id(name)
        for dataset_id in store.dataset_ids(name):
            m = store.manifest(dataset_id)
            cfg = m["config"]
            out.append({
                "dataset_id": dataset_id, "name": name, "latest": dataset_id == latest, "rows": m["rows"], "columns": m["columns"],
                "built_at": m["built_at"], "start": cfg["start"], "end": cfg["end"], "symbols": len(cfg["symbols"]),
                "feature_versions": cfg["feature_versions"], "label_def_version": cfg["label_def_version"] if cfg["include_labels"] else None,
                "content_hash": m["content_hash"],
            })
    return out


# ----------------------------------------------------------------------------- via Dagster
def _project_definitions(settings: PlatformSettings | None = None) -> dg.Definitions:
    """The project's definitions bound to ``settings`` (default: the environment's)."""
    from definitions import build_definitions  # imported lazily: the definitions import the whole asset graph

    return build_definitions(settings or get_settings())


def build_training_dataset(
    cfg: TrainingDatasetConfig, *, instance: dg.DagsterInstance | None = None, defs: dg.Definitions | None = None,
    settings: PlatformSettings | None = None,
) -> DatasetHandle:
    """Design 3.8.1: materialize the ``training_datasets`` asset for ``cfg`` (partition = dataset
    name) on the platform's Dagster instance and return the handle of the dataset it stored.

    Bad configs raise before any run starts (the ``platform_api.errors`` types); a failing build
    raises ``RuntimeError`` with the run's error. ``settings`` must match the ``defs``' lake.
    """
    name = cfg.dataset_name()  # validates the whole config first
    instance = instance or get_instance()
    settings = settings or get_settings()
    defs = defs or _project_definitions(settings)
    instance.add_dynamic_partitions(TRAINING_DATASETS_ASSET, [name])
    job = defs.resolve_job_def(TRAINING_DATASET_JOB)
    result = job.execute_in_process(
        instance=instance, partition_key=name, raise_on_error=False,
        run_config={"ops": {TRAINING_DATASETS_ASSET: {"config": run_config_of(cfg)}}},
    )
    if not result.success:
        raise_run_failure(result, f"training dataset build {name}")
    event = result.get_asset_materialization_events()[0].materialization
    meta = {k: v.value for k, v in event.metadata.items()}
    store = DatasetStore(settings.base_path, fsync=False)
    diff = json.loads(meta["diff"]) if meta.get("diff") else None
    return handle_from_store(store, meta["dataset_id"], changed=bool(meta["changed"]), created=bool(meta["created"]),
                             previous_dataset_id=meta.get("previous_dataset_id") or None, diff=diff)


def raise_run_failure(result, what: str, extra: tuple[type, ...] = ()) -> None:
    """Re-raise a failed in-process run's user error as its own type (``NoDataError`` ...) when
    it is one of the API's error types, else ``RuntimeError``; the message names the run."""
    failures = [e for e in result.all_events if e.is_step_failure and e.step_failure_data and e.step_failure_data.error]
    if not failures:
        raise RuntimeError(f"{what} failed (run {result.run_id})")
    error = failures[0].step_failure_data.error
    user = error.cause or error
    kind = next((c for c in extra if c.__name__ == user.cls_name), None) or getattr(api_errors, user.cls_name or "", None)
    message = user.message.strip()
    message = message.split(": ", 1)[1] if message.startswith(f"{user.cls_name}: ") else message
    if isinstance(kind, type) and issubclass(kind, ValueError):
        raise kind(f"{message} (run {result.run_id})")
    raise RuntimeError(f"{what} failed (run {result.run_id}): {user.cls_name}: {message}")


def run_config_of(cfg: TrainingDatasetConfig) -> dict:
    """The asset's run config for ``cfg`` (the fields of ``TrainingDatasetRunConfig``)."""
    data = cfg.to_dict()
    data.pop("name")
    return data


def config_from_mapping(values: Mapping, name: str | None = None) -> TrainingDatasetConfig:
    """A ``TrainingDatasetConfig`` from run config / JSON fields (unknown keys refused)."""
    allowed = set(TrainingDatasetConfig.__dataclass_fields__)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InvalidOptionError(f"unknown dataset config field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    fields = dict(values)
    if name is not None:
        fields["name"] = name
    return TrainingDatasetConfig(**fields)
