"""Synthetic mbp-10 days as real DBN (``databento_dbn`` metadata + records, zstd), any size.

``mbp10_records(n, start, end, seed)`` builds records with the official record layout (the dtype the
``databento`` client decodes into); ``write_mbp10_day(path, n, start, end)`` streams a whole day to a
``.dbn.zst`` file in pieces, so a multi-million-event day is generated in bounded memory; the file
is read back by ``DBNStore.from_file`` like a downloaded chunk. Used by test_l2_grid.py and
bench/l2_grid.py.
"""

from __future__ import annotations

import functools
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard

DATASET = "XNAS.ITCH"
UNDEF = np.int64(2**63 - 1)


def metadata(start: pd.Timestamp, end: pd.Timestamp, symbol: str = "AAPL") -> bytes:
    return bytes(dbn.Metadata(dataset=DATASET, start=start.value, end=end.value, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
                              schema=dbn.Schema.MBP_10, symbols=[symbol]))


@functools.lru_cache(maxsize=1)
def record_dtype() -> np.dtype:
    """The structured dtype ``DBNStore.to_ndarray`` gives mbp-10 records (from a real encoded record)."""
    start = pd.Timestamp("2024-12-02T14:30Z")
    record = dbn.MBP10Msg(publisher_id=2, instrument_id=1, ts_event=start.value, price=0, size=1, action=dbn.Action.ADD, side=dbn.Side.BID,
                          depth=0, ts_recv=start.value, levels=[dbn.BidAskPair()] * 10)
    return db.DBNStore.from_bytes(metadata(start, start + pd.Timedelta(hours=1)) + bytes(record)).to_ndarray().dtype


def mbp10_records(stamps: np.ndarray, seed: int = 0, *, event_jitter_ns: int = 0, empty_share: float = 0.0) -> np.ndarray:
    """One record per ``ts_recv`` stamp (int64 ns, ascending): a random-walk book, 0-10 levels per
    side (``empty_share`` of records with an empty book), ``ts_event`` up to ``event_jitter_ns``
    before ``ts_recv`` (so it can go backwards, as real exchange stamps do)."""
    rng = np.random.default_rng(seed)
    count = len(stamps)
    records = np.zeros(count, dtype=record_dtype())
    records["rtype"], records["publisher_id"], records["instrument_id"] = 10, 2, 1  # rtype 10: mbp-10
    records["length"] = record_dtype().itemsize // 4
    records["ts_recv"] = stamps
    records["ts_event"] = stamps - (rng.integers(0, event_jitter_ns + 1, count) if event_jitter_ns else 0)
    records["sequence"] = np.arange(count)
    mid = (100.0 + np.cumsum(rng.normal(0, 0.001, count))) * 1e9
    depth = rng.integers(1, 11, count)
    depth[rng.random(count) < empty_share] = 0
    for level in range(10):
        present = level < depth
        records[f"bid_px_{level:02d}"] = np.where(present, (mid - (level + 1) * 1e7).astype(np.int64), UNDEF)
        records[f"ask_px_{level:02d}"] = np.where(present, (mid + (level + 1) * 1e7).astype(np.int64), UNDEF)
        records[f"bid_sz_{level:02d}"] = np.where(present, rng.integers(1, 500, count), 0)
        records[f"ask_sz_{level:02d}"] = np.where(present, rng.integers(1, 500, count), 0)
    records["price"], records["size"] = records["bid_px_00"], 1
    return records


def random_stamps(count: int, start: pd.Timestamp, end: pd.Timestamp, seed: int = 0) -> np.ndarray:
    """``count`` sorted ns stamps in ``[start, end)`` (ties possible)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(start.value, end.value, count, dtype=np.int64))


def write_mbp10_day(path: Path, events: int, start: pd.Timestamp, end: pd.Timestamp, *, seed: int = 0, piece: int = 250_000) -> Path:
    """A ``.dbn.zst`` file of ``events`` mbp-10 records spread evenly (with noise) over ``[start, end)``,
    generated and compressed ``piece`` records at a time (bounded memory)."""
    span = end.value - start.value
    with open(path, "wb") as handle, zstandard.ZstdCompressor(level=1).stream_writer(handle) as out:
        out.write(metadata(start, end))
        for number, first in enumerate(range(0, events, piece)):
            size = min(piece, events - first)
            lo, hi = start.value + span * first // events, start.value + span * (first + size) // events
            out.write(mbp10_records(random_stamps(size, pd.Timestamp(lo), pd.Timestamp(hi), seed + number), seed + number).tobytes())
    return path
