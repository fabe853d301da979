"""Re-evaluate the DQ of ingested partitions whose results left the lake with a quarantined file.

An ingestion asset's DQ results, block markers and failing rows are month files per (dataset,
symbol). When the recorder writes a date into a month file that does not read, the lake moves the
file aside whole (``ParquetLake.quarantine_file``) and every other date it held loses its DQ
results, and a blocked date its ``dq_blocked`` marker: the DQ gate would then let curation take a
batch that failed an error rule. The derived steps re-compute such dates
(``SymbolDayStep(heals=...)``); an ingestion asset cannot re-fetch them, but its data is stored
(raw batches are append-only, L2 files at their contract paths), so ``heal_lost_results`` runs the
dataset's rules again over the stored data of each lost date, writing its results, marker and
failing rows anew. Dates whose stored data is gone too are logged (nothing is left to gate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.quality.checks import QualityRecorder, dq_tables
from resources.lake import CorruptLakeFileError, ParquetLake, Table, month_of, quarantine_table, read_parquet_checked

MAX_ROUNDS = 3  # re-evaluating may meet another corrupt DQ file of the same dataset


@dataclass(frozen=True)
class StoredInput:
    """What the DQ rules of an ingestion dataset were run on, as stored now.

    ``dates(symbol)``: the symbol's stored dates (the dates of a lost file whose footer did not
    read are the month's stored dates); ``read(symbol, day)``: ``QualityRecorder.add``'s
    arguments after (symbol, day), or None when nothing is stored."""

    dates: Callable[[str], set[dt.date]]
    read: Callable[[str, dt.date], tuple | None]


def raw_batches_input(lake: ParquetLake, table: Table, *, as_delivered: bool = False) -> StoredInput:
    """The newest raw batch of each date (what curation takes, and what the DQ gate guards).
    ``as_delivered``: with the rows that repeated a key put back, each right after its first
    copy (the batch's ``duplicate_key`` rows in ``quarantine/raw_bars``): what the offline
    asset's rules check (``raw_batches.as_delivered``, whose simulator sends each repeat right
    after its original); the vendor assets check the batch itself."""

    def dates(symbol: str) -> set[dt.date]:
        return {dt.date.fromisoformat(p.name[5:]) for p in lake.symbol_dir(table, symbol).glob("date=*")}

    def read(symbol: str, day: dt.date) -> tuple | None:
        for _ in range(len(lake.batch_files(table, symbol, day)) + 1):
            try:
                batch = lake.read_latest_batch(table, symbol, day)
                break
            except CorruptLakeFileError:
                continue  # quarantined by the read: the next newest batch is what curation takes now
        else:
            return None
        if batch is None:
            return None
        return (with_repeats(lake, table, symbol, day, batch) if as_delivered else batch,)

    return StoredInput(dates, read)


def l2_days_input(l2_store, as_quality_input: Callable) -> StoredInput:
    """The stored L2 day (as ``l2_store.read_day`` gives it), as ``as_quality_input(symbol, book)``."""

    def dates(symbol: str) -> set[dt.date]:
        return {dt.date.fromisoformat(day) for day in l2_store.day_index(symbol)}

    def read(symbol: str, day: dt.date) -> tuple | None:
        try:
            book, _ = l2_store.read_day(symbol, day)
        except CorruptLakeFileError:
            return None
        return as_quality_input(symbol, book) if len(book) else None

    return StoredInput(dates, read)


def heal_lost_results(recorder: QualityRecorder, stored: StoredInput, log) -> list[str]:
    """Re-evaluate every (symbol, date) whose DQ results of ``recorder``'s dataset left the lake
    with a file quarantined in this process (except those this run evaluated anyway); returns
    them as ``symbol@date``. Call before ``recorder.finish`` (the re-evaluated partitions are in
    its check results, and in ``recorder.reevaluated``)."""
    recorder.flush()  # this run's results written: their writes are what meets a corrupt file
    healed: list[str] = []
    queued = set()  # one date can be lost with several files (results, markers, failing rows)
    for _ in range(MAX_ROUNDS):
        with recorder.lake.taking_lost_dates(dq_tables(recorder.stored_as)) as losses:
            if not losses:
                break
            for lost in losses:
                days = lost.dates if lost.dates is not None else {d for d in stored.dates(lost.symbol) if month_of(d) == lost.month}
                todo = sorted(day for day in days if (lost.symbol, day) not in recorder.partition_status and f"{lost.symbol}@{day}" not in queued)
                gone = []
                for day in todo:
                    found = stored.read(lost.symbol, day)
                    if found is None:
                        gone.append(day.isoformat())
                        continue
                    recorder.add(lost.symbol, day, *found)
                    healed.append(f"{lost.symbol}@{day}")
                    queued.add(healed[-1])
                log.warning(
                    f"DQ {recorder.stored_as}: {lost.table} {lost.symbol} {lost.month}: a corrupt file was moved to {lost.moved_to}; "
                    f"re-evaluating the rules over the stored data of the {len(todo) - len(gone)} date(s) it held"
                    + (f"; no stored data left for {', '.join(gone)}" if gone else "")
                )
            recorder.flush()  # stored: the records leave the journal as the block ends
    recorder.reevaluated.extend(healed)
    return healed


def with_repeats(lake: ParquetLake, table: Table, symbol: str, day: dt.date, batch: pd.DataFrame) -> pd.DataFrame:
    """``batch`` with its quarantined ``duplicate_key`` rows, each after the last stored copy of its ts."""
    if not len(batch):
        return batch
    batch_id = str(batch["batch_id"].iloc[0])
    files = [p for p in lake.batch_files(quarantine_table(table), symbol, day) if p.stem.endswith(f"-{batch_id}")]
    if not files:
        return batch
    repeated = pd.concat([read_parquet_checked(path).to_pandas() for path in files], ignore_index=True)
    repeated = repeated[repeated["reject_reason"] == "duplicate_key"].drop(columns="reject_reason")
    if repeated.empty:
        return batch
    position = pd.Series(np.arange(len(batch)), index=pd.DatetimeIndex(batch["ts"]))
    order = np.concatenate([np.arange(len(batch)), position.reindex(pd.DatetimeIndex(repeated["ts"])).to_numpy(dtype=float)])
    both = pd.concat([batch, repeated[batch.columns]], ignore_index=True)
    return both.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
