"""Parquet encodings of the compressed lake files, on the files a whole-graph backfill leaves, in one
run: (1) ours (dictionaries only for string, date and flag columns,
``resources.parquet_format.compressed_options``) against pyarrow's default (a dictionary for every
column), both zstd; (2) our codec choice (LZ4 for files below ``SMALL_FILE_ROWS`` rows, zstd above)
against zstd for every file.

    python -m bench.parquet_encoding                 # 10 symbols x 20 days (~1 min)
    python -m bench.parquet_encoding --symbols 30 --days 60

For each table every file is read once into memory, then all of them are written (to a scratch
folder) and read back with each encoding; the table reports write time (ours vs default) and notes
the sizes and the read times. Medians of 3 passes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TABLES = ["raw_bars", "curated_bars", "aligned_bars", "dq_metrics", "level2"]  # level2 (list columns) keeps the default dictionaries: ratio ~1


def _passes(tables, options_of, scratch: Path, reps: int) -> tuple[float, float, int]:
    """(median write seconds, median read seconds, bytes) of writing then reading ``tables``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writes, reads, size = [], [], 0
    for _ in range(reps):
        started = time.perf_counter()
        paths = []
        for i, table in enumerate(tables):
            path = scratch / f"{i}.parquet"
            pq.write_table(table, path, **options_of(table))
            paths.append(path)
        writes.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in paths)
        started = time.perf_counter()
        for path in paths:
            pq.ParquetFile(pa.BufferReader(path.read_bytes())).read()
        reads.append(time.perf_counter() - started)
    return statistics.median(writes), statistics.median(reads), size


def _size_and_read(ours: tuple[float, float, int], baseline: tuple[float, float, int]) -> str:
    return (f"size {ours[2] / 2**20:.1f} MB vs {baseline[2] / 2**20:.1f} MB ({ours[2] / baseline[2]:.2f}x); "
            f"read {ours[1] * 1000:.0f} ms vs {baseline[1] * 1000:.0f} ms ({baseline[1] / ours[1]:.2f}x faster)")


def run(symbols: int = 10, days: int = 20, workers: int = 2, reps: int = 3):
    import pyarrow.parquet as pq

    from bench.backfill import END_DATE, SYMBOLS, _fresh_instance, trading_days_ending
    from bench.common import Result, isolated_platform
    from resources.parquet_format import SMALL_FILE_ROWS, compressed_options

    results = []
    with isolated_platform() as root:
        from definitions import build_definitions
        from platform_api.backfill import plan_backfill, run_backfill
        from resources.settings import get_settings

        settings = get_settings()
        dates = trading_days_ending(END_DATE, days)
        report = run_backfill(_fresh_instance(root), plan_backfill(SYMBOLS[:symbols], dates[0], dates[-1]), defs=build_definitions(settings),
                              add_missing_symbols=True, workers=workers)
        if not report.success:
            raise RuntimeError(f"backfill failed: {[r.error for r in report.runs if not r.success]}")
        with tempfile.TemporaryDirectory(prefix="mdp-encoding-") as scratch:
            for name in TABLES:
                folder = settings.level2_path if name == "level2" else settings.base_path / "lake" / name
                tables = [pq.read_table(path) for path in sorted(Path(folder).rglob("*.parquet"))]
                if not tables:
                    continue
                ours = _passes(tables, lambda t: compressed_options(t.schema), Path(scratch), reps)  # zstd
                default = _passes(tables, lambda t: {"compression": "zstd"}, Path(scratch), reps)
                rows = sum(t.num_rows for t in tables)
                results.append(Result(
                    what=f"{name}: write {len(tables)} zstd files ({rows / len(tables):.0f} rows each)", ours_s=ours[0], baseline_s=default[0],
                    baseline="every column dictionary-encoded (pyarrow default)", rows=rows,
                    note=_size_and_read(ours, default),
                ))
                chosen = _passes(tables, lambda t: compressed_options(t.schema, t.num_rows), Path(scratch), reps)
                small = sum(t.num_rows < SMALL_FILE_ROWS for t in tables)
                results.append(Result(
                    what=f"{name}: write {len(tables)} files, LZ4 below {SMALL_FILE_ROWS} rows ({small} of them)", ours_s=chosen[0], baseline_s=ours[0],
                    baseline="zstd for every file", rows=rows, note=_size_and_read(chosen, ours),
                ))
    return results


def main(argv: list[str] | None = None) -> None:
    from bench.common import format_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(format_table(run(args.symbols, args.days, args.workers)))


if __name__ == "__main__":
    main()
