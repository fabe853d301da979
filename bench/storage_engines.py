"""Storage engine for the derived tables: our Parquet lake vs Delta Lake, and ArcticDB for the
training pull, on the same rows, measured in one run.

    python -m bench.storage_engines                       # 20 symbols x 60 sessions
    python -m bench.storage_engines --symbols 50 --days 252

Needs the bench extra (`pip install -e '.[bench]'`: deltalake, arcticdb); `make bench` installs it.
The rows are synthetic v1-bar-feature-shaped frames (390 one-minute rows per symbol-day, ts,
symbol, date and 13 float columns), written the way each engine would be used by our assets:

1. write, one commit per (symbol, day): what the per-symbol-day assets do today
   (ours: ``ParquetLake.write_partition``; Delta: ``write_deltalake(mode="overwrite", predicate=...)``
   replacing that symbol-day, i.e. replaceWhere)
2. write, one commit per run step: every symbol-day of a ranged run at once (Delta: one commit
   replacing the step's dates; ours has no batched form, so it is the same per-file loop)
3. filtered read: 5 symbols x the last 20 sessions (ours: ``ParquetLake.read``; Delta: its
   pyarrow dataset with the symbol/date filter)
4. two writers at once, rewriting the same symbol-days (ours: per-(table, symbol) locks, writers
   queue; Delta: optimistic concurrency, a conflicting commit fails and is retried here); every
   symbol-day must end whole and from one writer (no torn or mixed day)
5. compaction (ours: day files -> month files; Delta: ``optimize.compact`` + ``vacuum``)
6. the training pull, all symbols x all days (ours: ``ParquetLake.read``; Delta; ArcticDB on LMDB,
   ``read_batch`` with a date range; the floor: pyarrow reading our compacted files)
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from bench.common import Result, format_table

ROWS_PER_DAY = 390
FEATURES = [f"f{i:02d}" for i in range(13)]
READ_SYMBOLS, READ_DAYS = 5, 20


def sessions(count: int, end: dt.date = dt.date(2024, 12, 31)) -> list[dt.date]:
    """The last ``count`` weekdays up to ``end`` (holidays do not matter for a storage bench)."""
    days = pd.bdate_range(end=end, periods=count)
    return [d.date() for d in days]


def symbol_day_frame(symbol: str, day: dt.date, seed: int = 0) -> pa.Table:
    """390 one-minute rows of 13 float features for (symbol, day)."""
    rng = np.random.default_rng(zlib.crc32(f"{symbol}|{day}|{seed}".encode()))  # the same in every process
    open_ts = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    ts = pd.date_range(open_ts, periods=ROWS_PER_DAY, freq="min")
    columns = {"ts": pa.array(ts), "symbol": pa.array([symbol] * ROWS_PER_DAY), "date": pa.array([day] * ROWS_PER_DAY, pa.date32())}
    values = rng.standard_normal((len(FEATURES), ROWS_PER_DAY))
    columns |= {name: pa.array(values[i]) for i, name in enumerate(FEATURES)}
    return pa.table(columns)


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


# ------------------------------------------------------------------------------ ours
def _lake(root: Path):
    from resources.lake import ParquetLake, Table

    return ParquetLake(base_path=str(root), fsync=False), Table("bench_features")


def ours_write(root: Path, symbols: list[str], days: list[dt.date], seed: int = 0) -> None:
    lake, table = _lake(root)
    for day in days:
        for symbol in symbols:
            lake.write_partition(table, symbol, day, symbol_day_frame(symbol, day, seed))


def ours_read(root: Path, symbols: list[str], days: list[dt.date]) -> pd.DataFrame:
    lake, table = _lake(root)
    return lake.read(table, symbols, days)


def ours_compact(root: Path) -> int:
    lake, table = _lake(root)
    return sum(lake.compact_table(table, "9999-12").values())


def ours_floor(root: Path) -> pd.DataFrame:
    """pyarrow reading every file of our table into pandas: the I/O floor for these bytes."""
    lake, table = _lake(root)
    files = sorted(str(p) for p in lake.table_dir(table).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f, partitioning=None) for f in files]).to_pandas()


# ------------------------------------------------------------------------------ Delta Lake
def _predicate(symbols: list[str], days: list[dt.date]) -> str:
    names = ", ".join(f"'{s}'" for s in symbols)  # bench-generated symbols only (S000...)
    return f"symbol IN ({names}) AND date >= '{min(days)}' AND date <= '{max(days)}'"


def delta_write(path: Path, symbols: list[str], days: list[dt.date], *, batched: bool, seed: int = 0) -> int:
    """Write every symbol-day; one commit each or one for the whole step. Returns commits made."""
    from deltalake import write_deltalake

    if batched:
        frames = [symbol_day_frame(s, d, seed) for d in days for s in symbols]
        write_deltalake(str(path), pa.concat_tables(frames), mode="overwrite", partition_by=["symbol"], predicate=_predicate(symbols, days) if (path / "_delta_log").exists() else None)
        return 1
    for day in days:
        for symbol in symbols:
            exists = (path / "_delta_log").exists()
            write_deltalake(str(path), symbol_day_frame(symbol, day, seed), mode="overwrite" if exists else "append", partition_by=["symbol"], predicate=_predicate([symbol], [day]) if exists else None)
    return len(days) * len(symbols)


def delta_read(path: Path, symbols: list[str], days: list[dt.date]) -> pd.DataFrame:
    from deltalake import DeltaTable

    dataset = DeltaTable(str(path)).to_pyarrow_dataset()
    wanted = pads.field("symbol").isin(symbols) & pads.field("date").isin(pa.array(days, pa.date32()))
    return dataset.to_table(filter=wanted).to_pandas()


def delta_compact(path: Path) -> int:
    from deltalake import DeltaTable

    table = DeltaTable(str(path))
    metrics = table.optimize.compact()
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    return int(metrics.get("numFilesRemoved", 0))


# ------------------------------------------------------------------------------ two writers
def _writer(engine: str, root: str, writer: int, symbols: list[str], days: list[dt.date], rounds: int, out) -> None:
    conflicts = 0
    for round_ in range(rounds):
        seed = writer * 1000 + round_
        if engine == "ours":
            ours_write(Path(root), symbols, days, seed)
            continue
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        for day in days:
            for symbol in symbols:
                while True:
                    try:
                        write_deltalake(root, symbol_day_frame(symbol, day, seed), mode="overwrite", partition_by=["symbol"], predicate=_predicate([symbol], [day]))
                        break
                    except CommitFailedError:
                        conflicts += 1
    out.put(conflicts)


def two_writers(engine: str, root: Path, symbols: list[str], days: list[dt.date], rounds: int) -> tuple[float, int, int]:
    """(seconds, commit conflicts retried, torn or mixed symbol-days) for two processes rewriting the same symbol-days."""
    if engine == "ours":  # the table exists before the writers race
        ours_write(root, symbols, days)
    else:
        delta_write(root, symbols, days, batched=True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(engine, str(root), w, symbols, days, rounds, queue)) for w in (1, 2)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    conflicts = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    seconds = time.perf_counter() - started
    frame = ours_read(root, symbols, days) if engine == "ours" else delta_read(root, symbols, days)
    finals = {(w * 1000 + rounds - 1) for w in (1, 2)}
    expected = {seed: {(s, d): symbol_day_frame(s, d, seed).column("f00").to_numpy() for s in symbols for d in days} for seed in finals}
    bad = 0
    for (symbol, day), rows in frame.groupby(["symbol", "date"]):
        key = (symbol, pd.Timestamp(day).date())
        values = rows.sort_values("ts")["f00"].to_numpy()
        if not any(len(values) == ROWS_PER_DAY and np.array_equal(values, expected[seed][key]) for seed in finals):
            bad += 1
    bad += len(symbols) * len(days) - frame.groupby(["symbol", "date"]).ngroups
    return seconds, conflicts, bad


# ------------------------------------------------------------------------------ ArcticDB
def arctic_write(path: Path, symbols: list[str], days: list[dt.date]):
    import arcticdb as adb

    library = adb.Arctic(f"lmdb://{path}").get_library("bench", create_if_missing=True)
    for symbol in symbols:
        frame = pa.concat_tables([symbol_day_frame(symbol, d) for d in days]).to_pandas().set_index("ts")
        frame["date"] = pd.to_datetime(frame["date"])  # ArcticDB stores no datetime.date objects
        library.write(symbol, frame)
    return library


def arctic_read(library, symbols: list[str], days: list[dt.date]) -> pd.DataFrame:
    start, end = pd.Timestamp(min(days), tz="UTC"), pd.Timestamp(max(days), tz="UTC") + pd.Timedelta(days=1)
    return arctic_read_range(library, symbols, start, end)


def arctic_read_range(library, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The training pull on ArcticDB: ``read_batch`` of every symbol with a date range, concatenated."""
    import arcticdb as adb

    items = library.read_batch([adb.ReadRequest(s, date_range=(start, end)) for s in symbols])
    return pd.concat([item.data for item in items])


