"""Keeping ``bars_coverage_manifest.json`` current without re-reading the whole download log.

The full rebuild (``manifests.rebuild_coverage_file``, what ``mdp build-bars-coverage`` runs) parses
every line of the download log: ~26 us per logged file, ~16 s at 500 symbols x 5 years, paid at the
end of every raw run, daily ones included. ``update_coverage_file`` merges only the lines appended
since the last build into the current document. A state file next to the log
(``{base}/manifests/.bars_coverage_state.json``) records how far the log was read and which document
that produced (size and modification time).

The merge gives the full rebuild's document; it rebuilds in full instead whenever it could not:

* no state yet, or the log or the document is not the one the state describes (replaced,
  truncated, rewritten by another tool, restored from a backup);
* a file the document names no longer exists (quarantined or deleted): every named file is checked;
* a new line ties the day's current best file on rows (the full rebuild breaks ties by
  ``written_at``, which the document does not carry);
* the log ends in an unterminated line (a crash mid-append; the next writer moves it aside).

One case is left to the full rebuild: a logged file that was missing at the last build and has
come back (restored by hand) counts again at the next ``mdp build-bars-coverage``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resources.atomic import write_json_atomic
from resources.manifests import (
    ManifestError,
    build_coverage,
    coverage_entry,
    coverage_path,
    day_entry,
    download_manifest_path,
    locked,
    manifest_dir,
    parse_download_lines,
    read_coverage,
    read_download_manifest,
    utc_date,
)
from resources.mirror import mirror_file

STATE_FILE = ".bars_coverage_state.json"
STATE_VERSION = 1
HEAD_BYTES = 4096  # the log's first bytes identify it (a replaced log starts differently)


def state_path(base_path: str | Path) -> Path:
    return manifest_dir(base_path) / STATE_FILE


@dataclass(frozen=True)
class LogPosition:
    """How much of the download log a coverage document was built from."""

    inode: int
    offset: int  # bytes read: the end of the last complete line
    lines: int
    head: str  # sha256 of the log's first HEAD_BYTES bytes (fewer when it was shorter)

    def as_dict(self) -> dict:
        return {"inode": self.inode, "offset": self.offset, "lines": self.lines, "head": self.head}


def _head_digest(log: Path, size: int) -> str:
    with open(log, "rb") as handle:
        return hashlib.sha256(handle.read(min(size, HEAD_BYTES))).hexdigest()


def _log_end(log: Path) -> LogPosition | None:
    """The position after the log's last line (what a full rebuild reads); None when that line is
    unterminated (a crash mid-append): the rebuild reads it, the next append moves it aside."""
    if not log.exists():
        return LogPosition(0, 0, 0, hashlib.sha256(b"").hexdigest())
    data = log.read_bytes()
    if data and not data.endswith(b"\n"):
        return None
    return LogPosition(log.stat().st_ino, len(data), data.count(b"\n"), _head_digest(log, len(data)))


def _write_state(base: Path, position: LogPosition, document_path: Path) -> None:
    stat = document_path.stat()
    state = {"version": STATE_VERSION, "log": position.as_dict(), "coverage": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}}
    write_json_atomic(state, state_path(base), fsync=False, indent=None)  # derived: a lost state means one full rebuild


def _read_state(base: Path) -> dict | None:
    try:
        state = json.loads(state_path(base).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("version") == STATE_VERSION else None


def _valid_start(state: dict, log: Path, document_path: Path) -> LogPosition | None:
    """The logged position to continue from, or None when the state does not describe these files."""
    try:
        recorded = LogPosition(**state["log"])
        coverage = state["coverage"]
        document_stat, log_stat = document_path.stat(), log.stat()
    except (OSError, KeyError, TypeError):
        return None
    if (document_stat.st_size, document_stat.st_mtime_ns) != (coverage.get("size"), coverage.get("mtime_ns")):
        return None
    if log_stat.st_ino != recorded.inode or log_stat.st_size < recorded.offset:
        return None
    if _head_digest(log, recorded.offset) != recorded.head:
        return None
    return recorded


def full_rebuild(base: Path, *, fsync: bool, backup_path: str | None) -> dict:
    """Re-derive the document from the whole log and record the position; call with the log's lock held."""
    log = download_manifest_path(base)
    position = _log_end(log)
    document = build_coverage(read_download_manifest(log), exists=os.path.exists)
    target = write_json_atomic(document, coverage_path(base), fsync=fsync, indent=None)  # a day entry per symbol-day: compact
    if position is None:
        state_path(base).unlink(missing_ok=True)  # the next refresh rebuilds in full
    else:
        _write_state(base, position, target)
    mirror_file(target, base, backup_path, fsync=fsync)
    return document


