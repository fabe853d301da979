"""Training-dataset build time beside the training pull it wraps, on a generated lake.

    python -m bench.dataset_build [--symbols 50] [--days 252] [--repeat 1]

The lake holds ``bar_features`` v1 for ``symbols`` x ``days`` sessions (``bench.retrieval``'s
generator: real simulated sessions through the real gap engine and feature code). Three timings:

* the plain pull ``get_features_for_training`` (what a notebook would call);
* a first ``build_dataset`` of the same range: the pull, the final filters, content hash, Parquet
  write, read back and compare, file sha256, source fingerprint, manifest, atomic rename;
* a rebuild with unchanged data (same config): the pull, the filters and the hash; nothing written.

``build_dataset`` is timed without Dagster (the asset adds one in-process run, ~1 s). Default
scale is small so ``python -m bench`` stays quick; the issue's scale is ``--symbols 50 --days 252``.
Closed months are compacted first (the lake's steady state, as in ``bench.retrieval``).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from bench.common import Result, format_table, isolated_platform, median_time

END_DATE = pd.Timestamp("2024-12-06").date()


def run(symbols: int = 10, days: int = 21, repeat: int = 1) -> list[Result]:
    from bench.backfill import trading_days_ending
    from bench.retrieval import GROUP, VERSION, _symbols, generate_lake
    from platform_assets.automation.compaction import compact_closed_months
    from platform_api.retrieval import get_features_for_training
    from platform_api.training.dataset_builder import TrainingDatasetConfig, build_dataset
    from resources.lake import ParquetLake
    from resources.settings import get_settings

    with isolated_platform("mdp-bench-datasets-"):
        settings = get_settings()
        lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
        all_days = trading_days_ending(END_DATE, days)
        names = _symbols(symbols)
        started = time.perf_counter()
        files = generate_lake(names, all_days, lake)
        print(f"[bench] dataset_build: generated {files} files in {time.perf_counter() - started:.0f}s", flush=True)
        compact_closed_months(lake, f"{END_DATE.year:04d}-{END_DATE.month:02d}")  # the lake's steady state, as bench.retrieval
        start, end = pd.Timestamp(all_days[0], tz="UTC"), pd.Timestamp(all_days[-1], tz="UTC") + pd.Timedelta(days=1)

        def pull():
            return get_features_for_training([GROUP], VERSION, names, start, end, include_labels=False, settings=settings)

        rows = len(pull().features)
        pull_s = median_time(pull, repeat)
        cfg = TrainingDatasetConfig([GROUP], {GROUP: VERSION}, "curated_bars", start, end, names, name="bench", include_labels=False)
        started = time.perf_counter()
        handle = build_dataset(cfg, settings=settings)
        build_s = time.perf_counter() - started
        assert handle.created and handle.rows <= rows
        started = time.perf_counter()
        again = build_dataset(cfg, settings=settings)
        rebuild_s = time.perf_counter() - started
        assert again.dataset_id == handle.dataset_id and not again.changed and not again.created
        size_mb = handle.manifest["file_bytes"] / 1e6
        started = time.perf_counter()
        loaded = handle.to_pandas()
        load_s = time.perf_counter() - started
        assert len(loaded) == handle.rows
        what = f"{symbols} sym x {days} days (1-min features)"
        return [
            Result(what=f"dataset build {what}", ours_s=build_s, baseline_s=pull_s, baseline="the training pull it wraps", rows=handle.rows,
                   note=(f"build = pull + filters + hash + Parquet write ({size_mb:.0f} MB) + read-back check + sha256 + manifest; "
                         f"overhead {build_s / pull_s:.2f}x the pull; {handle.rows:,} of {rows:,} rows kept (imputed dropped)")),
            Result(what=f"dataset rebuild, unchanged, {what}", ours_s=rebuild_s, baseline_s=pull_s, baseline="the training pull it wraps",
                   rows=handle.rows, note=f"same id confirmed, nothing stored; {rebuild_s / pull_s:.2f}x the pull"),
            Result(what=f"dataset load (pandas) {what}", ours_s=load_s, baseline_s=pull_s, baseline="the training pull it wraps",
                   rows=handle.rows, note="reading the stored dataset instead of pulling again"),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    print(format_table(run(args.symbols, args.days, args.repeat)))


if __name__ == "__main__":
    main()
