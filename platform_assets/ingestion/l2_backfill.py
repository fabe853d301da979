"""Historical L2 from Databento mbp-10: one (symbol, trading day) at a time, and batches of them.

``backfill_l2_day`` fetches the day's mbp-10 records inside the ET window (the settings'
``l2_window``: ``L2_BACKFILL_WINDOW_ET`` within ``L2_TRADING_WINDOW_ET``, DST-aware; snapshots
outside it are dropped), converts them to fixed 10-level snapshots (sampled on a time grid like
live capture, or one per event: ``l2_sampling.L2Sampling``) and writes
``level2/{SYMBOL}/{YYYY-MM-DD}_snapshots_databento.parquet`` atomically, streaming record batches
to the file. It is idempotent: an existing file is skipped (``SKIP`` in the manifest) unless
``force``. A day with no records writes nothing and reports ``zero_rows`` (``EMPTY``). Errors are
captured (``status: error``) unless ``strict``; a stream that arrives cut short (after the adapter's
retries: ``DatabentoIncompleteStreamError``) is one, and nothing of the day is written. Only the
records of the symbol's instruments (the chunk's symbology) are sampled: records of other
instruments in the stream are dropped, counted (``foreign_records``) and logged.

``run_l2_backfill`` runs many tasks with a thread pool and writes the contract's
``backfill_l2_manifest.jsonl`` (append-only, under a file lock, a torn tail healed before each
append; lines in task order whatever the completion order, each appended as soon as every earlier
task is done) and ``backfill_l2_summary.json`` (``counts``, ``zero_row_tasks`` as ``[symbol,
date]`` pairs, ``errors`` as strings, ``total_tasks``, ``duration_sec``, ``strict``, ``force``,
``max_tasks``, ``concurrency``). Both are mirrored to ``ML_BACKUP_PATH`` when it is set.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from platform_assets.ingestion.l2_sampling import L2Sampling, sample_books
from resources.atomic import write_json_atomic
from resources.databento_source import Chunk, DatabentoError, DatabentoSource, et_day_bounds
from resources.l2_store import L2SnapshotStore, set_aside
from resources.lake import decodable_rows
from resources.manifests import append_jsonl_healing, read_jsonl
from resources.mirror import mirror_file

DATABENTO_SUFFIX = "databento"
MANIFEST_FILE = "backfill_l2_manifest.jsonl"
SUMMARY_FILE = "backfill_l2_summary.json"
MANIFEST_STATUS = {"written": "WRITE", "skipped": "SKIP", "empty": "EMPTY", "error": "ERROR"}
COUNT_KEYS = ("WRITE", "SKIP", "EMPTY", "ERROR")
LOG = logging.getLogger("platform.l2_backfill")


class L2BackfillFailed(RuntimeError):
    """A strict batch stopped at its first error; ``summary`` is the batch's summary document
    (already written to ``backfill_l2_summary.json``), so callers can still log its SUMMARY line."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def own_records(chunk: Chunk, vendor: str, counts: dict) -> Iterator[np.ndarray]:
    """The chunk's mbp-10 record batches of ``vendor``'s instruments (its symbology) only: records
    of other instruments (another book mixed into the stream) are dropped and counted in
    ``counts["foreign_records"]``. Records when the symbology names no instrument of ``vendor``
    cannot be attributed: ``DatabentoError``."""
    ids = np.array([i for i, symbol in chunk.instrument_symbols().items() if symbol == vendor], dtype=np.uint64)
    for records in chunk.record_batches():
        if len(records) and not len(ids):
            raise DatabentoError(f"the Databento {chunk.name} has records but its symbology names no instrument of {vendor}")
        mine = np.isin(records["instrument_id"], ids)
        counts["foreign_records"] += len(records) - int(mine.sum())
        yield records if mine.all() else records[mine]


def backfill_l2_day(
    source: DatabentoSource, store: L2SnapshotStore, symbol: str, day: dt.date, window: tuple[dt.time, dt.time],
    *, force: bool = False, strict: bool = False, sampling: L2Sampling | None = None,
) -> dict:
    """``{symbol, date, status: written|skipped|error, zero_rows, path, rows, error, sampling}``
    (and ``foreign_records`` when records of other instruments were dropped).

    ``sampling`` (default: a grid at live capture's 1 s) says how events become snapshots
    (``l2_sampling``); it is stored in the file's ``l2_sampling`` metadata. An existing file is
    skipped whatever its sampling (``force`` re-samples it) when all of it decodes; an unreadable
    one (torn by a crash, corrupt) is moved aside (``set_aside`` in the result says where) and the
    day fetched again: a skip always stands for a usable file."""
    sampling = sampling or L2Sampling()
    path = store.snapshot_path(symbol, day, DATABENTO_SUFFIX)
    result = {"symbol": symbol, "date": day.isoformat(), "status": "skipped", "zero_rows": False, "path": str(path), "rows": 0, "error": None,
              "sampling": sampling.describe()}
    if path.exists() and not force:
        rows = decodable_rows(path)
        if rows is not None:
            result["rows"] = rows
            return result
        result["set_aside"] = str(set_aside(path))  # unreadable (torn, corrupt): kept aside, the day fetched again
    try:
        start, end = et_day_bounds(day, window)
        vendor = source.vendor_symbols([symbol])[symbol]
        counts = {"foreign_records": 0}

        def batches():
            for chunk in source.fetch([vendor], "mbp-10", start, end):
                yield from own_records(chunk, vendor, counts)

        written, rows = store.write_stream(symbol, day, sample_books(batches(), sampling, (start, end)), suffix=DATABENTO_SUFFIX,
                                           source=DATABENTO_SUFFIX, metadata=sampling.file_metadata())
        if counts["foreign_records"]:
            result["foreign_records"] = counts["foreign_records"]
            LOG.warning("%s %s: dropped %d mbp-10 records of other instruments than %s", symbol, day, counts["foreign_records"], vendor)
        if written is None:
            result.update(zero_rows=True)
        else:
            result.update(status="written", rows=rows)
    except Exception as error:
        if strict:
            raise
        result.update(status="error", error=f"{type(error).__name__}: {error}")
    result["path"] = str(path) if path.exists() else None  # the guide: a path only when written or existing
    return result