# ------------------------------------------------------------------------------ the run
def run(symbols: int = 20, days: int = 60, rounds: int = 2) -> list[Result]:
    names = [f"S{i:03d}" for i in range(symbols)]
    all_days = sessions(days)
    step_days = all_days[-min(len(all_days), 10):]
    read_symbols, read_days = names[:READ_SYMBOLS], all_days[-READ_DAYS:]
    symbol_days = symbols * days
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mdp-storage-") as tmp:
        root = Path(tmp)
        ours_root, delta_root = root / "ours", root / "delta"
        write_ours, _ = _timed(lambda: ours_write(ours_root, names, all_days))
        write_delta_batched, _ = _timed(lambda: delta_write(delta_root, names, all_days, batched=True))
        results.append(Result("write: all symbol-days (ours: a file per symbol-day; Delta: one commit)", write_ours, write_delta_batched, "Delta, one commit", symbol_days,
                              note="rows/s column = symbol-days/s"))
        per_commit_root = root / "delta-per-commit"
        small_symbols = names[: min(5, symbols)]
        write_small_ours, _ = _timed(lambda: ours_write(root / "ours-small", small_symbols, step_days))
        write_small_delta, commits = _timed(lambda: delta_write(per_commit_root, small_symbols, step_days, batched=False))
        results.append(Result(f"write: a commit per symbol-day ({len(small_symbols)} x {len(step_days)})", write_small_ours, write_small_delta, "Delta, a commit each", len(small_symbols) * len(step_days),
                              note=f"Delta {write_small_delta / max(commits, 1) * 1000:.0f} ms per commit; ours {write_small_ours / (len(small_symbols) * len(step_days)) * 1000:.1f} ms per file"))
        rewrite_ours, _ = _timed(lambda: ours_write(ours_root, names, step_days, seed=1))
        rewrite_delta, _ = _timed(lambda: delta_write(delta_root, names, step_days, batched=True, seed=1))
        results.append(Result(f"rewrite a run step ({symbols} symbols x {len(step_days)} days)", rewrite_ours, rewrite_delta, "Delta, one commit", symbols * len(step_days)))
        read_ours, frame_ours = _timed(lambda: ours_read(ours_root, read_symbols, read_days))
        read_delta, frame_delta = _timed(lambda: delta_read(delta_root, read_symbols, read_days))
        assert len(frame_ours) == len(frame_delta) == len(read_symbols) * len(read_days) * ROWS_PER_DAY, (len(frame_ours), len(frame_delta))
        results.append(Result(f"filtered read ({READ_SYMBOLS} symbols x {READ_DAYS} days)", read_ours, read_delta, "Delta", len(frame_ours)))
        pull_ours, frame_all = _timed(lambda: ours_read(ours_root, names, all_days))
        pull_delta, _ = _timed(lambda: delta_read(delta_root, names, all_days))
        compact_ours, merged = _timed(lambda: ours_compact(ours_root))
        compact_delta, removed = _timed(lambda: delta_compact(delta_root))
        results.append(Result("compaction", compact_ours, compact_delta, "Delta optimize+vacuum", note=f"ours merged {merged} day files; Delta removed {removed} files"))
        pull_compacted, _ = _timed(lambda: ours_read(ours_root, names, all_days))
        pull_delta_compacted, _ = _timed(lambda: delta_read(delta_root, names, all_days))
        floor, _ = _timed(lambda: ours_floor(ours_root))
        library = arctic_write(root / "arctic", names, all_days)
        pull_arctic, frame_arctic = _timed(lambda: arctic_read(library, names, all_days))
        assert len(frame_all) == len(frame_arctic) == symbol_days * ROWS_PER_DAY
        results += [
            Result("training pull, day files", pull_ours, pull_delta, "Delta", len(frame_all)),
            Result("training pull, compacted", pull_compacted, pull_delta_compacted, "Delta compacted", len(frame_all)),
            Result("training pull, compacted vs ArcticDB", pull_compacted, pull_arctic, "ArcticDB read_batch", len(frame_all)),
            Result("training pull, compacted vs pyarrow floor", pull_compacted, floor, "pyarrow floor", len(frame_all)),
        ]
        writer_symbols, writer_days = names[:2], step_days[:3]
        seconds_ours, _, bad_ours = two_writers("ours", root / "w-ours", writer_symbols, writer_days, rounds)
        seconds_delta, conflicts, bad_delta = two_writers("delta", root / "w-delta", writer_symbols, writer_days, rounds)
        results.append(Result(f"two writers, same {len(writer_symbols) * len(writer_days)} symbol-days x {rounds} rounds", seconds_ours, seconds_delta, "Delta", 2 * rounds * len(writer_symbols) * len(writer_days),
                              note=f"torn/mixed days: ours {bad_ours}, Delta {bad_delta}; Delta conflicts retried: {conflicts}"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2, help="rewrite rounds per writer in the two-writer test")
    args = parser.parse_args()
    print(format_table(run(args.symbols, args.days, args.rounds)))


if __name__ == "__main__":
    main()
