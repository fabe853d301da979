"""The bars manifests as a Dagster resource: ingestion logs each bars file it writes and keeps the
coverage document current (``resources.manifests`` for the files, ``resources.coverage_update``
for the refresh)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import PrivateAttr

from resources.coverage_update import update_coverage_file
from resources.manifests import append_jsonl_healing, download_manifest_path, download_record, manifest_dir


_PATH_FIELD = re.compile(rb'"path": "((?:[^"\\]|\\.)*)"')  # a line's "path" value as json.dumps wrote it


class BarsManifest(dg.ConfigurableResource):
    """Appends to the bars download log and refreshes the coverage manifest."""

    base_path: str
    fsync: bool = True
    backup_path: str | None = None  # ML_BACKUP_PATH
    _logged: set[str] | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path:
        return manifest_dir(self.base_path)

    def record(self, path: Path, frame: pd.DataFrame | pa.Table, *, vendor: str, symbol: str, bar_size: str, new: bool = True) -> dict | None:
        """Log one bars file. ``new=False``: a batch the run found already stored; logged only when
        the log has no line for it (a crash between writing the batch and logging it: the re-run
        finds the batch and would never log it, and coverage would miss the day for good).
        Returns the line logged (None: it was there)."""
        if not new and str(Path(path).absolute()) in self._logged_paths():
            return None
        record = download_record(Path(path), frame, vendor=vendor, symbol=symbol, bar_size=bar_size)
        log = download_manifest_path(self.base_path)
        append_jsonl_healing([record], log, fsync=self.fsync, base=Path(self.base_path), backup_path=self.backup_path)
        if self._logged is not None:
            self._logged.add(record["path"])
        return record

    def _logged_paths(self) -> set[str]:
        """The paths the download log names (read once per resource instance, i.e. per run: a
        pattern scan of the log, not a JSON parse per line)."""
        if self._logged is None:
            log = download_manifest_path(self.base_path)
            data = log.read_bytes() if log.exists() else b""
            self._logged = {json.loads(b'"' + match + b'"') for match in _PATH_FIELD.findall(data)}
        return self._logged

    def rebuild_coverage(self) -> dict:
        """Bring the coverage document up to date with the log (the lines logged since its last
        build merged in; a full rebuild when that could differ)."""
        return update_coverage_file(self.base_path, fsync=self.fsync, backup_path=self.backup_path)
