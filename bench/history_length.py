"""Does the cost per symbol-day stay flat as the stored history grows? The other axis of the
500 symbols x 5 years extrapolation (``bench.throughput`` checks the symbols axis).

    python -m bench.history_length                          # 10 symbols x 60 and x 240 days, 2 workers
    python -m bench.history_length --symbols 10 --days 60 240 480

For each history length, on a fresh lake and Dagster instance: the whole offline graph as one ranged
backfill (batched data path), its symbol-days per second and each asset's step time per symbol-day.
The linearity row compares the longest history's seconds per symbol-day with the shortest's (1.0x:
linear in days). Files that grow with the history (the TF_1 L2 folder holds one file per symbol-day,
``level2/{SYMBOL}/``) must not be listed once per day: the listing row measures, on a folder of
5 years of L2 file names (1,260), finding a quarter's files (63 sessions) with one listing per day
(``L2SnapshotStore.day_files``, what the readers did) against one listing for the symbol
(``L2SnapshotStore.day_index``, what they do now). The coverage rows time the one step that touches
the whole history by design (the guide's coverage manifest): re-derived from the whole download log
(``mdp build-bars-coverage``) at two log sizes, and refreshed at the end of a daily raw run by
merging the day's new lines (``resources.coverage_update``); both extrapolated to 500 x 5 years.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.backfill import END_DATE, SYMBOLS, trading_days_ending
from bench.common import Result, format_table, median_time
from bench.throughput import _measure, _per_symbol_day

FIVE_YEARS_OF_SESSIONS = 1260
SCALE_BATCHES = 500 * FIVE_YEARS_OF_SESSIONS  # one raw batch per symbol-day
QUARTER_OF_SESSIONS = 63


def listing_costs(files: int = FIVE_YEARS_OF_SESSIONS, wanted: int = QUARTER_OF_SESSIONS) -> tuple[float, float]:
    """Seconds to find ``wanted`` days' L2 files in a folder of ``files`` day files: (one index, per-day globs)."""
    from resources.l2_store import L2SnapshotStore

    root = Path(tempfile.mkdtemp(prefix="mdp-bench-listing-"))
    try:
        store = L2SnapshotStore(level2_path=str(root), fsync=False)
        days = trading_days_ending(END_DATE, files)
        folder = store.symbol_dir("AAPL")
        folder.mkdir(parents=True)
        for day in days:
            (folder / f"{day.isoformat()}_snapshots_093000.parquet").touch()
        quarter = days[-wanted:]
        indexed = store.day_index("AAPL")
        if [indexed.get(d.isoformat(), []) for d in quarter] != [store.day_files("AAPL", d) for d in quarter]:
            raise AssertionError("day_index and day_files disagree")  # the two ways must find the same files

        def with_index() -> list:
            index = store.day_index("AAPL")
            return [index.get(d.isoformat(), []) for d in quarter]

        one = median_time(with_index, repeat=7)
        per_day = median_time(lambda: [store.day_files("AAPL", d) for d in quarter], repeat=7)
        return one, per_day
    finally:
        shutil.rmtree(root, ignore_errors=True)


