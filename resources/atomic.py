"""Atomic file writes: write a temp file in the target folder, fsync, then rename over the target.

A reader sees either the old file or the new one, never a partial file; a crash mid-write leaves at
most a ``.tmp-*`` file that the next write of the same folder ignores.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Run ``write(tmp_path)`` then atomically move ``tmp_path`` to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}{target.suffix}"
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def write_parquet_atomic(table: pa.Table, target: Path, *, fsync: bool = True) -> Path:
    """Write an Arrow table as one Parquet file (zstd), atomically."""
    return atomic_write(target, lambda tmp: pq.write_table(table, tmp, compression="zstd"), fsync=fsync)


def write_json_atomic(payload: object, target: Path, *, fsync: bool = True) -> Path:
    """Write a JSON document atomically (sorted keys, trailing newline)."""

    def _write(tmp: Path) -> None:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")

    return atomic_write(target, _write, fsync=fsync)


def append_jsonl(records: list[dict], target: Path, *, fsync: bool = True) -> None:
    """Append records to a JSON-lines file in one write (an append-only manifest)."""
    if not records:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(record, sort_keys=True, default=str) + "\n" for record in records)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
