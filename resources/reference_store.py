"""Corporate-action reference records in the lake: one Parquet file per symbol, replaced atomically.

``lake/reference/corporate_actions/symbol={SYMBOL}/actions.parquet`` holds the normalized records
(``platform_assets.reference.actions.ACTION_COLUMNS``) of every source that delivered them. A
write replaces the file (temp file + rename) only when the content changed and returns the dates a
change touches, so an unchanged daily refresh triggers no reprocessing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from platform_assets.reference.actions import changed_ex_dates, empty_actions, normalize
from resources.atomic import file_lock, write_parquet_atomic
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


def write_actions(lake_root: Path, symbol: str, records: pd.DataFrame, *, sources: Iterable[str], fsync: bool = True) -> list:
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
        if changed or not path.exists():
            write_parquet_atomic(pa.Table.from_pandas(new, preserve_index=False), path, fsync=fsync)
    return changed