def coverage_seconds(batches: int) -> tuple[float, float]:
    """Seconds to bring the coverage manifest up to date at the end of a daily raw run, over a
    download log of ``batches`` raw batches (one per symbol-day, every logged file present):
    ``(full rebuild from the whole log, merging the day's new lines)``, medians of 3. The day adds
    one batch per symbol."""
    import json

    from resources.coverage_update import rebuild_coverage_file, update_coverage_file
    from resources.manifests import BARS_MANIFEST_VERSION, append_jsonl_healing, download_manifest_path

    root = Path(tempfile.mkdtemp(prefix="mdp-bench-coverage-"))

    def line(symbol: str, day: str) -> dict:
        folder = root / "lake" / "raw_bars" / "source=sim" / f"symbol={symbol}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "batch-0.parquet"
        path.touch()
        return {
            "schema_version": BARS_MANIFEST_VERSION, "written_at": "2026-11-27T00:00:00+00:00", "vendor": "sim",
            "file_format": "parquet", "symbol": symbol, "bar_size": "1 min", "path": str(path), "filename": path.name,
            "rows": 390, "columns": ["ts"], "time_start": f"{day}T14:30:00+00:00", "time_end": f"{day}T20:59:00+00:00",
        }

    try:
        log = download_manifest_path(root)
        log.parent.mkdir(parents=True)
        days = [day.isoformat() for day in trading_days_ending(END_DATE, QUARTER_OF_SESSIONS * 4)]
        symbols = sorted({f"S{index // len(days):04d}" for index in range(batches)})
        log.write_text("".join(json.dumps(line(f"S{i // len(days):04d}", days[i % len(days)]), sort_keys=True) + "\n" for i in range(batches)))
        document = rebuild_coverage_file(root, fsync=False)
        if sum(len(entry["days"]) for entry in document["entries"]) != batches:
            raise AssertionError("the coverage document does not hold every logged batch's day")
        full_s = median_time(lambda: rebuild_coverage_file(root, fsync=False), repeat=3)
        new_days = iter(f"2031-01-{day:02d}" for day in range(1, 32))

        def daily_refresh() -> None:
            day = next(new_days)
            append_jsonl_healing([line(symbol, day) for symbol in symbols], log, fsync=False)
            refreshed = update_coverage_file(root, fsync=False)
            if any(entry["total"]["date_end"] < "2031" for entry in refreshed["entries"]):
                raise AssertionError("the refreshed coverage misses the day's batches")

        daily_refresh()  # the first refresh after the rebuild
        return full_s, median_time(daily_refresh, repeat=3)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(symbols: int = 10, days: tuple[int, ...] = (60, 240), workers: int = 2, coverage_batches: tuple[int, int] = (12_600, 63_000)) -> list[Result]:
    if symbols > len(SYMBOLS):
        raise ValueError(f"at most {len(SYMBOLS)} symbols (bench.backfill.SYMBOLS); asked for {symbols}")
    results: list[Result] = []
    per_symbol_day: list[float] = []
    for length in days:
        n = symbols * length
        measured = _measure(SYMBOLS[:symbols], trading_days_ending(END_DATE, length), workers, batched=True, details=False)
        per_symbol_day.append(measured["graph_s"] / n)
        results.append(Result(
            what=f"whole graph {symbols} sym x {length} days ({n} symbol-days, {workers} workers)",
            ours_s=measured["graph_s"], rows=n * 390, target="",
            note=(f"{n / measured['graph_s']:.1f} symbol-days/s, {measured['graph_s'] / n * 1000:.1f} ms per symbol-day; "
                  f"asset steps, summed over the runs (ms per symbol-day): {_per_symbol_day(measured['steps'], n)}"),
        ))
    if len(days) >= 2:
        results.append(Result(
            what=f"linearity {days[0]} -> {days[-1]} days of history (s per symbol-day, longer / shorter)",
            ours_s=per_symbol_day[-1] * symbols * days[-1], baseline_s=per_symbol_day[0] * symbols * days[-1],
            baseline=f"{days[0]}-day rate scaled", target="~1.0x or better",
            note=f"{per_symbol_day[0] * 1000:.1f} ms -> {per_symbol_day[-1] * 1000:.1f} ms per symbol-day",
        ))
    one, per_day = listing_costs()
    results.append(Result(
        what=f"finding a quarter's L2 files ({QUARTER_OF_SESSIONS} sessions) among 5 years ({FIVE_YEARS_OF_SESSIONS} files)",
        ours_s=one, baseline_s=per_day, baseline="one listing per day", target="",
        note=(f"one listing for the symbol (day_index) vs a glob per day (day_files): {per_day / QUARTER_OF_SESSIONS * 1000:.2f} ms "
              f"per symbol-day and L2 read before, x3 readers (curation, alignment, L2 features); medians of 7"),
    ))
    small, large = coverage_batches
    (small_s, small_merge_s), (large_s, large_merge_s) = coverage_seconds(small), coverage_seconds(large)
    per_batch = large_s / large
    results.append(Result(
        what=f"coverage manifest rebuilt from the whole log: {large:,} vs {small:,} logged batches",
        ours_s=large_s, baseline_s=small_s * large / small, baseline=f"{small:,}-batch time scaled", target="~1.0x (linear)",
        note=(f"{small_s / small * 1e6:.1f} -> {per_batch * 1e6:.1f} us per logged batch; at 500 x 5 years "
              f"({SCALE_BATCHES:,} batches) ~{per_batch * SCALE_BATCHES:.0f} s (mdp build-bars-coverage); medians of 3"),
    ))
    merge_per_batch = large_merge_s / large
    results.append(Result(
        what=f"coverage manifest at the end of a daily raw run: the day's lines merged, {large:,} logged batches",
        ours_s=large_merge_s, baseline_s=large_s, baseline="full rebuild", target="",
        note=(f"{small_merge_s:.2f} s at {small:,} batches; ~{merge_per_batch * SCALE_BATCHES:.0f} s at 500 x 5 years "
              f"(it still reads, checks and rewrites the document: linear in the history, ~{merge_per_batch * 1e6:.1f} us "
              f"per batch); medians of 3"),
    ))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, nargs="+", default=[60, 240])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--coverage-batches", type=int, nargs=2, default=[12_600, 63_000], help="log sizes of the coverage rebuild row")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(format_table(run(args.symbols, tuple(args.days), args.workers, tuple(args.coverage_batches))))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
