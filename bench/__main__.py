"""``python -m bench``: run every benchmark and print one table (see README "Benchmarks").

    python -m bench                 # all benchmarks at their default scale
    python -m bench backfill        # only the named ones
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

from bench.common import format_table

BENCHMARKS = ["backfill", "databento_decode", "dq_overhead", "retrieval", "cold_start", "scale", "bookkeeping", "ib_backfill", "l2_grid", "storage_engines", "dataset_build", "throughput", "new_version", "parquet_encoding", "history_length", "worker_start", "per_symbol_pass", "depth_messages"]


def main(argv: list[str]) -> int:
    chosen = argv or BENCHMARKS
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    results = []
    started = time.perf_counter()
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"bench.{name}":
                print(f"[bench] {name}: not built yet, skipped", flush=True)
                continue
            raise
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        results.extend(module.run())
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    print()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{__import__('os').cpu_count()} cores; total {time.perf_counter() - started:.0f}s")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
