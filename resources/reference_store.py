"""Corporate-action reference records in the lake: one Parquet file per symbol, replaced atomically.

``lake/reference/corporate_actions/symbol={SYMBOL}/actions.parquet`` holds the normalized records
(``platform_assets.reference.actions.ACTION_COLUMNS``) of every source that delivered them. A
write replaces the file (temp file + rename) only when the content changed and returns the dates a
change touches, so an unchanged daily refresh triggers no reprocessing.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from platform_assets.reference.actions import changed_ex_dates, empty_actions, normalize
from resources.atomic import file_lock, write_json_atomic, write_parquet_atomic
from resources.lake import read_parquet_checked
from resources.validation import normalize_symbol

REFERENCE_DIR = Path("reference") / "corporate_actions"
# When several sources delivered a symbol's actions, the vendor wins (their event ids differ, so
# mixing them would apply one split twice).
SOURCE_PRIORITY = ("databento", "ib", "sim")
ACTIONS_FILE = "actions.parquet"


def actions_path(lake_root: Path, symbol: str) -> Path:
    return Path(lake_root) / REFERENCE_DIR / f"symbol={normalize_symbol(symbol)}" / ACTIONS_FILE


@functools.lru_cache(maxsize=512)
def _read_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return normalize(read_parquet_checked(Path(path)).to_pandas())


def preferred_source(records: pd.DataFrame) -> pd.DataFrame:
    """Per symbol, only the records of its highest-priority source (``SOURCE_PRIORITY``)."""
    if records.empty or records.groupby("symbol")["source"].nunique().max() <= 1:
        return records
    rank = {source: i for i, source in enumerate(SOURCE_PRIORITY)}
    order = records["source"].map(lambda s: rank.get(s, len(rank)))
    best = order.groupby(records["symbol"]).transform("min")
    return records[order == best].reset_index(drop=True)


def read_actions(lake_root: Path, symbols: Iterable[str], *, all_sources: bool = False) -> pd.DataFrame:
    """Stored records of ``symbols`` (empty frame when none are stored), of each symbol's
    preferred source unless ``all_sources``."""
    frames = []
    for symbol in symbols:
        path = actions_path(lake_root, symbol)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        frames.append(_read_cached(str(path), stat.st_mtime_ns, stat.st_size))
    if not frames:
        return empty_actions()
    records = normalize(pd.concat(frames, ignore_index=True)) if len(frames) > 1 else frames[0]
    return records if all_sources else preferred_source(records)


def write_actions(lake_root: Path, symbol: str, records: pd.DataFrame, *, sources: Iterable[str], fsync: bool = True, run_id: str | None = None) -> list:
    """Replace the records of ``sources`` for ``symbol`` with ``records``; the dates a change touched.

    Records of other sources stay. Returns the sorted first affected sessions of added, removed or
    changed records (empty when nothing changed: the file is then left as it is).
    """
    sources = set(sources)
    path = actions_path(lake_root, symbol)
    new_part = normalize(records)
    if len(new_part) and set(new_part["symbol"]) != {symbol}:
        raise ValueError(f"records for {symbol} name other symbols: {sorted(set(new_part['symbol']) - {symbol})}")
    with file_lock(path.parent / ".lock"):
        old = read_actions(lake_root, [symbol], all_sources=True)
        kept = old[~old["source"].isin(sources)]
        new = normalize(pd.concat([kept, new_part], ignore_index=True)) if len(kept) else new_part
        changed = changed_ex_dates(old, new)
        if changed and run_id:  # first: a fault after the replace must not lose them (the next run compares with the new file)
            pending = _read_unannounced(path.parent)
            _write_unannounced(path.parent, pending + [{"date": day.isoformat(), "run_id": run_id} for day in changed], fsync)
        if changed or not path.exists():
            write_parquet_atomic(pa.Table.from_pandas(new, preserve_index=False), path, fsync=fsync)
    return changed


UNANNOUNCED_FILE = "unannounced_changes.json"


def _read_unannounced(folder: Path) -> list[dict]:
    try:
        entries = json.loads((folder / UNANNOUNCED_FILE).read_text())
    except FileNotFoundError:
        return []
    return [e for e in entries if isinstance(e, dict) and "date" in e and "run_id" in e]


def _write_unannounced(folder: Path, entries: list[dict], fsync: bool) -> None:
    if entries:
        write_json_atomic(entries, folder / UNANNOUNCED_FILE, fsync=fsync, indent=None)
    else:
        (folder / UNANNOUNCED_FILE).unlink(missing_ok=True)


def unannounced_changes(lake_root: Path, symbol: str, announced: Callable[[str], bool], *, owner: str, fsync: bool = True) -> list[dt.date]:
    """Dates an earlier run's ``write_actions`` found changed for ``symbol`` whose run never
    announced them (``announced(run_id)`` False: it failed after replacing the file, before Dagster
    recorded its materialization, so the reprocess sensor never saw them). Entries of runs that did
    announce them leave the record; the others now belong to run ``owner``, which announces them
    (and leaves them for the run after it to drop once it succeeded). Returns those dates, sorted."""
    folder = actions_path(lake_root, symbol).parent
    with file_lock(folder / ".lock"):
        pending = _read_unannounced(folder)
        left = [{**e, "run_id": owner} for e in pending if not announced(e["run_id"])]
        if left != pending:
            _write_unannounced(folder, left, fsync)
    return sorted({dt.date.fromisoformat(e["date"]) for e in left})
