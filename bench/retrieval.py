"""Training and inference retrieval against a plain pandas baseline, on a generated lake.

    python -m bench.retrieval [--symbols 50] [--days 252] [--inference-symbols 100]

The lake holds ``bar_features`` v1 for ``symbols`` x ``days`` sessions (one real simulated session
per symbol, computed by the real gap engine and feature code, repeated over the dates with the
time stamps shifted and values jittered), plus the last 5 sessions of ``inference_symbols``.
Baseline = what a notebook does: read every Parquet file of the table with pandas, concat, filter.
With ``arcticdb`` installed (the ``bench`` extra, ``make bench``) the same rows are also written to
ArcticDB (LMDB, one symbol per symbol, ``ts`` index) and pulled with ``read_batch`` and a date range,
the store many quant teams train from, beside ours in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Result, format_table, isolated_platform, median_time

END_DATE = dt.date(2024, 12, 6)
GROUP, VERSION = "bar_features", "v1"


def _symbols(count: int) -> list[str]:
    return [f"S{i:03d}" for i in range(count)]


def _template(symbol: str, day: dt.date) -> pd.DataFrame:
    """One real session of v1 features: offline source -> gap engine -> feature code."""
    from platform_assets.calendars import STOCKS, session_minutes
    from platform_assets.curation.gap_engine import curate_bars
    from platform_assets.features.bar_features import compute_bar_features_v1
    from resources.sim_market import simulate_day

    sim = simulate_day(7, symbol, day)
    curated, _, _ = curate_bars(sim.bars, session_minutes(STOCKS, day), symbol=symbol, day=day, source="sim")
    return compute_bar_features_v1(curated).assign(feature_group=GROUP, feature_version=VERSION)


def generate_lake(symbols: list[str], days: list[dt.date], lake) -> int:
    """Write the features table; returns the number of files."""
    from resources.lake import feature_table

    table = feature_table(GROUP, VERSION)
    rng = np.random.default_rng(0)
    files = 0
    for symbol in symbols:
        template = _template(symbol, days[-1])
        value_columns = [c for c in template.columns if template[c].dtype.kind == "f"]
        for day in days:
            shift = pd.Timestamp(day) - pd.Timestamp(days[-1])
            frame = template.copy()
            frame["date"], frame["ts"], frame["available_ts"] = day, frame["ts"] + shift, frame["available_ts"] + shift
            frame[value_columns] = frame[value_columns] * rng.normal(1.0, 0.01, size=(len(frame), len(value_columns)))
            lake.write_partition(table, symbol, day, frame)
            files += 1
    return files


def pandas_training_baseline(table_dir: Path, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in sorted(table_dir.rglob("*.parquet"))]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["symbol"].isin(symbols) & (frame["ts"] >= start) & (frame["ts"] < end)]
    return frame.sort_values(["symbol", "ts"]).reset_index(drop=True)


def pandas_latest_baseline(table_dir: Path, symbols: list[str], at: pd.Timestamp) -> pd.DataFrame:
    frame = pd.concat([pd.read_parquet(path) for path in sorted(table_dir.rglob("*.parquet"))], ignore_index=True)
    frame = frame[frame["symbol"].isin(symbols) & (frame["available_ts"] <= at) & ~frame["is_imputed"]]
    return frame.sort_values("ts").groupby("symbol").tail(1)


def arcticdb_pull(rows: pd.DataFrame, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp, repeat: int) -> tuple[float, int] | None:
    """Median seconds of an ArcticDB ``read_batch`` of ``rows`` (stored per symbol, LMDB, in a temp
    folder) over [start, end), and the rows it returned; None when ``arcticdb`` is not installed."""
    try:
        import arcticdb as adb
    except ImportError:
        return None
    import tempfile

    from bench.storage_engines import arctic_read_range

    with tempfile.TemporaryDirectory(prefix="mdp-arctic-") as folder:
        library = adb.Arctic(f"lmdb://{folder}").get_library("bench", create_if_missing=True)
        for symbol, part in rows.groupby("symbol"):
            library.write(symbol, part.set_index("ts"))
        def pull() -> pd.DataFrame:
            return arctic_read_range(library, symbols, start, end)

        count = len(pull())
        seconds = median_time(pull, repeat)
        del library
    return seconds, count


def run(symbols: int = 50, days: int = 252, inference_symbols: int = 100, repeat: int = 3) -> list[Result]:
    from bench.backfill import trading_days_ending
    from platform_api.retrieval import get_features_for_inference, get_features_for_training
    from resources.lake import ParquetLake, feature_table
    from resources.settings import get_settings

    results = []
    with isolated_platform():
        settings = get_settings()
        lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
        all_days = trading_days_ending(END_DATE, days)
        started = time.perf_counter()
        files = generate_lake(_symbols(symbols), all_days, lake)
        files += generate_lake(_symbols(inference_symbols)[symbols:], all_days[-5:], lake)
        print(f"[bench] retrieval: generated {files} files in {time.perf_counter() - started:.0f}s", flush=True)
        table_dir = lake.table_dir(feature_table(GROUP, VERSION))
        train_symbols = _symbols(symbols)
        start, end = pd.Timestamp(all_days[0], tz="UTC"), pd.Timestamp(all_days[-1] + dt.timedelta(days=1), tz="UTC")

        def ours():
            return get_features_for_training([GROUP], VERSION, train_symbols, start, end, include_labels=False, settings=settings)

        rows = len(ours().features)
        daily_s = median_time(ours, repeat)  # one file per (symbol, day)
        started = time.perf_counter()
        baseline_rows = len(pandas_training_baseline(table_dir, train_symbols, start, end))
        baseline_s = time.perf_counter() - started
        assert baseline_rows == rows, (baseline_rows, rows)
        from platform_assets.automation.compaction import compact_closed_months, refresh_read_copies

        started = time.perf_counter()
        compact_closed_months(lake, f"{END_DATE.year:04d}-{END_DATE.month:02d}")
        compact_s = time.perf_counter() - started
        assert len(ours().features) == rows
        ours_s = median_time(ours, repeat)  # closed months compacted into Parquet month files
        month_files = ours().features
        started = time.perf_counter()
        refresh_read_copies(lake, f"{END_DATE.year:04d}-{END_DATE.month:02d}")
        copies_s = time.perf_counter() - started
        pd.testing.assert_frame_equal(ours().features, month_files)  # read copies answer exactly the same rows
        del month_files
        copy_s = median_time(ours, repeat)  # the compaction job's full steady state: month files + read copies
        results.append(Result(
            what=f"training pull {symbols} sym x {days} days (1-min features)", ours_s=ours_s, baseline_s=baseline_s,
            baseline="pandas: read all files, concat, filter", rows=rows, target="< 3 s, >= 3x",
            note=(f"ours = median of {repeat} over Parquet month files ({compact_s:.1f}s to compact); {rows:,} rows; "
                  f"before compaction (one file per symbol-day, {files:,} files): {daily_s:.2f}s; "
                  f"with read copies of the closed months ({copies_s:.1f}s to build): {copy_s:.2f}s"),
        ))
        pulled = ours().features
        arctic = arcticdb_pull(pulled, train_symbols, start, end, repeat)
        if arctic is None:
            results.append(Result(what=f"training pull vs ArcticDB {symbols} sym x {days} days", ours_s=copy_s,
                                  note="ArcticDB not installed: `make bench` (the bench extra) adds it"))
        else:
            arctic_s, arctic_rows = arctic
            assert arctic_rows == rows, (arctic_rows, rows)
            results.append(Result(
                what=f"training pull vs ArcticDB {symbols} sym x {days} days", ours_s=copy_s, baseline_s=arctic_s,
                baseline="ArcticDB (LMDB) read_batch, date range", rows=rows, target="faster than ArcticDB (ratio > 1)",
                note=(f"same {rows:,} rows x {pulled.shape[1]} columns; medians of {repeat}; ours from read copies of the "
                      f"closed months + day files of the open one (Parquet month files alone: {ours_s:.2f}s)"),
            ))
        del pulled
        at = pd.Timestamp(f"{all_days[-1]} 15:00:30", tz="America/New_York").tz_convert("UTC")
        infer_symbols = _symbols(inference_symbols)

        def latest():
            return get_features_for_inference([GROUP], VERSION, infer_symbols, at, mode="latest", settings=settings)

        assert len(latest().features) == inference_symbols
        latest_s = median_time(latest, max(repeat, 5))
        started = time.perf_counter()
        assert len(pandas_latest_baseline(table_dir, infer_symbols, at)) == inference_symbols
        latest_baseline_s = time.perf_counter() - started
        results.append(Result(
            what=f"inference latest, {inference_symbols} symbols", ours_s=latest_s, baseline_s=latest_baseline_s,
            baseline="pandas: read all files, filter, last per symbol", rows=inference_symbols, target="< 200 ms",
            note=f"ours = median of {max(repeat, 5)}",
        ))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--inference-symbols", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(format_table(run(args.symbols, args.days, args.inference_symbols, args.repeat)))


if __name__ == "__main__":
    main()
