"""Fault injection shared by the chaos tests: a full disk for chosen lake month-file writes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from resources.lake import ParquetLake, Table


@contextlib.contextmanager
def full_disk_for_month_writes(monkeypatch, when: Callable[[Table, str, dict], bool], what: str = "injected") -> Iterator[None]:
    """Inside the block, ``ParquetLake._write_month_parts(table, symbol, month, parts)`` raises ENOSPC
    where ``when(table, symbol, parts)`` is true (``parts``: date -> rows) and writes otherwise."""
    real = ParquetLake._write_month_parts

    def write(self, table, symbol, month, parts, *args, **kwargs):
        if when(table, symbol, parts):
            raise OSError(28, f"No space left on device ({what})")
        return real(self, table, symbol, month, parts, *args, **kwargs)

    monkeypatch.setattr(ParquetLake, "_write_month_parts", write)
    try:
        yield
    finally:
        monkeypatch.setattr(ParquetLake, "_write_month_parts", real)
