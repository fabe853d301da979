"""Historical L2 sampling: Databento mbp-10 events -> snapshots on a time grid, or one per event.

Pure and streaming: record batches go in (``DBNStore.to_ndarray(count=...)`` arrays), ``L2Book``
pieces come out; nothing here touches files or the network.

Modes (``L2Sampling.mode``):

* ``"grid"`` (default): one snapshot every ``interval_ms`` like live capture (``record_depth``
  takes one every ``interval_s``; its default, 1 s, is ``DEFAULT_INTERVAL_MS``). Grid points are
  ``t_k = start + k * interval`` for every ``t_k`` in the window ``[start, end)``; the row at
  ``t_k`` is stamped ``t_k`` and holds the **as-of** book: the state after the last event whose
  clock is ``<= t_k``. Never a later event: an mbp-10 record carries the whole top-10 book after its
  event, so the sampler keeps only the last record seen (O(1) state, whatever the day's size).
  *Before the first event of the session* a grid point emits **nothing** (the book is unknown, as
  live capture takes no snapshot of an empty book); after the last event the last state is
  carried to the end of the window (the book did not change). An event that empties the book gives
  a row of zeros (the contract's "missing levels are zeros").
* ``"every_event"``: today's behaviour, unchanged: each record in the window is one snapshot
  stamped ``ts_recv`` (``mbp10_to_book``).

The clock (``L2Sampling.clock``) is ``ts_recv`` by default, the time the event reached the vendor's
receiver, which is also the every-event mode's ``timestamp``: so a grid file is exactly the
every-event file sampled as-of (``grid[t] = every_event[last timestamp <= t]``). ``ts_event`` (the
exchange's stamp) can be chosen; as records arrive in ``ts_recv`` order, ``ts_event`` may go
backwards, so the sampler uses its running maximum: the state after a record becomes visible only
once every event folded into it has ``ts_event <= t`` (never a later event, on either clock).

Memory: a batch of records, the last record and at most ``MAX_GRID_ROWS`` output rows at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.ingestion.databento_transforms import mbp10_to_book
from resources.schemas import L2Book
from resources.validation import InvalidInputError

SAMPLING_MODES = ("grid", "every_event")
CLOCKS = ("ts_recv", "ts_event")
DEFAULT_MODE = "grid"
DEFAULT_INTERVAL_MS = 1000  # live capture's default: record_depth(interval_s=1.0), `mdp record-depth --interval 1`
MAX_INTERVAL_MS = 3_600_000
MAX_GRID_ROWS = 250_000  # output rows per emitted piece (bounded memory even for a 1 ms grid)
METADATA_KEY = b"l2_sampling"  # Parquet (Arrow schema) key-value metadata of historical files


@dataclass(frozen=True)
class L2Sampling:
    """How historical mbp-10 events become snapshots: ``mode``, ``interval_ms`` (grid), ``clock``."""

    mode: str = DEFAULT_MODE
    interval_ms: int = DEFAULT_INTERVAL_MS
    clock: str = "ts_recv"

    def __post_init__(self):
        if self.mode not in SAMPLING_MODES:
            raise InvalidInputError(f"L2 sampling mode must be one of {', '.join(SAMPLING_MODES)}, got {self.mode!r}")
        if isinstance(self.interval_ms, bool) or not isinstance(self.interval_ms, (int, np.integer)) or not 1 <= self.interval_ms <= MAX_INTERVAL_MS:
            raise InvalidInputError(f"interval_ms must be an integer in [1, {MAX_INTERVAL_MS}], got {self.interval_ms!r}")
        if self.clock not in CLOCKS:
            raise InvalidInputError(f"L2 sampling clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        object.__setattr__(self, "interval_ms", int(self.interval_ms))

    def describe(self) -> dict:
        """The documented ``l2_sampling`` metadata: ``{mode, interval_ms (null: every event), clock}``."""
        return {"mode": self.mode, "interval_ms": self.interval_ms if self.mode == "grid" else None, "clock": self.clock}

    def file_metadata(self) -> dict[bytes, bytes]:
        """Key-value metadata for the snapshot file (the only thing telling it apart from live capture's)."""
        return {METADATA_KEY: json.dumps(self.describe(), sort_keys=True).encode()}


def read_sampling(schema_metadata: dict | None) -> dict | None:
    """The ``l2_sampling`` document of a file's schema metadata (None: live capture or an older file)."""
    raw = (schema_metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else None


def grid_size(start_ns: int, end_ns: int, interval_ns: int) -> int:
    """How many grid points ``start + k * interval`` lie in ``[start, end)``."""
    return max(0, -(-(end_ns - start_ns) // interval_ns))


class GridSampler:
    """Streaming as-of sampler of mbp-10 records onto the grid of ``[start, end)``.

    ``feed(records)`` yields the snapshots whose as-of state is settled by the records seen so far
    (grid points strictly before the latest clock: an event stamped exactly ``t`` may still come);
    ``finish()`` yields the rest of the window from the last state. State: the last record, the
    running clock and the next grid index.
    """

    def __init__(self, start: pd.Timestamp, end: pd.Timestamp, interval_ms: int = DEFAULT_INTERVAL_MS, clock: str = "ts_recv"):
        self.start_ns, self.end_ns = int(pd.Timestamp(start).value), int(pd.Timestamp(end).value)
        if self.end_ns <= self.start_ns:
            raise InvalidInputError(f"grid window end {end} is not after start {start}")
        L2Sampling("grid", interval_ms, clock)  # validates
        self.interval_ns, self.clock = int(interval_ms) * 1_000_000, clock
        self.total = grid_size(self.start_ns, self.end_ns, self.interval_ns)
        self.next_k = 0
        self.last: np.ndarray | None = None  # the last record seen (1-element structured array)
        self.last_clock = np.iinfo(np.int64).min
        self.events = 0

    def _settled(self, clock_ns: int) -> int:
        """Grid points with index < this are settled once an event with ``clock_ns`` is seen."""
        return min(self.total, grid_size(self.start_ns, min(clock_ns, self.end_ns), self.interval_ns))

    def _emit(self, records: np.ndarray | None, clocks: np.ndarray, stop_k: int) -> Iterator[L2Book]:
        """Rows for grid points ``[next_k, stop_k)`` from ``records`` (clocks ascending) after ``self.last``."""
        while self.next_k < stop_k:
            upto = min(stop_k, self.next_k + MAX_GRID_ROWS)
            times = self.start_ns + np.arange(self.next_k, upto, dtype=np.int64) * self.interval_ns
            self.next_k = upto
            index = np.searchsorted(clocks, times, side="right") - 1
            before = index < 0  # no event of this batch yet at t: the carried state, if any
            if self.last is None:  # no event yet in the session: those grid points emit nothing
                times, index = times[~before], index[~before]
                if len(index) == 0:
                    continue
                rows = records[index]
            elif records is None:
                rows = np.repeat(self.last, len(times))
            else:
                rows = records[np.maximum(index, 0)]
                rows[before] = self.last[0]
            book = mbp10_to_book(rows)
            yield L2Book(times.astype("datetime64[ns]"), book.bid_prices, book.bid_sizes, book.ask_prices, book.ask_sizes)

    def feed(self, records: np.ndarray) -> Iterator[L2Book]:
        """Take one batch of records (in stream order); yield the snapshots it settles."""
        if len(records) == 0:
            return
        clocks = np.maximum.accumulate(np.maximum(np.asarray(records[self.clock]).astype(np.int64), self.last_clock))
        self.events += len(records)
        yield from self._emit(records, clocks, self._settled(int(clocks[-1])))
        self.last, self.last_clock = np.array(records[-1:], copy=True), int(clocks[-1])

    def finish(self) -> Iterator[L2Book]:
        """The stream ended: the remaining grid points of the window hold the last state."""
        yield from self._emit(None, np.empty(0, dtype=np.int64), self.total)


def sample_books(batches: Iterable[np.ndarray], sampling: L2Sampling, window: tuple[pd.Timestamp, pd.Timestamp]) -> Iterator[L2Book]:
    """mbp-10 record batches of one (symbol, day) -> snapshot pieces per ``sampling`` over ``window``."""
    if sampling.mode == "every_event":
        for records in batches:
            yield mbp10_to_book(records, window)
        return
    sampler = GridSampler(window[0], window[1], sampling.interval_ms, sampling.clock)
    for records in batches:
        yield from sampler.feed(records)
    yield from sampler.finish()
