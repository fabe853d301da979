"""Slots that cap how many jobs of a kind run at once, across processes (the HTTP guide's
"concurrent downloads: limited to 5 parallel downloads"; "all async operations run in thread pool").

A job beyond the cap waits for a slot (its state stays PENDING) instead of being refused: a slot is
one of ``limit`` lock files ``{jobs dir}/slots/{group}-{i}.lock`` held with ``flock`` for the job's
duration, so a worker that dies frees its slot with its file descriptors, whatever killed it.
Standard library only: a job worker takes its slot before it imports Dagster, so a queued worker
costs a bare interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

REFRESH_GROUP = "refresh"
DEFAULT_REFRESH_SLOTS = 5  # API_MAX_CONCURRENT_REFRESHES' default
LIMIT_ENV = "API_MAX_CONCURRENT_REFRESHES"


def slot_limit(env: dict[str, str] | None) -> int:
    """The refresh slots from a settings environment (``API_MAX_CONCURRENT_REFRESHES``, default 5)."""
    try:
        return max(1, int((env or {}).get(LIMIT_ENV) or DEFAULT_REFRESH_SLOTS))
    except ValueError:
        return DEFAULT_REFRESH_SLOTS


@contextlib.contextmanager
def hold_slot(jobs_folder: Path | str, group: str, limit: int, poll_s: float = 0.2) -> Iterator[int]:
    """Block until one of ``limit`` slots of ``group`` is free, hold it inside the ``with``; yields its index."""
    folder = Path(jobs_folder) / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(max(1, limit)):
            fd = os.open(folder / f"{group}-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)


def slots_in_use(jobs_folder: Path | str, group: str, limit: int) -> int:
    """How many of the ``limit`` slots of ``group`` are held now (by any process)."""
    folder = Path(jobs_folder) / "slots"
    used = 0
    for index in range(max(1, limit)):
        path = folder / f"{group}-{index}.lock"
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            used += 1
        finally:
            os.close(fd)
    return used
