"""Immutable training datasets in the lake: one folder per dataset id, written once, atomically.

Layout under ``{base}/lake/training_datasets``::

    name=<dataset name>/
        .lock                       exclusive while a build of this name decides and writes
        builds.jsonl                append-only log: one line per build (changed or not)
        id=<dataset id>/            written once, never modified afterwards
            data.parquet            the frame (zstd Parquet)
            manifest.json           config, rows, schema, content hash, file sha256, sources ...

A dataset id is ``<name>-<content hash, 12 hex>``: the same id always means the same rows, so a
handle (an id) loads the identical frame for as long as the folder exists, whatever happens to the
feature tables afterwards. The folder appears complete or not at all: both files are written into
a ``.tmp-<pid>-<uuid>`` folder beside it which is then renamed (one ``rename(2)``). Crashed
writers' temp folders are removed by the next build of that name once their pid is gone.

Pure storage: no knowledge of features or Dagster (``platform_api.training`` builds the frames).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from resources.atomic import TMP_PREFIX, _pid_alive, _temp_owner, file_lock
from resources.lake import content_hash
from resources.manifests import append_jsonl_healing, read_jsonl
from resources.validation import InvalidInputError

TABLE_DIR = "training_datasets"
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
BUILDS_FILE = "builds.jsonl"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
ID_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,79})-(?P<hash>[0-9a-f]{12})$")
MANIFEST_SCHEMA = "training_dataset.v1"


class UnknownTrainingDatasetError(InvalidInputError, LookupError):
    """No stored training dataset of that name or id."""


class DatasetIntegrityError(OSError):
    """A stored dataset no longer matches its manifest (hash or file checksum)."""


def validate_dataset_name(name: object) -> str:
    """A dataset name safe as a folder name (letters, digits, ``_ . -``; at most 80 characters)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(f"invalid dataset name {name!r}: letters, digits, '_', '.', '-' (starting with a letter or digit, at most 80)")
    return name


def parse_dataset_id(dataset_id: object) -> tuple[str, str]:
    """(name, 12-hex hash) of a dataset id such as ``momentum-3f9a0c1d2b4e``."""
    match = ID_PATTERN.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if not match:
        raise InvalidInputError(f"invalid dataset id {dataset_id!r}: expected <name>-<12 hex digits>, e.g. momentum-3f9a0c1d2b4e")
    return match["name"], match["hash"]


def frame_hash(frame: pd.DataFrame) -> str:
    """The content hash of a dataset frame: values, column names and dtypes (16 hex digits).

    Computed from the frame as every reader gets it back (``pd.read_parquet`` of the stored file),
    so the hash in the manifest can be re-checked from any later load.
    """
    dtypes = ",".join(f"{c}:{t}" for c, t in frame.dtypes.items())
    return content_hash(frame.reset_index(drop=True), "training_dataset.v1", dtypes)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def schema_of(table: pa.Table) -> list[dict]:
    """Per column: name, Arrow type, pandas dtype as read back, nullable, null count."""
    return [
        {"name": field.name, "arrow_type": str(field.type), "nullable": field.nullable, "nulls": int(table.column(field.name).null_count)}
        for field in table.schema
    ]


