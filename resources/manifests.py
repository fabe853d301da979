"""The bars manifests of the TF_1 contract: an append-only download log and the coverage it implies.

* ``{base}/manifests/bars_download_manifest.jsonl``: one line per bars file written
  (``schema_version: bars_manifest.v1``, written_at, vendor, file_format, symbol, bar_size, path,
  filename, rows, columns, time_start, time_end). Appended under a file lock, never rewritten.
* ``{base}/manifests/bars_coverage_manifest.json`` (``bars_coverage.v1``): derived from the log,
  per (symbol, bar_size) the total date range and the best file per day (most rows, then newest).
  Rebuilt atomically; can always be regenerated from the log.

Lines or documents with an unknown ``schema_version`` are rejected with the file and line named.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import dagster as dg
import pandas as pd

from resources.atomic import append_jsonl, write_json_atomic

BARS_MANIFEST_VERSION = "bars_manifest.v1"
COVERAGE_VERSION = "bars_coverage.v1"
DOWNLOAD_MANIFEST = "bars_download_manifest.jsonl"
COVERAGE_MANIFEST = "bars_coverage_manifest.json"
MANIFEST_FIELDS = ("schema_version", "written_at", "vendor", "file_format", "symbol", "bar_size", "path", "filename", "rows", "columns", "time_start", "time_end")


class ManifestError(ValueError):
    """A manifest line or document does not follow a known schema version."""


def manifest_dir(base_path: str | Path) -> Path:
    return Path(base_path) / "manifests"


def download_record(base: Path, path: Path, frame: pd.DataFrame, *, vendor: str, symbol: str, bar_size: str, time_column: str = "ts") -> dict:
    times = pd.to_datetime(frame[time_column], utc=True) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    return {
        "schema_version": BARS_MANIFEST_VERSION,
        "written_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "vendor": vendor,
        "file_format": path.suffix.lstrip(".") or "parquet",
        "symbol": symbol,
        "bar_size": bar_size,
        "path": str(path.relative_to(base)) if path.is_relative_to(base) else str(path),
        "filename": path.name,
        "rows": int(len(frame)),
        "columns": list(map(str, frame.columns)),
        "time_start": times.min().isoformat() if len(times) else None,
        "time_end": times.max().isoformat() if len(times) else None,
    }


def read_download_manifest(path: Path) -> list[dict]:
    """Every record of the log; a torn last line (crash mid-append) is ignored, anything else invalid raises."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # an append interrupted by a crash: the file it described is re-recorded on re-run
            raise ManifestError(f"{path}:{number}: not valid JSON") from None
        version = record.get("schema_version") if isinstance(record, dict) else None
        if version != BARS_MANIFEST_VERSION:
            raise ManifestError(f"{path}:{number}: unknown schema_version {version!r} (supported: {BARS_MANIFEST_VERSION})")
        missing = [f for f in MANIFEST_FIELDS if f not in record]
        if missing:
            raise ManifestError(f"{path}:{number}: missing fields {missing}")
        records.append(record)
    return records


def build_coverage(records: list[dict]) -> dict:
    """The ``bars_coverage.v1`` document from download records (pure)."""
    entries: dict[tuple[str, str], dict] = {}
    for record in records:
        if record["time_start"] is None:
            continue
        day = pd.Timestamp(record["time_start"]).date().isoformat()
        entry = entries.setdefault((record["symbol"], record["bar_size"]), {"symbol": record["symbol"], "bar_size": record["bar_size"], "days": {}})
        best = entry["days"].get(day)
        candidate = {k: record[k] for k in ("path", "filename", "rows", "vendor", "written_at", "time_start", "time_end")}
        if best is None or (candidate["rows"], candidate["written_at"]) > (best["rows"], best["written_at"]):
            entry["days"][day] = candidate
    out = []
    for (symbol, bar_size), entry in sorted(entries.items()):
        days = sorted(entry["days"])
        out.append({**entry, "days": {d: entry["days"][d] for d in days}, "start_date": days[0], "end_date": days[-1], "day_count": len(days)})
    return {"schema_version": COVERAGE_VERSION, "generated_at": pd.Timestamp.now(tz="UTC").isoformat(), "entries": out}


def read_coverage(path: Path) -> dict:
    document = json.loads(path.read_text())
    if document.get("schema_version") != COVERAGE_VERSION:
        raise ManifestError(f"{path}: unknown schema_version {document.get('schema_version')!r} (supported: {COVERAGE_VERSION})")
    return document


class BarsManifest(dg.ConfigurableResource):
    """Appends to the bars download log and rebuilds the coverage manifest under ``{base}/manifests``."""

    base_path: str
    fsync: bool = True

    @property
    def folder(self) -> Path:
        return manifest_dir(self.base_path)

    def record(self, path: Path, frame: pd.DataFrame, *, vendor: str, symbol: str, bar_size: str) -> dict:
        record = download_record(Path(self.base_path), Path(path), frame, vendor=vendor, symbol=symbol, bar_size=bar_size)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            append_jsonl([record], self.folder / DOWNLOAD_MANIFEST, fsync=self.fsync)
        return record

    def rebuild_coverage(self) -> dict:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            document = build_coverage(read_download_manifest(self.folder / DOWNLOAD_MANIFEST))
            write_json_atomic(document, self.folder / COVERAGE_MANIFEST, fsync=self.fsync)
        return document
