"""The bars manifests as a Dagster resource: ingestion logs each bars file it writes and keeps the
coverage document current (``resources.manifests`` for the files, ``resources.coverage_update``
for the refresh)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa

from resources.coverage_update import update_coverage_file
from resources.manifests import append_jsonl_healing, download_manifest_path, download_record, manifest_dir


class BarsManifest(dg.ConfigurableResource):
    """Appends to the bars download log and refreshes the coverage manifest."""

    base_path: str
    fsync: bool = True
    backup_path: str | None = None  # ML_BACKUP_PATH

    @property
    def folder(self) -> Path:
        return manifest_dir(self.base_path)

    def record(self, path: Path, frame: pd.DataFrame | pa.Table, *, vendor: str, symbol: str, bar_size: str) -> dict:
        record = download_record(Path(path), frame, vendor=vendor, symbol=symbol, bar_size=bar_size)
        log = download_manifest_path(self.base_path)
        append_jsonl_healing([record], log, fsync=self.fsync, base=Path(self.base_path), backup_path=self.backup_path)
        return record

    def rebuild_coverage(self) -> dict:
        """Bring the coverage document up to date with the log (the lines logged since its last
        build merged in; a full rebuild when that could differ)."""
        return update_coverage_file(self.base_path, fsync=self.fsync, backup_path=self.backup_path)