class DatasetStore:
    """Reads and writes the immutable training datasets of one lake."""

    def __init__(self, base_path: str | Path, *, fsync: bool = True):
        self.root = Path(base_path) / "lake" / TABLE_DIR
        self.fsync = fsync

    # --------------------------------------------------------------- paths
    def name_dir(self, name: str) -> Path:
        return self.root / f"name={validate_dataset_name(name)}"

    def dataset_dir(self, dataset_id: str) -> Path:
        name, _ = parse_dataset_id(dataset_id)
        return self.name_dir(name) / f"id={dataset_id}"

    def data_path(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / DATA_FILE

    def manifest_path(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / MANIFEST_FILE

    def lock(self, name: str):
        """Exclusive lock of one dataset name for a whole build (decide, write, log)."""
        return file_lock(self.name_dir(name) / ".lock")

    # ------------------------------------------------------------- listing
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(e.name[5:] for e in os.scandir(self.root) if e.is_dir() and e.name.startswith("name="))

    def dataset_ids(self, name: str) -> list[str]:
        """Stored ids of a name, oldest build first (by the manifest's ``built_at``)."""
        folder = self.name_dir(name)
        if not folder.is_dir():
            return []
        ids = [e.name[3:] for e in os.scandir(folder) if e.is_dir() and e.name.startswith("id=") and os.path.exists(os.path.join(e.path, MANIFEST_FILE))]
        return sorted(ids, key=lambda i: (self.manifest(i).get("built_at", ""), i))

    def builds(self, name: str) -> list[dict]:
        """The build log of a name (every build, including rebuilds that found no change)."""
        path = self.name_dir(name) / BUILDS_FILE
        if not path.exists():
            return []
        return [record for _, record in read_jsonl(path)]  # a line torn by a crash mid-append is skipped

    def latest_id(self, name: str) -> str | None:
        """The dataset id the newest build of ``name`` produced or confirmed."""
        builds = self.builds(name)
        if builds:
            return builds[-1]["dataset_id"]
        ids = self.dataset_ids(name)
        return ids[-1] if ids else None

    def resolve(self, name_or_id: str) -> str:
        """A dataset id from an id or a name (a name means its latest build)."""
        if isinstance(name_or_id, str) and ID_PATTERN.fullmatch(name_or_id) and self.manifest_path(name_or_id).exists():
            return name_or_id
        if isinstance(name_or_id, str) and NAME_PATTERN.fullmatch(name_or_id):
            latest = self.latest_id(name_or_id)
            if latest:
                return latest
        known = ", ".join(self.names()) or "none"
        raise UnknownTrainingDatasetError(f"no stored training dataset {name_or_id!r} (names: {known}; `mdp dataset list`)")

    def exists(self, dataset_id: str) -> bool:
        return self.manifest_path(dataset_id).exists() and self.data_path(dataset_id).exists()

    # ------------------------------------------------------------ reading
    def manifest(self, dataset_id: str) -> dict:
        path = self.manifest_path(dataset_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UnknownTrainingDatasetError(f"no stored training dataset {dataset_id!r} ({path} missing)") from None

    def read_arrow(self, dataset_id: str) -> pa.Table:
        return pq.read_table(self.data_path(dataset_id))

    def read_pandas(self, dataset_id: str) -> pd.DataFrame:
        return self.read_arrow(dataset_id).to_pandas()

    def verify(self, dataset_id: str) -> dict:
        """Re-check a stored dataset against its manifest; raises ``DatasetIntegrityError``."""
        manifest = self.manifest(dataset_id)
        sha = file_sha256(self.data_path(dataset_id))
        if sha != manifest["file_sha256"]:
            raise DatasetIntegrityError(f"{self.data_path(dataset_id)}: sha256 {sha} differs from the manifest's {manifest['file_sha256']}")
        found = frame_hash(self.read_pandas(dataset_id))
        if found != manifest["content_hash"]:
            raise DatasetIntegrityError(f"{dataset_id}: content hash {found} differs from the manifest's {manifest['content_hash']}")
        return {"dataset_id": dataset_id, "file_sha256": sha, "content_hash": found, "ok": True}

    # ------------------------------------------------------------ writing
    def write(self, name: str, table: pa.Table, manifest: dict) -> tuple[str, bool]:
        """Store ``table`` under ``<name>-<hash>`` unless that id exists; returns (id, written).

        Call under ``lock(name)``. The hash is taken from the frame as readers get it back
        (``table.to_pandas()``), so an unchanged rebuild is recognised without writing anything;
        a new dataset's file is read back and compared with the table before it is renamed into
        place (a round trip that changed the data raises ``DatasetIntegrityError``). The manifest gets
        ``dataset_id``, ``content_hash``, ``rows``, ``schema`` and ``file_sha256``.
        """
        digest = frame_hash(table.to_pandas())
        dataset_id = f"{name}-{digest[:12]}"
        if self.exists(dataset_id):
            return dataset_id, False
        folder = self.name_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        self._sweep(folder)
        tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            data = tmp / DATA_FILE
            pq.write_table(table, data, compression="zstd")
            stored = pq.read_table(data)
            if not stored.equals(table):  # Arrow equality (vectorised): equal tables give equal frames, so equal hashes
                raise DatasetIntegrityError(f"{dataset_id}: the Parquet round trip changed the data (hash {digest} before writing)")
            full = {**manifest, "schema_version": MANIFEST_SCHEMA, "dataset_id": dataset_id, "dataset_name": name, "content_hash": digest,
                    "rows": stored.num_rows, "columns": stored.num_columns, "schema": schema_of(stored), "file_sha256": file_sha256(data),
                    "file_bytes": data.stat().st_size, "data_file": DATA_FILE}
            (tmp / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
            if self.fsync:
                for path in (data, tmp / MANIFEST_FILE):
                    with open(path, "rb") as handle:
                        os.fsync(handle.fileno())
            os.rename(tmp, folder / f"id={dataset_id}")
            if self.fsync:
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return dataset_id, True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def log_build(self, name: str, record: dict) -> None:
        """Append one line to the name's build log (call under ``lock(name)``)."""
        append_jsonl_healing([record], self.name_dir(name) / BUILDS_FILE, fsync=self.fsync)  # a torn last line moved aside first

    @staticmethod
    def _sweep(folder: Path) -> None:
        """Remove temp folders of writers that are gone (never a live writer's)."""
        for entry in os.scandir(folder):
            if entry.name.startswith(TMP_PREFIX) and entry.is_dir():
                owner = _temp_owner(entry.name)
                if owner != os.getpid() and (owner is None or not _pid_alive(owner)):
                    with contextlib.suppress(FileNotFoundError):
                        shutil.rmtree(entry.path)
