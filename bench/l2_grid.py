"""Historical L2 sampling on one synthetic multi-million-event mbp-10 day: grid vs every event.

    python -m bench.l2_grid [--events 5000000] [--interval-ms 1000]

Generates one day of ``events`` mbp-10 records (09:30-16:00 New York) as a real zstd DBN file
(``platform_assets_tests.mbp10_stream``), then runs the historical L2 path on it as
``backfill_l2_day`` does after the download (the completeness check ``incomplete_reason``, one
streaming decompression of the file, then ``Chunk.record_batches`` through the ``databento``
client's decoder -> ``sample_books`` -> ``L2SnapshotStore.write_stream``) once per mode, each in a
fresh process so its peak RSS (``ru_maxrss``) is its own. Prints events/s and peak memory for the
grid and every-event modes, and checks the grid file against an independent as-of pass over the
DBN file (for every grid point, the last record with ``ts_recv <= t``, found by a per-batch
``searchsorted``). Issue 20 targets: a 5M-event day in under 30 s with peak memory under 2 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT, Result, format_table

OPEN, CLOSE = "2024-12-02T14:30Z", "2024-12-02T21:00Z"
DAY = dt.date(2024, 12, 2)
ROW_BYTES = 8 + 4 * 10 * 8  # one snapshot held in memory: timestamp + 4 x 10 levels


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode: str, dbn: Path, out: Path, interval_ms: int) -> dict:
    """One run of the L2 path in this (fresh) process: seconds, rows, peak RSS."""
    import pandas as pd

    from resources.adapters.databento_adapter import Chunk, incomplete_reason  # first: importing databento_transforms first is circular (pre-existing)
    from platform_assets.ingestion.l2_sampling import L2Sampling, sample_books
    from resources.l2_store import L2SnapshotStore

    start, end = pd.Timestamp(OPEN), pd.Timestamp(CLOSE)
    sampling = L2Sampling(mode, interval_ms)
    store = L2SnapshotStore(level2_path=str(out), fsync=False)
    base = _rss_mb()
    started = time.perf_counter()
    reason = incomplete_reason(dbn)  # the download's completeness check (one more streaming decompression)
    checked = time.perf_counter() - started
    if reason:
        raise RuntimeError(f"the generated DBN file is incomplete: {reason}")
    path, rows = store.write_stream("AAPL", DAY, sample_books(Chunk("mbp-10", start, end, dbn).record_batches(), sampling, (start, end)),
                                    suffix="databento", source="databento", metadata=sampling.file_metadata())
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "seconds": seconds, "check_seconds": checked, "rows": rows, "path": str(path), "peak_rss_mb": peak, "base_rss_mb": base,
            "file_mb": Path(path).stat().st_size / 2**20 if path else 0.0}


def _run_child(mode: str, dbn: Path, out: Path, interval_ms: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "bench.l2_grid", "--child", mode, "--dbn", str(dbn), "--out", str(out), "--interval-ms", str(interval_ms)],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if done.returncode:
        raise RuntimeError(f"bench.l2_grid child ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def asof_check(dbn: Path, grid_file: Path) -> int:
    """Mismatching rows between the grid file and an independent as-of pass over the DBN file."""
    import pandas as pd
    import pyarrow.parquet as pq

    from resources.adapters.databento_adapter import Chunk  # first (see _child)
    from platform_assets.ingestion.databento_transforms import mbp10_to_book
    from resources.schemas import L2Book

    book = L2Book.from_arrow(pq.read_table(grid_file))
    times = book.timestamp.astype(np.int64)
    chunk = Chunk("mbp-10", pd.Timestamp(OPEN), pd.Timestamp(CLOSE), dbn)
    chosen, found = None, np.zeros(len(times), dtype=bool)
    for records in chunk.record_batches():
        where = np.searchsorted(records["ts_recv"].astype(np.int64), times, side="right") - 1
        hit = where >= 0
        chosen = np.zeros(len(times), dtype=records.dtype) if chosen is None else chosen
        chosen[hit], found[hit] = records[where[hit]], True
    if chosen is None or not found.all():
        return len(times)
    want = mbp10_to_book(chosen)
    bad = np.zeros(len(times), dtype=bool)
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        bad |= (getattr(book, name) != getattr(want, name)).any(axis=1)
    return int(bad.sum())


def run(events: int = 5_000_000, interval_ms: int = 1000) -> list[Result]:
    import pandas as pd

    from platform_assets_tests.mbp10_stream import write_mbp10_day

    with tempfile.TemporaryDirectory(prefix="mdp-bench-l2grid-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        dbn = write_mbp10_day(folder / "day.mbp-10.dbn.zst", events, pd.Timestamp(OPEN), pd.Timestamp(CLOSE), seed=20)
        made = time.perf_counter() - started
        grid = _run_child("grid", dbn, folder / "grid", interval_ms)
        every = _run_child("every_event", dbn, folder / "every", interval_ms)
        mismatches = asof_check(dbn, Path(grid["path"]))
        dbn_mb = dbn.stat().st_size / 2**20
    in_memory_mb = events * ROW_BYTES / 2**20

    def note(r: dict) -> str:
        return (f"{r['rows']:,} snapshots, {r['file_mb']:.1f} MB file; completeness check {r['check_seconds']:.1f} s of it; peak RSS {r['peak_rss_mb']:.0f} MB "
                f"({r['peak_rss_mb'] - r['base_rss_mb']:+.0f} over imports)")

    print(f"[l2_grid] {events:,} events: DBN {dbn_mb:.0f} MB made in {made:.1f}s; holding every snapshot in memory would take "
          f"{in_memory_mb:,.0f} MB; grid vs independent as-of: {mismatches} mismatching rows", flush=True)
    return [
        Result(f"L2 grid {interval_ms} ms, {events:,} mbp-10 events (check+decode+sample+write)", grid["seconds"], every["seconds"], "every-event mode",
               rows=events, target="< 30 s, peak < 2 GB, = as-of", note=note(grid) + f"; as-of mismatches {mismatches}"),
        Result(f"L2 every-event, {events:,} mbp-10 events (check+decode+convert+write)", every["seconds"], None, rows=events, target="bounded memory",
               note=note(every)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--child", choices=["grid", "every_event"], help=argparse.SUPPRESS)
    parser.add_argument("--dbn", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.dbn, args.out, args.interval_ms)))
        return
    started = time.perf_counter()
    print(format_table(run(args.events, args.interval_ms)))
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
