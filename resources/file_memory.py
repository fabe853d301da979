"""A bounded, process-wide memory of what files hold, keyed by the files as they are on disk.

A run's steps run in one process (Dagster's in-process executor) and read back files an earlier
step of the same run has just written (the L2 features read the L2 days the L2 step wrote,
curation the raw batches of the raw step) or read (alignment the top of book curation read). A
``FileMemory`` keeps those values so the later step does not read and decode the files again.

The key of a file is its identity on disk: name, inode, size, modification and change times
(``file_identity``). A replaced file (every lake and L2 write is a rename of a new file) or an added
one is a different key, so an entry is never served for other bytes; a writer remembers what it
wrote only when the file at the target is the one it renamed: the lake's writers hold the file's
(table, symbol) lock, which keeps other writers out; the L2 writer holds none and checks the inode
(``write_and_identify``: a writer renaming over it in between is detected).

Bounded by bytes. A run reads its days in the same order in every step, so when they do not all
fit, the first ones are kept (a newer entry is not admitted while the memory is full of entries
younger than ``ttl_seconds``): the next steps then find those instead of each miss evicting the
entry they need next (no hit at all, as with dropping the oldest).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

MEMORY_TTL_SECONDS = 3600.0
"""Entries younger than this are not dropped for newer ones."""


def file_identity(path: Path | str, stat: os.stat_result | None = None) -> tuple:
    """What identifies a file's bytes on disk now (``stat`` when the caller has it)."""
    st = stat if stat is not None else os.stat(path)
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def files_identity(files: Sequence[Path]) -> tuple | None:
    """The identity of several files (a day's L2 files); None when one vanished (let the read raise)."""
    try:
        return tuple(file_identity(path) for path in files)
    except FileNotFoundError:
        return None


def write_and_identify(atomic_write: Callable, target: Path, write: Callable[[Path], None], **kwargs) -> tuple[Path, tuple | None]:
    """``atomic_write(target, write, **kwargs)``, and the identity of the file at ``target`` when it
    is still the one written (None when another writer renamed its file over it since)."""
    inode: list[int] = []

    def write_and_note(tmp: Path) -> None:
        write(tmp)
        inode.append(os.stat(tmp).st_ino)

    path = atomic_write(target, write_and_note, **kwargs)
    try:
        identity = file_identity(path)
    except FileNotFoundError:
        return path, None
    return path, identity if identity[1] == inode[0] else None


class FileMemory:
    """Values of files lately written or read, by file identity, bounded by ``budget`` bytes."""

    def __init__(self, budget: int, ttl_seconds: float = MEMORY_TTL_SECONDS):
        self.budget, self.ttl, self.size = budget, ttl_seconds, 0
        self._entries: OrderedDict[tuple, tuple[object, int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0

    def put(self, key: tuple, value: object, nbytes: int) -> None:
        if nbytes > self.budget:
            return
        now = time.monotonic()
        with self._lock:
            old = self._entries.pop(key, None)
            self.size -= old[1] if old else 0
            while self._entries and self.size + nbytes > self.budget:
                oldest = next(iter(self._entries.values()))
                if now - oldest[2] < self.ttl:
                    return  # full of entries still being read: keep them, do not admit this one
                self.size -= self._entries.popitem(last=False)[1][1]
            self._entries[key] = (value, nbytes, now)
            self.size += nbytes