def rebuild_coverage_file(base_path: str | Path, *, fsync: bool = True, backup_path: str | None = None) -> dict:
    """Re-derive ``{base}/bars_coverage_manifest.json`` from the whole download log (what
    ``mdp build-bars-coverage`` runs)."""
    base = Path(base_path)
    with locked(download_manifest_path(base)):
        return full_rebuild(base, fsync=fsync, backup_path=backup_path)


class _NeedsFullRebuild(Exception):
    """The merge cannot be sure to equal the full rebuild."""


def _merge(document: dict, records: list[dict]) -> None:
    """Merge new download records into the document in place (``build_coverage``'s choice of the
    best file per day); raises ``_NeedsFullRebuild`` on a tie the document cannot break."""
    entries = {(entry["symbol"], entry["bar_size"]): entry for entry in document["entries"]}
    day_maps: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        if record["time_start"] is None or not os.path.exists(record["path"]):
            continue
        key, day = (record["symbol"], record["bar_size"]), utc_date(record["time_start"])
        days = day_maps.get(key)
        if days is None:
            days = day_maps[key] = {d["date"]: d for d in entries[key]["days"]} if key in entries else {}
        current = days.get(day)
        if current is not None and record["rows"] == current["rows"]:
            raise _NeedsFullRebuild(f"{key} {day}: a tie on rows")
        if current is None or record["rows"] > current["rows"]:
            days[day] = day_entry(day, record)
    for (symbol, bar_size), days in day_maps.items():
        entries[(symbol, bar_size)] = coverage_entry(symbol, bar_size, days)
    document["entries"] = [entries[key] for key in sorted(entries)]
    document["generated_at"] = pd.Timestamp.now(tz="UTC").isoformat()


def _named_files_exist(document: dict) -> bool:
    return all(os.path.exists(day["path"]) for entry in document["entries"] for day in entry["days"])


def _readable_coverage(path: Path) -> dict:
    try:
        return read_coverage(path)
    except ManifestError as error:
        raise _NeedsFullRebuild(str(error)) from None


def update_coverage_file(base_path: str | Path, *, fsync: bool = True, backup_path: str | None = None) -> dict:
    """Bring ``{base}/bars_coverage_manifest.json`` up to date with the download log: merge the lines
    appended since the last build, or rebuild in full when the merge could differ (module doc)."""
    base = Path(base_path)
    log, document_path = download_manifest_path(base), coverage_path(base)
    with locked(log):
        state = _read_state(base)
        start = _valid_start(state, log, document_path) if state else None
        if start is None:
            return full_rebuild(base, fsync=fsync, backup_path=backup_path)
        with open(log, "rb") as handle:
            handle.seek(start.offset)
            appended = handle.read()
        complete = appended.rfind(b"\n") + 1
        if complete < len(appended):
            return full_rebuild(base, fsync=fsync, backup_path=backup_path)  # an unterminated last line
        try:
            document = _readable_coverage(document_path)
            if not _named_files_exist(document):
                raise _NeedsFullRebuild("a named file is gone")
            if not complete:
                return document  # nothing new, every named file still there
            text = appended.decode("utf-8")
            records = parse_download_lines(text.split("\n"), log, first_line=start.lines + 1, base=base)
            _merge(document, records)
        except _NeedsFullRebuild:
            return full_rebuild(base, fsync=fsync, backup_path=backup_path)
        position = LogPosition(start.inode, start.offset + complete, start.lines + text.count("\n"), start.head if start.offset >= HEAD_BYTES else _head_digest(log, start.offset + complete))
        target = write_json_atomic(document, document_path, fsync=fsync, indent=None)
        _write_state(base, position, target)
        mirror_file(target, base, backup_path, fsync=fsync)
        return document
