"""Historical L2 sampled on a time grid (issue 20 part 2): as-of correctness, every-event mode
unchanged, files interchangeable with live capture's, bounded memory on a multi-million-event day.

Real components: DBN encoded with ``databento_dbn`` and decoded by the ``databento`` client (files
on disk, and the local TLS gateway for the whole backfill path), real Parquet files.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from databento_gateway import DatabentoGateway  # noqa: E402
from dbn_builder import SimVendor  # noqa: E402
from mbp10_stream import mbp10_records, random_stamps, record_dtype, write_mbp10_day  # noqa: E402

from platform_assets.ingestion.databento_transforms import mbp10_to_book  # noqa: E402
from platform_assets.ingestion.l2_sampling import (  # noqa: E402
    DEFAULT_INTERVAL_MS, METADATA_KEY, GridSampler, L2Sampling, read_sampling, sample_books,
)
from resources.adapters.databento_adapter import Chunk  # noqa: E402
from resources.l2_store import L2SnapshotStore  # noqa: E402
from resources.schemas import L2Book  # noqa: E402
from resources.settings import SettingsError, load_settings  # noqa: E402
from resources.validation import InvalidInputError  # noqa: E402

KEY = "db-TESTKEY0123456789abcdefghijk"
OPEN = pd.Timestamp("2024-12-02T14:30Z")  # 09:30 New York
CLOSE = pd.Timestamp("2024-12-02T21:00Z")  # 16:00 New York
SESSION_GRID = 23_400  # 6.5 h at 1 s


def _concat(books) -> L2Book:
    books = [b for b in books if len(b)]
    if not books:
        return L2Book.empty()
    return L2Book(*(np.concatenate([getattr(b, f) for b in books]) for f in ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes")))


def _grid(records: np.ndarray, start: pd.Timestamp, end: pd.Timestamp, interval_ms: int, clock: str = "ts_recv", splits=()) -> L2Book:
    """The streaming sampler fed ``records`` cut at ``splits`` (batch boundaries)."""
    sampler = GridSampler(start, end, interval_ms, clock)
    pieces = []
    for part in np.split(records, sorted(splits)):
        pieces += list(sampler.feed(part))
    return _concat(pieces + list(sampler.finish()))


def _naive(records: np.ndarray, start: pd.Timestamp, end: pd.Timestamp, interval_ms: int, clock: str = "ts_recv") -> tuple[list[int], list[int]]:
    """The definition, by brute force: at each grid point t, the last record i such that every record
    up to i has clock <= t (the book after i then holds no event later than t); none -> no row."""
    clocks = [int(c) for c in records[clock]]
    times, chosen = [], []
    t = start.value
    while t < end.value:
        best = -1
        for i in range(len(clocks)):
            if all(c <= t for c in clocks[: i + 1]):
                best = i
            else:
                break
        if best >= 0:
            times.append(t)
            chosen.append(best)
        t += interval_ms * 1_000_000
    return times, chosen


def _assert_books_equal(got: L2Book, want: L2Book) -> None:
    np.testing.assert_array_equal(got.timestamp, want.timestamp)
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


# ----------------------------------------------------------------------------- as-of correctness
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.integers(0, 60), span_ms=st.integers(1, 5_000), interval_ms=st.integers(1, 700), lead_ms=st.integers(-500, 500),
    seed=st.integers(0, 2**31), clock=st.sampled_from(["ts_recv", "ts_event"]), cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_grid_snapshots_equal_a_naive_asof_reference_on_random_streams(events, span_ms, interval_ms, lead_ms, seed, clock, cuts):
    """Random streams (ties, bursts, empty books, ts_event going backwards), random grids and batch
    cuts: the streamed grid equals the brute-force as-of definition, and no row uses a later event."""
    rng = np.random.default_rng(seed)
    start = OPEN + pd.Timedelta(milliseconds=lead_ms)  # events may start before the window, or well inside it
    end = start + pd.Timedelta(milliseconds=span_ms)
    stamps = np.sort(rng.integers(OPEN.value, OPEN.value + span_ms * 1_000_000 + 1, events, dtype=np.int64))
    if events > 3:
        stamps[1] = stamps[2]  # a tie
        stamps[-1] = start.value + ((end.value - start.value) // (interval_ms * 1_000_000)) * interval_ms * 1_000_000  # exactly on a grid point
        stamps.sort()
    records = mbp10_records(stamps, seed % 1000, event_jitter_ns=3_000_000, empty_share=0.1)
    got = _grid(records, start, end, interval_ms, clock, [min(c, events) for c in cuts])
    times, chosen = _naive(records, start, end, interval_ms, clock)
    want = mbp10_to_book(records[np.array(chosen, dtype=np.int64)]) if chosen else L2Book.empty()
    want = L2Book(np.array(times, dtype=np.int64).astype("datetime64[ns]"), want.bid_prices, want.bid_sizes, want.ask_prices, want.ask_sizes)
    _assert_books_equal(got, want)
    running = np.maximum.accumulate(records[clock].astype(np.int64)) if events else np.empty(0, np.int64)
    for t, i in zip(times, chosen):  # never a later event: everything folded into the row is <= t
        assert running[i] <= t and (i + 1 == events or running[i + 1] > t)


def test_grid_edges_nothing_before_the_first_event_ties_count_state_held_to_the_end():
    s = OPEN
    ns = [s.value + 2_500_000_000, s.value + 3_000_000_000, s.value + 3_000_000_000, s.value + 3_000_000_001]
    records = mbp10_records(np.array(ns, dtype=np.int64), seed=3)
    book = _grid(records, s, s + pd.Timedelta(seconds=6), 1000, splits=[2])  # the tie at 3 s is split across batches
    every = mbp10_to_book(records)
    stamps = book.timestamp.astype(np.int64) - s.value
    assert stamps.tolist() == [3_000_000_000, 4_000_000_000, 5_000_000_000]  # 0, 1, 2 s: no event yet -> no row
    np.testing.assert_array_equal(book.bid_prices[0], every.bid_prices[2])  # at 3 s: both records stamped 3 s, not the one 1 ns later
    np.testing.assert_array_equal(book.bid_prices[1], every.bid_prices[3])  # after the last event its state holds to the window end
    np.testing.assert_array_equal(book.ask_sizes[2], every.ask_sizes[3])
    assert len(_grid(records[:0], s, s + pd.Timedelta(seconds=6), 1000)) == 0  # no event at all: nothing


def test_grid_of_a_large_gap_is_emitted_in_bounded_pieces():
    s = OPEN
    records = mbp10_records(np.array([s.value, s.value + 600 * 10**9], dtype=np.int64), seed=1)
    sampler = GridSampler(s, s + pd.Timedelta(minutes=20), 1)  # 1 ms grid: 1.2M points, one event 10 minutes in
    sizes = [len(b) for b in sampler.feed(records)] + [len(b) for b in sampler.finish()]
    assert sum(sizes) == 1_200_000 and max(sizes) <= 250_000


# ----------------------------------------------------------------------------- every-event mode
def test_every_event_mode_is_todays_conversion(tmp_path):
    start, end = OPEN, OPEN + pd.Timedelta(minutes=5)
    records = mbp10_records(random_stamps(5_000, start - pd.Timedelta(seconds=5), end + pd.Timedelta(seconds=5), seed=4), seed=4)
    pieces = list(sample_books(np.array_split(records, 7), L2Sampling("every_event"), (start, end)))
    _assert_books_equal(_concat(pieces), mbp10_to_book(records, (start, end)))  # one row per event in the window, stamped ts_recv
    grid = _concat(sample_books(np.array_split(records, 7), L2Sampling(), (start, end)))
    assert len(grid) == 300  # a 5-minute window at the default 1 s


# ----------------------------------------------------------------------------- the backfill path
@pytest.fixture
def gateway(tmp_path, monkeypatch):
    gw = DatabentoGateway(provider=SimVendor(), keys={KEY}, folder=tmp_path, stall_seconds=3)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gw.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    yield gw
    gw.close()


def _live_capture_file(tmp_path: Path) -> Path:
    """A live capture segment written by the real recorder (the messages IB sends, no network needed)."""
    from platform_assets.ingestion.depth_capture import DepthRecorder

    store = L2SnapshotStore(level2_path=str(tmp_path / "live"), fsync=False)
    recorder = DepthRecorder(store, "AAPL", 10, interval_ms=1000)
    now = pd.Timestamp("2024-12-02T15:00:00Z")
    for step, (position, operation, side, price, size) in enumerate([(0, 0, 1, 99.99, 100), (0, 0, 0, 100.01, 200), (1, 0, 1, 99.98, 150)]):
        recorder.on_message(now + pd.Timedelta(milliseconds=step), position, operation, side, price, size, 3600)
        recorder.snapshot(now + pd.Timedelta(seconds=step + 1), 3600)
    recorder.flush()
    (path,) = [Path(p) for p in recorder.stats.files if p.endswith(".parquet")]
    return path


def test_backfill_grid_file_is_the_asof_of_the_every_event_file_and_looks_like_live_capture(tmp_path, gateway):
    from platform_api.l2_backfill import backfill_l2

    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url)
    every = backfill_l2("AAPL", "2024-12-02", settings=settings, mode="every_event")
    every_path = Path(every["path"])
    every_table = pq.read_table(every_path)
    moved = every_path.with_name("every_event.parquet")
    every_path.rename(moved)  # keep it aside: the same (symbol, day) path is re-sampled below
    grid = backfill_l2("AAPL", "2024-12-02", settings=settings)  # defaults: L2_SAMPLING_MODE=grid, L2_INTERVAL_MS=1000
    assert every["sampling"] == {"mode": "every_event", "interval_ms": None, "clock": "ts_recv"}
    assert grid["sampling"] == {"mode": "grid", "interval_ms": DEFAULT_INTERVAL_MS, "clock": "ts_recv"} and grid["status"] == "written"
    assert grid["path"] == every["path"] and Path(grid["path"]).name == "2024-12-02_snapshots_databento.parquet"

    ee = L2Book.from_arrow(every_table)
    assert every["rows"] == len(ee) == 780  # the simulator's book: 2 snapshots a minute over 390 minutes
    table = pq.read_table(grid["path"])
    got = L2Book.from_arrow(table)
    assert grid["rows"] == len(got) == SESSION_GRID  # first event at the open: every grid point of [09:30, 16:00)
    t = got.timestamp.astype(np.int64)
    assert t[0] == OPEN.value and t[-1] == CLOSE.value - 10**9 and (np.diff(t) == 10**9).all()
    index = np.searchsorted(ee.timestamp.astype(np.int64), t, side="right") - 1  # independent as-of: last event stamped <= t
    assert (index >= 0).all()
    _assert_books_equal(got, L2Book(got.timestamp, ee.bid_prices[index], ee.bid_sizes[index], ee.ask_prices[index], ee.ask_sizes[index]))

    live = _live_capture_file(tmp_path)
    live_schema, grid_schema, every_schema = pq.read_schema(live), pq.read_schema(grid["path"]), pq.read_schema(moved)
    assert grid_schema.equals(live_schema, check_metadata=False) and every_schema.equals(live_schema, check_metadata=False)
    assert grid_schema.names == live_schema.names == ["timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes", "source"]
    assert read_sampling(grid_schema.metadata) == grid["sampling"] and read_sampling(every_schema.metadata) == every["sampling"]
    assert read_sampling(live_schema.metadata) is None and METADATA_KEY not in (live_schema.metadata or {})  # the one documented difference
    assert live.parent.name == Path(grid["path"]).parent.name == "AAPL"  # same level2/{SYMBOL}/ layout
    lengths = pc.list_value_length(table.column("bid_prices"))
    assert pc.min(lengths).as_py() == pc.max(lengths).as_py() == 10
    store = L2SnapshotStore(level2_path=str(settings.level2_path), fsync=False)
    merged, sources = store.read_day("AAPL", dt.date(2024, 12, 2))  # downstream readers see the grid file as any other
    assert sources == ["databento"] and len(merged) >= SESSION_GRID


def test_sampling_options_are_validated_and_reach_the_file(tmp_path, gateway, monkeypatch, capsys):
    from platform_api.cli import build_parser, main
    from platform_api.l2_backfill import backfill_l2
    from platform_assets.ingestion.depth_capture import record_depth
    from resources.settings import get_settings

    # the default grid is live capture's default interval, everywhere
    assert inspect.signature(record_depth).parameters["interval_s"].default * 1000 == DEFAULT_INTERVAL_MS == load_settings().l2_interval_ms
    assert build_parser().parse_args(["record-depth", "--symbol", "AAPL"]).interval * 1000 == DEFAULT_INTERVAL_MS
    assert load_settings().l2_sampling_mode == "grid"
    for key, value in (("L2_SAMPLING_MODE", "sometimes"), ("L2_INTERVAL_MS", "0"), ("L2_INTERVAL_MS", "1.5"), ("L2_SAMPLING_CLOCK", "wall")):
        with pytest.raises(SettingsError, match=key):
            load_settings(**{key: value})
    with pytest.raises(InvalidInputError, match="mode"):
        L2Sampling("sometimes")
    with pytest.raises(InvalidInputError, match="interval_ms"):
        L2Sampling("grid", 0)
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url, L2_INTERVAL_MS="60000")
    with pytest.raises(InvalidInputError, match="interval_ms"):
        backfill_l2("AAPL", "2024-12-02", settings=settings, interval_ms=-5)
    minute = backfill_l2("AAPL", "2024-12-02", settings=settings)  # L2_INTERVAL_MS from the settings
    assert minute["rows"] == 390 and read_sampling(pq.read_schema(minute["path"]).metadata)["interval_ms"] == 60_000

    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(tmp_path / "cli-data"))
    monkeypatch.setenv("DATABENTO_GATEWAY", gateway.url)
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    try:
        assert main(["l2-backfill", "--symbols", "AAPL", "--start", "2024-12-02", "--end", "2024-12-03", "--mode", "every_event"]) == 0
        assert "780 snapshots" in capsys.readouterr().out
        assert main(["l2-backfill", "--symbols", "MSFT", "--start", "2024-12-02", "--end", "2024-12-03", "--interval-ms", "500"]) == 0
        assert f"{2 * SESSION_GRID} snapshots" in capsys.readouterr().out
        assert main(["l2-backfill", "--symbols", "MSFT", "--start", "2024-12-02", "--end", "2024-12-03", "--interval-ms", "0"]) == 2
        assert "interval_ms" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    files = {p.parent.name: read_sampling(pq.read_schema(p).metadata) for p in (tmp_path / "cli-data" / "level2").rglob("*.parquet")}
    assert files == {"AAPL": {"mode": "every_event", "interval_ms": None, "clock": "ts_recv"}, "MSFT": {"mode": "grid", "interval_ms": 500, "clock": "ts_recv"}}


# ----------------------------------------------------------------------------- bounded memory
EVENTS = 2_000_000
ROW_BYTES = 8 + 4 * 10 * 8  # one in-memory snapshot: timestamp + 4 arrays of 10 levels
MEMORY_BOUND = 300 * 2**20


def test_streaming_a_two_million_event_day_stays_in_bounded_memory(tmp_path):
    """2M mbp-10 events (a liquid stock's day) decoded by the databento client from a DBN file,
    sampled and written: peak traced memory (Python + numpy + Arrow pool) far below what holding
    the day's every-event snapshots in memory takes (2M x 328 B = 656 MB, the records alone 736 MB)."""
    path = write_mbp10_day(tmp_path / "day.dbn.zst", EVENTS, OPEN, CLOSE, seed=11)
    store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)
    chunk = Chunk("mbp-10", OPEN, CLOSE, path)
    sampling = L2Sampling()
    in_memory_every_event = EVENTS * ROW_BYTES
    assert MEMORY_BOUND < in_memory_every_event / 2

    pool = pa.default_memory_pool()
    pool.release_unused()
    arrow_before = pool.max_memory()
    tracemalloc.start()
    try:
        written, rows = store.write_stream("AAPL", dt.date(2024, 12, 2), sample_books(chunk.record_batches(), sampling, (OPEN, CLOSE)),
                                           suffix="databento", source="databento", metadata=sampling.file_metadata())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrow_peak = max(0, pool.max_memory() - arrow_before)
    assert written is not None and rows == SESSION_GRID - 1  # the first event comes just after 09:30:00: no row at the open
    assert peak + arrow_peak < MEMORY_BOUND, f"peak {peak / 2**20:.0f} MiB + arrow {arrow_peak / 2**20:.0f} MiB"

    # spot-check the file against an independent as-of pass over the same DBN file
    book = L2Book.from_arrow(pq.read_table(written))
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(len(book), 300, replace=False))
    times = book.timestamp.astype(np.int64)[picks]
    best = np.full(len(picks), -1, dtype=np.int64)
    chosen = np.zeros(len(picks), dtype=record_dtype())
    for records in chunk.record_batches():
        where = np.searchsorted(records["ts_recv"].astype(np.int64), times, side="right") - 1
        hit = where >= 0
        chosen[hit] = records[where[hit]]
        best[hit] = 1
    assert (best == 1).all()
    want = mbp10_to_book(chosen)
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        np.testing.assert_array_equal(getattr(book, name)[picks], getattr(want, name))
    assert json.loads(pq.read_schema(written).metadata[METADATA_KEY]) == {"mode": "grid", "interval_ms": 1000, "clock": "ts_recv"}


def test_bench_runs_at_tiny_scale_and_its_grid_matches_the_asof_check():
    from bench import l2_grid

    grid, every = l2_grid.run(events=20_000)
    assert "as-of mismatches 0" in grid.note and grid.rows == every.rows == 20_000
    assert "peak RSS" in grid.note and "peak RSS" in every.note
