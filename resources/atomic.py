"""Atomic file writes: write a temp file in the target folder, fsync, then rename over the target.

A reader sees either the old file or the new one, never a partial file; a crash mid-write leaves at
most a ``.tmp-<pid>-<uuid>`` file. Every write sweeps its folder of such leftovers first
(``sweep_stale_temp_files``): a temp file is removed only when its writer is provably gone (its pid
is not a live process on this host, and the file is older than ``TMP_GRACE_SECONDS``) or when it is
older than ``TMP_MAX_AGE_SECONDS`` whatever its pid, so a live writer's temp file is never raced.

``file_lock`` is the one cross-process lock primitive of the lake (``fcntl.flock`` on a lock file,
shared or exclusive, with a bounded wait that ends in an error naming the lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from resources.parquet_format import compressed_options

TMP_PREFIX = ".tmp-"
TMP_GRACE_SECONDS = 60.0
"""A dead writer's temp file younger than this is kept (clock skew, pid namespaces)."""
TMP_MAX_AGE_SECONDS = 24 * 3600.0
"""Any temp file older than this is removed, even if its pid is alive again (pid reuse)."""
LOCK_WAIT_SECONDS = 600.0
"""The longest a lake writer or reader waits for a lock before failing with ``LockTimeoutError``."""


class LockTimeoutError(TimeoutError):
    """A lock was not granted within the bounded wait; the message names the lock file."""


def ensure_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) unless it exists: a stat first, as a ``mkdir`` of an
    existing folder costs ~10x more and every lake write and lock makes sure of its folder."""
    if not os.path.isdir(folder):
        folder.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, timeout: float = LOCK_WAIT_SECONDS, create: bool = True):
    """Hold ``flock`` on ``path`` (shared or exclusive) for the ``with`` block, across processes.

    Locks are per open file, so two holders in one process conflict like two processes do. With
    ``create=False`` a missing folder (nothing stored yet) means there is nothing to lock.
    """
    if create:
        ensure_dir(path.parent)
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # a read-only view of the lake: an existing lock file still works
            fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if create:
            raise
        yield  # the folder does not exist: nothing stored yet, nothing to protect
        return
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    kind = "shared" if shared else "exclusive"
                    raise LockTimeoutError(f"{path}: no {kind} lock within {timeout:g}s (another process holds it)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")  # a zombie has finished writing
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _temp_owner(name: str) -> int | None:
    """The writer pid in ``.tmp-<pid>-<uuid>``; None for other (older) temp names."""
    head = name[len(TMP_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() and "-" in name[len(TMP_PREFIX):] else None


def sweep_stale_temp_files(folder: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temp files crashed writers left in ``folder`` (never a live writer's). Returns them."""
    removed = []
    now = time.time() if now is None else now
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(TMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        owner = _temp_owner(entry.name)
        if owner == os.getpid():
            continue  # ours: a concurrent write of this process, live by definition
        dead = owner is None or not _pid_alive(owner)
        if (dead and age > TMP_GRACE_SECONDS) or age > TMP_MAX_AGE_SECONDS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def sweep_tree(root: Path, *, now: float | None = None, keep_dir: Callable[[str], bool] | None = None) -> list[Path]:
    """``sweep_stale_temp_files`` in every folder below ``root`` (a run-start / compaction sweep);
    ``keep_dir(name)`` False prunes a sub-folder."""
    removed: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if keep_dir is not None:
            dirs[:] = [d for d in dirs if keep_dir(d)]
        if any(name.startswith(TMP_PREFIX) for name in files):
            removed += sweep_stale_temp_files(Path(folder), now=now)
    return removed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, write: Callable[[Path], None], *, fsync: bool = True, sweep: bool = True) -> Path:
    """Run ``write(tmp_path)`` then atomically move ``tmp_path`` to ``target``.

    ``sweep=False`` skips the sweep of the target folder (a listing of it): for a writer of many
    files into one large folder that swept it once before its writes."""
    ensure_dir(target.parent)
    if sweep:
        sweep_stale_temp_files(target.parent)
    tmp = target.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{target.suffix}"
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


def write_parquet_atomic(table: pa.Table, target: Path, *, fsync: bool = True, options: dict | None = None, sweep: bool = True) -> Path:
    """Write an Arrow table as one Parquet file, atomically: zstd, LZ4 for a small table
    (``parquet_format.compressed_options``), or ``options`` for ``pq.write_table``
    (``resources.parquet_format.write_options``)."""
    options = options or compressed_options(table.schema, table.num_rows)
    return atomic_write(target, lambda tmp: pq.write_table(table, tmp, **options), fsync=fsync, sweep=sweep)


def write_json_atomic(payload: object, target: Path, *, fsync: bool = True, indent: int | None = 2) -> Path:
    """Write a JSON document atomically (sorted keys, trailing newline). ``indent=None``: compact,
    for documents that grow with the history (the C encoder; an indented document is encoded in
    Python, ~10x slower)."""

    def _write(tmp: Path) -> None:
        tmp.write_text(json.dumps(payload, indent=indent, sort_keys=True, default=str) + "\n")

    return atomic_write(target, _write, fsync=fsync)


def append_jsonl(records: list[dict], target: Path, *, fsync: bool = True) -> None:
    """Append records to a JSON-lines file in one write (an append-only manifest)."""
    if not records:
        return
    ensure_dir(target.parent)
    data = "".join(json.dumps(record, sort_keys=True, default=str) + "\n" for record in records)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