def manifest_status(result: dict) -> str:
    if result["status"] == "skipped" and result["zero_rows"]:
        return "EMPTY"
    return MANIFEST_STATUS[result["status"]]


class OrderedManifest:
    """Appends results in task order as soon as the prefix before them is complete."""

    def __init__(self, path: Path, fsync: bool, base: Path | None = None, backup_path: str | Path | None = None):
        self.path, self.fsync, self.base, self.backup_path = path, fsync, base, backup_path
        self._pending: dict[int, dict] = {}
        self._next = 0
        self._lock = threading.Lock()

    def add(self, index: int, result: dict) -> None:
        with self._lock:
            self._pending[index] = result
            ready = []
            while self._next in self._pending:
                ready.append(self._pending.pop(self._next))
                self._next += 1
            append_jsonl_healing([_manifest_line(r) for r in ready], self.path, fsync=self.fsync, base=self.base, backup_path=self.backup_path)


def read_l2_manifest(path: Path) -> list[dict]:
    """Every line of ``backfill_l2_manifest.jsonl``; a torn last line (crash mid-append) is skipped."""
    return [record for _, record in read_jsonl(path)]


def error_text(result: dict) -> str:
    """One line per failed task: ``SYMBOL YYYY-MM-DD: <error>`` (the summary's ``errors``)."""
    return f"{result['symbol']} {result['date']}: {result['error']}"


def _manifest_line(result: dict) -> dict:
    return {
        "symbol": result["symbol"], "date": result["date"], "status": manifest_status(result), "rows": result["rows"],
        "path": result["path"], "error": result["error"], "recorded_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }


def run_l2_backfill(
    tasks: list[tuple[str, dt.date]], run_one: Callable[[str, dt.date], dict], folder: Path, *,
    max_workers: int = 4, force: bool = False, strict: bool = False, max_tasks: int | None = None, fsync: bool = True,
    on_done: Callable[[dict, int, int], None] | None = None, base: Path | None = None, backup_path: str | Path | None = None,
) -> dict:
    """Run ``run_one`` over ``tasks`` (at most ``max_tasks``) with ``max_workers`` threads; returns the summary.

    ``base`` / ``backup_path``: mirror the manifest and summary to ``backup_path`` (ML_BACKUP_PATH)
    at their path relative to ``base``.
    """
    started = time.monotonic()
    chosen = tasks[:max_tasks] if max_tasks is not None else list(tasks)
    manifest = OrderedManifest(folder / MANIFEST_FILE, fsync, base, backup_path)
    results: list[dict | None] = [None] * len(chosen)
    done = 0
    with cf.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(run_one, symbol, day): i for i, (symbol, day) in enumerate(chosen)}
        for future in cf.as_completed(futures):
            if future.cancelled():  # strict mode stopped the batch: never run, never recorded
                continue
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # strict: stop scheduling, record, re-raise after the summary
                symbol, day = chosen[index]
                result = {"symbol": symbol, "date": day.isoformat(), "status": "error", "zero_rows": False, "path": None, "rows": 0, "error": f"{type(error).__name__}: {error}"}
                if strict:
                    for other in futures:
                        other.cancel()
            results[index] = result
            manifest.add(index, result)
            done += 1
            if on_done:
                on_done(result, done, len(chosen))
    finished = [r for r in results if r is not None]
    counts = {status: sum(manifest_status(r) == status for r in finished) for status in COUNT_KEYS}
    failed = [r for r in finished if r["status"] == "error"]
    summary = {
        "counts": counts,
        "zero_row_tasks": [[r["symbol"], r["date"]] for r in finished if r["zero_rows"]],
        "errors": [error_text(r) for r in failed],
        "total_tasks": len(chosen),
        "duration_sec": round(time.monotonic() - started, 3),
        "strict": strict,
        "force": force,
        "max_tasks": max_tasks,
        "concurrency": max_workers,
        "finished_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    target = write_json_atomic(summary, folder / SUMMARY_FILE, fsync=fsync)
    mirror_file(target, base or folder, backup_path, fsync=fsync)
    if strict and failed:
        raise L2BackfillFailed(f"L2 backfill failed for {error_text(failed[0])}", summary)
    return summary
