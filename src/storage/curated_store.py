"""Seed 001 section 3.3.2: ``CuratedStore``, cleaned gap-aware bars by dataset.

    store = CuratedStore()
    bars = store.read_curated_bars("curated_bars", ["AAPL"], start, end)     # [start, end) UTC
    store.write_curated_bars(frame, "curated_bars", PartitionKey("AAPL", "2024-12-02"))

Datasets: ``curated_bars`` (the curated 1-minute bars, read through ``platform_api.get_curated_bars``:
gap indicators and ``dq_status``) and ``aligned_bars`` (with the as-of L2 top of book). A write
replaces the partition atomically; the frame must hold the dataset's columns and only that
partition's symbol and date. Writes here are not Dagster materializations: the assets
(``curated_bars`` / ``aligned_bars``) are what the UI, the checks and the audit follow.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from platform_api.inputs import parse_time_range
from resources.lake import ALIGNED_BARS, CURATED_BARS
from resources.validation import InvalidInputError, normalize_symbols
from src.storage.lake_store import LakeStore
from src.storage.partition_key import PartitionKey

TABLES = {"curated_bars": CURATED_BARS, "aligned_bars": ALIGNED_BARS}


def dataset_table(dataset_name: str):
    if dataset_name not in TABLES:
        raise InvalidInputError(f"unknown curated dataset {dataset_name!r}; known: {', '.join(TABLES)}")
    return TABLES[dataset_name]


def check_partition_rows(frame: pd.DataFrame, key: PartitionKey, required: list[str]) -> None:
    """The frame holds ``required`` columns and only ``key``'s symbol and date (``InvalidInputError``)."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"the frame lacks the columns {', '.join(missing)}")
    if "symbol" in frame.columns and set(frame["symbol"].astype(str)) - {key.symbol}:
        raise InvalidInputError(f"rows of other symbols than {key.symbol} for partition {key}")
    if "date" in frame.columns and set(pd.to_datetime(frame["date"]).dt.date) - {key.date}:
        raise InvalidInputError(f"rows of other dates than {key.date} for partition {key}")


class CuratedStore(LakeStore):
    """Curated tables of the lake."""

    def write_curated_bars(self, df: pd.DataFrame, dataset_name: str, partition_key) -> None:
        key = PartitionKey.of(partition_key)
        table = dataset_table(dataset_name)
        check_partition_rows(df, key, ["ts", "open", "high", "low", "close", "volume"])
        frame = df.assign(symbol=key.symbol, date=key.date) if "date" not in df.columns or "symbol" not in df.columns else df
        self.lake.write_partition(table, key.symbol, key.date, frame.reset_index(drop=True))

    def read_curated_bars(self, dataset_name: str, symbols: list[str], start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        table = dataset_table(dataset_name)
        first, last = parse_time_range(start, end)
        if dataset_name == "curated_bars":
            from platform_api.retrieval import get_curated_bars

            return get_curated_bars(symbols, first, last, settings=self.settings)
        days = pd.date_range(first.tz_convert("America/New_York").normalize(), last.tz_convert("America/New_York"), freq="D").date
        rows = self.lake.read(table, normalize_symbols(symbols), list(days))
        if rows.empty:
            return rows
        rows = rows[(rows["ts"] >= first) & (rows["ts"] < last)]
        return rows.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
