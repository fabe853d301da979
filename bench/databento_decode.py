"""Databento mbp-10 -> 10-level snapshot conversion: vectorised vs a per-record Python loop.

    python -m bench.databento_decode [--records 1000000] [--loop-records 20000]

Builds ``records`` synthetic mbp-10 records as a real DBN stream (metadata + records, zstd), then
measures (1) the conversion of the decoded record array into snapshot arrays, ours
(``mbp10_to_book``) vs a per-record loop (``mbp10_to_book_loop``, timed on ``loop_records`` and
scaled), and (2) decode + convert from the zstd DBN bytes through the official client.
Targets: >= 1M records/s and >= 20x the loop.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import Result, format_table, median_time

DATASET = "XNAS.ITCH"


def _record_dtype() -> np.dtype:
    import databento as db
    import databento_dbn as dbn
    import pandas as pd

    start = pd.Timestamp("2024-12-02T14:30Z").value
    meta = dbn.Metadata(dataset=DATASET, start=start, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.MBP_10, symbols=["AAPL"])
    record = dbn.MBP10Msg(publisher_id=2, instrument_id=1, ts_event=start, price=0, size=1, action=dbn.Action.ADD, side=dbn.Side.BID, depth=0, ts_recv=start, levels=[dbn.BidAskPair()] * 10)
    return db.DBNStore.from_bytes(bytes(meta) + bytes(record)).to_ndarray().dtype, bytes(meta), bytes(record)


def synthetic_records(count: int, seed: int = 0) -> tuple[np.ndarray, bytes]:
    """``count`` mbp-10 records (a random-walk book, the last levels often empty) and their DBN bytes."""
    import zstandard

    dtype, meta, template = _record_dtype()
    rng = np.random.default_rng(seed)
    records = np.frombuffer(template * 1, dtype=dtype).repeat(count)
    ts = np.int64(1_733_149_800_000_000_000) + np.cumsum(rng.integers(1_000, 5_000_000, count))
    records["ts_event"], records["ts_recv"] = ts, ts
    mid = (100.0 + np.cumsum(rng.normal(0, 0.001, count))) * 1e9
    depth = rng.integers(5, 11, count)  # levels present per record
    undef = np.int64(2**63 - 1)
    for level in range(10):
        present = level < depth
        records[f"bid_px_{level:02d}"] = np.where(present, (mid - (level + 1) * 1e7).astype(np.int64), undef)
        records[f"ask_px_{level:02d}"] = np.where(present, (mid + (level + 1) * 1e7).astype(np.int64), undef)
        records[f"bid_sz_{level:02d}"] = np.where(present, rng.integers(1, 500, count), 0)
        records[f"ask_sz_{level:02d}"] = np.where(present, rng.integers(1, 500, count), 0)
    stream = zstandard.ZstdCompressor(level=3).compress(meta + records.tobytes())
    return records, stream


def run(records: int = 1_000_000, loop_records: int = 20_000, repeat: int = 3) -> list[Result]:
    import databento as db

    from platform_assets.ingestion.databento_transforms import mbp10_to_book, mbp10_to_book_loop

    array, stream = synthetic_records(records)
    book = mbp10_to_book(array)
    loop_book = mbp10_to_book_loop(array[:loop_records])
    assert np.array_equal(loop_book.bid_prices, book.bid_prices[:loop_records])  # same answer
    ours = median_time(lambda: mbp10_to_book(array), repeat)
    loop = median_time(lambda: mbp10_to_book_loop(array[:loop_records]), 1) * (records / loop_records)
    def decode_and_convert():  # as the assets do it: record batches of 250k
        for batch in db.DBNStore.from_bytes(stream).to_ndarray(count=250_000):
            mbp10_to_book(batch)

    decode = median_time(decode_and_convert, repeat)
    return [
        Result(f"mbp-10 -> snapshots, {records:,} records (record array)", ours, loop, f"per-record loop, {loop_records:,} timed, scaled",
               rows=records, target=">= 1M rec/s, >= 20x loop"),
        Result(f"mbp-10 zstd DBN -> decode -> snapshots, {records:,} records", decode, None, rows=records, target=">= 1M rec/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--loop-records", type=int, default=20_000)
    args = parser.parse_args()
    started = time.perf_counter()
    print(format_table(run(args.records, args.loop_records)))
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
