"""The per-symbol passes of session 15 against the per-symbol-day code they replace, in one run, on
the same simulated inputs, plus the per-file costs the contract layouts impose.

    python -m bench.per_symbol_pass                  # 10 symbols x 60 sessions (~30 s)
    python -m bench.per_symbol_pass --symbols 30

1. Curation: ``curate_sessions`` over all of a symbol's sessions at once vs ``curate_bars`` one
   session at a time (the gap engine only: the inputs are in memory); outputs checked equal.
2. Raw batches: ``raw_batch_table`` (Arrow) vs ``build_raw_batch`` (pandas) plus the conversion
   the lake makes at the write; tables checked equal.
3. Per-file floor of the contract layouts: writing one TF_1 L2 day file and reading it back, and
   writing one raw batch file (medians over the symbol-days; nothing to compare against).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def _simulated(symbols: int, days: int):
    from bench.backfill import END_DATE, SYMBOLS, trading_days_ending
    from platform_assets.calendars import STOCKS, session_minutes
    from platform_assets.curation.assets import book_activity
    from resources.sim_market import simulate_day

    sessions = trading_days_ending(END_DATE, days)
    out = []
    for symbol in SYMBOLS[:symbols]:
        sims = [simulate_day(7, symbol, day) for day in sessions]
        timelines = [session_minutes(STOCKS, day) for day in sessions]
        activities = [book_activity(sim.book, timeline) for sim, timeline in zip(sims, timelines)]
        out.append((symbol, sessions, sims, timelines, activities))
    return out


def _curation(inputs, reps: int):
    import pandas as pd

    from bench.common import Result, median_time
    from platform_assets.curation.gap_engine import curate_bars, curate_sessions

    def at_once():
        return [
            curate_sessions(pd.concat([s.bars for s in sims], ignore_index=True), [len(s.bars) for s in sims], timelines,
                            symbol=symbol, days=days, sources=["sim"] * len(days), activities=activities)
            for symbol, days, sims, timelines, activities in inputs
        ]

    def one_by_one():
        return [
            [curate_bars(sim.bars, timeline, symbol=symbol, day=day, source="sim", activity=activity)
             for day, sim, timeline, activity in zip(days, sims, timelines, activities)]
            for symbol, days, sims, timelines, activities in inputs
        ]

    for (frame, stats, _), sessions in zip(at_once(), one_by_one()):  # same results before timing
        pd.testing.assert_frame_equal(frame, pd.concat([s[0] for s in sessions], ignore_index=True))
        assert [s.as_dict() for s in stats] == [s[1].as_dict() for s in sessions]
    symbol_days = sum(len(days) for _, days, *_ in inputs)
    ours, baseline = median_time(at_once, reps), median_time(one_by_one, reps)
    return Result(
        f"gap engine, {symbol_days} symbol-days: all of a symbol's sessions at once vs one at a time",
        ours, baseline, "curate_bars per session", rows=symbol_days * 390, target="outputs equal (checked)",
        note=f"{ours / symbol_days * 1e3:.2f} vs {baseline / symbol_days * 1e3:.2f} ms per symbol-day; medians of {reps}",
    )


def _raw_batches(inputs, reps: int):
    import pandas as pd

    from bench.common import Result, median_time
    from platform_assets.ingestion.raw_batches import build_raw_batch, raw_batch_table
    from resources.lake import _to_arrow
    from resources.schemas import RAW_BARS_SCHEMA

    now = pd.Timestamp.now(tz="UTC")
    items = [(symbol, day, sim.bars) for symbol, days, sims, *_ in inputs for day, sim in zip(days, sims)]

    def as_arrow():
        return [raw_batch_table(bars, source="sim", symbol=s, day=d, ingestion_ts=now)[1] for s, d, bars in items]

    def as_frame():
        return [_to_arrow(build_raw_batch(bars, source="sim", symbol=s, day=d, ingestion_ts=now)[1], RAW_BARS_SCHEMA) for s, d, bars in items]

    assert all(a.equals(b) for a, b in zip(as_arrow(), as_frame()))
    ours, baseline = median_time(as_arrow, reps), median_time(as_frame, reps)
    return Result(
        f"raw batches built for the lake, {len(items)} symbol-days: Arrow table vs pandas frame + conversion",
        ours, baseline, "build_raw_batch + _to_arrow", rows=sum(len(b) for *_, b in items), target="tables equal (checked)",
        note=f"{ours / len(items) * 1e3:.2f} vs {baseline / len(items) * 1e3:.2f} ms per batch; medians of {reps}",
    )


def _file_floor(inputs):
    from pathlib import Path

    import pandas as pd

    from bench.common import Result
    from resources.l2_store import L2SnapshotStore
    from resources.lake import ParquetLake, raw_bars_table
    from resources.schemas import RAW_BARS_SCHEMA
    from platform_assets.ingestion.raw_batches import raw_batch_table

    now = pd.Timestamp.now(tz="UTC")
    writes, reads, raw_writes = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        store = L2SnapshotStore(level2_path=str(Path(scratch) / "level2"), fsync=False)
        lake = ParquetLake(base_path=str(Path(scratch) / "lakeroot"), fsync=False)
        for symbol, days, sims, *_ in inputs:
            for day, sim in zip(days, sims):
                started = time.perf_counter()
                store.write(symbol, day, sim.book, suffix="093000", source="sim", sweep=False)
                writes.append(time.perf_counter() - started)
                started = time.perf_counter()
                store.read_day(symbol, day)
                reads.append(time.perf_counter() - started)
                batch_id, table, _ = raw_batch_table(sim.bars, source="sim", symbol=symbol, day=day, ingestion_ts=now)
                started = time.perf_counter()
                lake.append_batch(raw_bars_table("sim"), symbol, day, table, batch_id, now, RAW_BARS_SCHEMA)
                raw_writes.append(time.perf_counter() - started)
    write, read, raw = (statistics.median(x) for x in (writes, reads, raw_writes))
    return Result(
        f"per-file floor of the contract layouts, {len(writes)} symbol-days: TF_1 L2 day file written + read 3x, raw batch written",
        write + 3 * read + raw, None,
        note=f"medians: L2 day file write {write * 1e3:.2f} ms, read {read * 1e3:.2f} ms (curation, alignment and L2 features each read it), "
        f"raw batch write {raw * 1e3:.2f} ms; ours = ms of worker time per symbol-day before any computation",
    )


def run(symbols: int = 10, days: int = 60, reps: int = 3):
    inputs = _simulated(symbols, days)
    return [_curation(inputs, reps), _raw_batches(inputs, reps), _file_floor(inputs)]


def main() -> None:
    from bench.common import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    results = run(args.symbols, args.days)
    print(format_table(results))


if __name__ == "__main__":
    main()
