import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_assets.ingestion.raw_batches import build_raw_batch
from resources.atomic import write_parquet_atomic
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake, Table, raw_bars_table
from resources.schemas import L2_SNAPSHOT_SCHEMA, RAW_BARS_SCHEMA, L2Book
from resources.sim_market import simulate_day

DAY = dt.date(2024, 3, 12)


def test_l2_file_contract(tmp_path):
    store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)
    book = simulate_day(2, "AAPL", DAY).book
    path = store.write("AAPL", DAY, book, suffix="093000", source="sim")
    assert path == tmp_path / "level2" / "AAPL" / "2024-03-12_snapshots_093000.parquet"
    table = pq.read_table(path)
    for field in L2_SNAPSHOT_SCHEMA:
        assert table.schema.field(field.name).type == field.type
    assert set(pc_lengths(table)) == {10}
    assert table.column("source").to_pylist()[0] == "sim"
    back, sources = store.read_day("AAPL", DAY)
    np.testing.assert_array_equal(back.ask_sizes, book.ask_sizes)
    assert sources == ["sim"]
    with pytest.raises(ValueError):
        store.snapshot_path("AAPL", DAY, "../../x")


def test_writing_over_garbage_at_an_l2_files_path_sets_the_garbage_aside(tmp_path):
    """Whatever sat at a day file's path and does not read as Parquet is kept beside it
    (``*.corrupt``, ignored by readers), not overwritten; a readable file is simply replaced."""
    store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)
    book = simulate_day(2, "AAPL", DAY).book
    path = store.snapshot_path("AAPL", DAY, "093000")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really a parquet file")
    assert store.write("AAPL", DAY, book, suffix="093000", source="sim") == path
    aside = list(path.parent.glob("*.corrupt"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"PAR1 not really a parquet file"
    store.write("AAPL", DAY, book, suffix="093000", source="sim")  # a good file is replaced, nothing set aside
    assert len(list(path.parent.glob("*.corrupt"))) == 1 and store.day_files("AAPL", DAY) == [path]
    np.testing.assert_array_equal(store.read_day("AAPL", DAY)[0].bid_prices, book.bid_prices)


def pc_lengths(table):
    for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        yield from table.column(name).combine_chunks().value_lengths().to_pylist()


def test_missing_levels_are_zero_and_real_sources_win(tmp_path):
    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    ts = np.array(["2024-03-12T14:30:00", "2024-03-12T14:30:30"], dtype="datetime64[ns]")
    prices = np.zeros((2, 10))
    prices[:, :3] = [[10.0, 9.99, 9.98], [10.01, 10.0, 9.99]]
    sizes = np.zeros((2, 10), dtype=np.int64)
    sizes[:, :3] = 100
    real = L2Book(ts, prices, sizes, prices + 0.02, sizes)
    store.write("AAPL", DAY, real, suffix="databento", source="databento")
    store.write("AAPL", DAY, simulate_day(2, "AAPL", DAY).book, suffix="093000", source="sim")
    book, sources = store.read_day("AAPL", DAY)
    assert sources == ["databento"] and len(book) == 2
    assert (book.bid_prices[:, 3:] == 0).all() and (book.bid_sizes[:, 3:] == 0).all()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet_atomic(pa.table({"a": [1]}), target, fsync=False)

    class Boom(Exception):
        pass

    from resources.atomic import atomic_write

    def failing(tmp):
        tmp.write_bytes(b"partial")
        raise Boom()

    with pytest.raises(Boom):
        atomic_write(target, failing)
    assert pq.read_table(target).column("a").to_pylist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_raw_batches_are_append_only_and_idempotent(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    table = raw_bars_table("sim")
    bars = simulate_day(9, "AAPL", DAY).bars
    dup = pd.concat([bars, bars.iloc[[3]]], ignore_index=True).sort_values("ts", kind="stable")
    now = pd.Timestamp("2024-03-13T01:00", tz="UTC")
    batch_id, batch, repeated = build_raw_batch(dup, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    assert len(repeated) == 1 and not batch["ts"].duplicated().any()
    assert batch.columns.tolist() == RAW_BARS_SCHEMA.names
    _, written = lake.append_batch(table, "AAPL", DAY, batch, batch_id, now, RAW_BARS_SCHEMA)
    assert written
    # Same content later: same batch id, nothing written.
    again_id, again, _ = build_raw_batch(dup, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now + pd.Timedelta(hours=1))
    assert again_id == batch_id
    _, written = lake.append_batch(table, "AAPL", DAY, again, again_id, now + pd.Timedelta(hours=1), RAW_BARS_SCHEMA)
    assert not written and len(lake.batch_files(table, "AAPL", DAY)) == 1
    # Corrected delivery: appended, old batch kept, readers take the newest.
    fixed = bars.assign(close=bars["close"] + 0.01, high=bars["high"] + 0.01)
    new_id, new_batch, _ = build_raw_batch(fixed, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now + pd.Timedelta(hours=2))
    lake.append_batch(table, "AAPL", DAY, new_batch, new_id, now + pd.Timedelta(hours=2), RAW_BARS_SCHEMA)
    assert len(lake.batch_files(table, "AAPL", DAY)) == 2
    latest = lake.read_latest_batch(table, "AAPL", DAY)
    assert set(latest["batch_id"]) == {new_id}


def test_a_raw_batch_this_process_wrote_is_read_from_memory_as_the_file_gives_it(tmp_path, monkeypatch):
    """Curation reads the batches the raw step of its run just wrote from memory: the same table
    (values, types, metadata) and the same errors as reading the file, and only while the file on
    disk is the one written (a file replaced, or truncated by a crash, is read from disk)."""
    from platform_assets.ingestion.raw_batches import raw_batch_table
    from resources import file_memory, lake as lake_module
    from resources.lake import CorruptLakeFileError, read_parquet_checked

    monkeypatch.setattr(lake_module, "WRITTEN_TABLES", file_memory.FileMemory(lake_module.WRITTEN_TABLES_BYTES))
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    table = raw_bars_table("sim")
    now = pd.Timestamp("2024-03-13T01:00", tz="UTC")
    batch_id, batch, _ = raw_batch_table(simulate_day(9, "AAPL", DAY).bars, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    path, written = lake.append_batch(table, "AAPL", DAY, batch, batch_id, now, RAW_BARS_SCHEMA)
    assert written and lake_module.WRITTEN_TABLES.get(file_memory.file_identity(path)) is not None  # remembered
    on_disk = read_parquet_checked(path, from_memory=False)
    found, corrupt = lake.read_latest_batches(table, "AAPL", [DAY])
    assert not corrupt and found[DAY].equals(on_disk, check_metadata=True) and found[DAY].schema == on_disk.schema
    assert read_parquet_checked(path, ["close", "ts"]).equals(pq.read_table(path, columns=["close", "ts"]))
    for reader in (read_parquet_checked, lambda p, c: read_parquet_checked(p, c, from_memory=False)):
        with pytest.raises(CorruptLakeFileError, match="no column 'nope'"):
            reader(path, ["close", "nope"])

    other_id, other, _ = raw_batch_table(simulate_day(3, "AAPL", DAY).bars, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    tmp = path.with_name("other.tmp")
    pq.write_table(other, tmp)
    tmp.replace(path)  # another writer's file under the same name
    assert read_parquet_checked(path).equals(other)
    path.write_bytes(path.read_bytes()[:200])  # torn
    with pytest.raises(CorruptLakeFileError):
        read_parquet_checked(path)


def test_curated_month_files_this_process_wrote_are_read_from_memory_as_the_files_give_them(tmp_path, monkeypatch):
    """Alignment, features and labels read the curated month files their run just wrote from
    memory: the same table as the dataset read of the files (values, column order, metadata), and
    from disk as soon as one file is not the one written."""
    from resources import file_memory, lake as lake_module
    from resources.lake import CURATED_BARS, read_parquet_table

    monkeypatch.setattr(lake_module, "WRITTEN_TABLES", file_memory.FileMemory(lake_module.WRITTEN_TABLES_BYTES))
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    days = [dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 12, 2), dt.date(2024, 12, 3)]
    with lake.batched_writes():
        for day in days:
            frame = pd.DataFrame({"symbol": "AAPL", "date": day, "close": np.arange(5.0) + day.day,
                                  "ts": pd.date_range(pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=14), periods=5, freq="min")})
            lake.write_partition(CURATED_BARS, "AAPL", day, frame)
    files = lake.partition_files(CURATED_BARS, ["AAPL"], days)
    assert len(files) == 2 and all(lake_module.WRITTEN_TABLES.get(file_memory.file_identity(f)) is not None for f in files)
    remembered = lake_module._remembered_tables
    for columns in (None, ["ts", "close"]):
        from_memory = read_parquet_table(files, columns)
        monkeypatch.setattr(lake_module, "_remembered_tables", lambda files: None)
        on_disk = read_parquet_table(files, columns)
        monkeypatch.setattr(lake_module, "_remembered_tables", remembered)
        assert from_memory.equals(on_disk, check_metadata=True) and from_memory.column_names == on_disk.column_names
    stored = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    assert lake.read(CURATED_BARS, ["AAPL"], days[1:3]).equals(stored[stored["date"].isin(days[1:3])].reset_index(drop=True))
    other = pq.read_table(files[1]).to_pandas().assign(close=-1.0)
    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), files[1])  # replaced behind the lake's back
    assert (read_parquet_table(files)["close"].to_numpy()[-10:] == -1.0).all()


def test_re_ingesting_heals_a_raw_batch_whose_pages_rotted_behind_a_readable_footer(tmp_path, monkeypatch):
    """Footer and row count intact, pages damaged: the same delivery again is not "unchanged" (a
    later curation would quarantine it and lose the day): the batch is quarantined and written anew."""
    from platform_assets.ingestion.raw_batches import raw_batch_table
    from resources import file_memory, lake as lake_module
    from resources.lake import CORRUPT_DIR, parquet_file_ok, parquet_file_readable

    monkeypatch.setattr(lake_module, "WRITTEN_TABLES", file_memory.FileMemory(0))  # every read from disk
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    table = raw_bars_table("sim")
    now = pd.Timestamp("2024-03-13T01:00", tz="UTC")
    batch_id, batch, _ = raw_batch_table(simulate_day(9, "AAPL", DAY).bars, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    path, _ = lake.append_batch(table, "AAPL", DAY, batch, batch_id, now, RAW_BARS_SCHEMA)
    data = bytearray(path.read_bytes())
    data[200:2200] = bytes(2000)
    path.write_bytes(bytes(data))
    assert parquet_file_ok(path, batch.num_rows) and not parquet_file_readable(path)
    again, written = lake.append_batch(table, "AAPL", DAY, batch, batch_id, now + pd.Timedelta(hours=1), RAW_BARS_SCHEMA)
    assert written and pq.read_table(again).equals(batch)
    assert [p.name for p in lake.batch_files(table, "AAPL", DAY)] == [again.name]
    assert any(p.name.startswith(path.name) for p in (lake.root / CORRUPT_DIR).rglob("*.corrupt"))  # kept aside


def test_raw_batch_as_arrow_is_the_keyed_frame_with_the_same_batch_id():
    """raw_batch_table (the sim ingestion's path, no pandas batch frame) writes exactly what the
    batch frame converted with the schema holds, and keeps the content-hash batch id of earlier
    releases: re-ingesting data stored before stays a no-op (the id below was computed by the
    frame-building code of session 14 for this input)."""
    from platform_assets.ingestion.raw_batches import raw_batch_table
    from resources.lake import _to_arrow

    bars = simulate_day(9, "AAPL", DAY).bars
    dup = pd.concat([bars, bars.iloc[[3]]], ignore_index=True).sort_values("ts", kind="stable")
    now = pd.Timestamp("2024-03-13T01:00", tz="UTC")
    batch_id, table, repeated = raw_batch_table(dup, source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    assert batch_id == "6bc8f39cab940c43"
    keyed = dup[~dup["ts"].duplicated()]
    def expected(rows):
        return _to_arrow(pd.DataFrame({
            "source": "sim", "symbol": "AAPL", "date": [DAY] * len(rows), "ts": rows["ts"].to_numpy(),
            **{c: rows[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count")},
            "batch_id": batch_id, "ingestion_ts": now,
        }), RAW_BARS_SCHEMA)
    assert table.schema.equals(RAW_BARS_SCHEMA) and table.equals(expected(keyed))
    assert repeated.equals(expected(dup[dup["ts"].duplicated()])) and repeated.num_rows == 1
    # the vendor's time zone does not matter; its dtypes do for the id (hashed as delivered), not for the rows
    assert raw_batch_table(dup.assign(ts=dup["ts"].dt.tz_convert("America/New_York")), source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)[1].equals(table)
    micro_id, micro, _ = raw_batch_table(dup.assign(ts=dup["ts"].astype("datetime64[us, UTC]")), source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    assert micro.drop_columns(["batch_id"]).equals(table.drop_columns(["batch_id"]))  # microsecond stamps: same instants
    other_id, floats, _ = raw_batch_table(dup.assign(volume=dup["volume"].astype(float)), source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)
    assert other_id != batch_id and floats.drop_columns(["batch_id"]).equals(table.drop_columns(["batch_id"]))
    # a vendor's fractional volumes are cast to the schema's int64 as the frame path did (not refused)
    fractional = raw_batch_table(dup.assign(volume=dup["volume"] + 0.5), source="sim", symbol="AAPL", day=DAY, ingestion_ts=now)[1]
    assert fractional.column("volume").to_pylist() == table.column("volume").to_pylist()
    # its download-manifest line is the one the frame gets
    from resources.manifests import download_record

    lines = [download_record(Path("/lake/b.parquet"), rows, vendor="sim", symbol="AAPL", bar_size="1m") for rows in (table, table.to_pandas())]
    assert [{k: v for k, v in line.items() if k != "written_at"} for line in lines][0] == {k: v for k, v in lines[1].items() if k != "written_at"}
    assert lines[0]["rows"] == table.num_rows and lines[0]["time_start"] == "2024-03-12T13:30:00+00:00"
    for rows in (micro, table.set_column(3, "ts", pa.array([None] * table.num_rows, table.schema.field("ts").type))):  # Arrow span, pandas fallback
        line, frame_line = (download_record(Path("/lake/b.parquet"), r, vendor="sim", symbol="AAPL", bar_size="1m") for r in (rows, rows.to_pandas()))
        assert {**line, "written_at": ""} == {**frame_line, "written_at": ""}


def test_the_content_hash_of_columns_is_the_hash_of_their_frame():
    """Batch ids are taken of the columns without building the frame: the digest must stay the
    frame's (ids of stored batches), for every dtype a vendor's rows come in."""
    from resources.lake import content_hash, content_hash_of_columns

    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-03-12 13:30", periods=50, freq="1min", tz="UTC")
    floats = rng.normal(size=50)
    floats[[4, 9]] = np.nan
    columns = {
        "ts": ts.array, "naive": ts.tz_localize(None).as_unit("us").to_numpy(), "price": floats, "volume": rng.integers(0, 9, 50),
        "small": rng.integers(0, 9, 50).astype(np.int32), "flag": rng.random(50) < 0.5, "venue": np.array(["X", "Y"] * 25, dtype=object),
    }
    for rows in (slice(None), slice(0, 1), slice(0, 0)):
        part = {name: values[rows] for name, values in columns.items()}
        assert content_hash_of_columns(part, "sim", "AAPL") == content_hash(pd.DataFrame(part), "sim", "AAPL")
    changed = {**columns, "price": floats + 0.01}
    assert content_hash_of_columns(changed, "sim", "AAPL") != content_hash_of_columns(columns, "sim", "AAPL")


def test_lake_rejects_path_like_symbols(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with pytest.raises(ValueError):
        lake.partition_dir(raw_bars_table("sim"), "../../etc", DAY)


def test_month_file_reads_return_only_the_asked_dates_whatever_the_columns(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    table = Table("unit_month_reads")
    days = [dt.date(2024, 11, d) for d in (25, 26, 27)]
    for day in days:
        ts = pd.date_range(pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=15), periods=3, freq="min")
        lake.write_partition(table, "AAPL", day, pd.DataFrame({"ts": ts, "date": day, "x": [day.day] * 3}))
    assert lake.compact_month(table, "AAPL", "2024-11") == 3
    one = lake.read(table, ["AAPL"], [days[1]], columns=["ts", "x"])  # "date" not asked for: still filtered on it
    assert list(one.columns) == ["ts", "x"] and one["x"].tolist() == [26, 26, 26]
    two = lake.read(table, ["AAPL"], [days[0], days[2]])
    assert sorted(set(two["x"])) == [25, 27] and len(two) == 6
    assert lake.read(table, ["AAPL"], [dt.date(2024, 11, 28)]).empty


def test_stored_dates_answers_like_has_partition_for_every_layout(tmp_path):
    """Day files, a month file, pending batched writes and a corrupt month file (quarantined: its
    dates are not stored) give the same answer as has_partition date by date."""
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    table = Table("unit_stored_dates")

    def frame(day):
        return pd.DataFrame({"ts": [pd.Timestamp(day, tz="UTC")], "date": [day], "x": [day.day]})

    nov = [dt.date(2024, 11, d) for d in (25, 26, 27)]
    for day in nov:
        lake.write_partition(table, "AAPL", day, frame(day))
    lake.compact_month(table, "AAPL", "2024-11")
    lake.write_partition(table, "AAPL", dt.date(2024, 12, 2), frame(dt.date(2024, 12, 2)))  # a day file
    everything = set(nov) | {dt.date(2024, 12, 2), dt.date(2024, 12, 3)}
    with lake.batched_writes():
        lake.write_partition(table, "AAPL", dt.date(2024, 12, 3), frame(dt.date(2024, 12, 3)))  # pending
        assert lake.stored_dates(table, "AAPL") == everything
        assert {d for d in everything if lake.has_partition(table, "AAPL", d)} == everything
    assert lake.stored_dates(table, "MSFT") == set()
    month = lake.month_file(table, "AAPL", "2024-11")
    month.write_bytes(b"not parquet")
    assert lake.stored_dates(table, "AAPL") == {dt.date(2024, 12, 2), dt.date(2024, 12, 3)}
    assert not month.exists()  # quarantined, never deleted

    for year in (2023, 2022):  # two corrupt month files of one symbol: both quarantined, no error
        for day in (dt.date(year, 3, 1), dt.date(year, 3, 2)):
            lake.write_partition(table, "MSFT", day, frame(day))
        lake.compact_month(table, "MSFT", f"{year}-03")
        lake.month_file(table, "MSFT", f"{year}-03").write_bytes(b"not parquet")
    lake.write_partition(table, "MSFT", dt.date(2024, 1, 2), frame(dt.date(2024, 1, 2)))
    assert lake.stored_dates(table, "MSFT") == {dt.date(2024, 1, 2)}
    assert not lake.month_file(table, "MSFT", "2023-03").exists() and not lake.month_file(table, "MSFT", "2022-03").exists()


def test_a_days_real_files_are_merged_in_time_order_without_repeated_stamps(tmp_path):
    """Two real captures of a day (a live file written out of order, a Databento file) interleave
    and share a stamp: one book in time order, each stamp once (the first file's row kept)."""
    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    base = np.datetime64("2024-03-12T14:30:00", "ns")

    def book(seconds, price):
        ts = base + np.array(seconds, dtype="timedelta64[s]").astype("timedelta64[ns]")
        prices = np.full((len(seconds), 10), price)
        sizes = np.full((len(seconds), 10), 100, dtype=np.int64)
        return L2Book(ts, prices, sizes, prices + 0.02, sizes)

    store.write("AAPL", DAY, book([40, 20, 0], 10.0), suffix="093000", source="live")
    store.write("AAPL", DAY, book([10, 20, 30], 11.0), suffix="databento", source="databento")
    merged, sources = store.read_day("AAPL", DAY)
    assert sources == ["databento", "live"]
    assert list((merged.timestamp - base) // np.timedelta64(1, "s")) == [0, 10, 20, 30, 40]
    assert list(merged.bid_prices[:, 0]) == [10.0, 11.0, 10.0, 11.0, 10.0]  # 20 s: the live file's row


def test_day_index_lists_the_files_day_files_finds_and_reads_the_same_books(tmp_path):
    """One listing of a symbol's folder (what multi-day readers use) gives, day by day, the files
    the per-day glob gives, and ``read_day`` with it the same book; other names are ignored."""
    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    for day in days[:2]:
        store.write("AAPL", day, simulate_day(2, "AAPL", day).book, suffix="093000", source="sim")
    store.write("AAPL", days[1], simulate_day(3, "AAPL", days[1]).book, suffix="databento", source="databento")
    folder = store.symbol_dir("AAPL")
    for odd in (".tmp-1-x.parquet", f"{DAY}_snapshots_093000.parquet.corrupt", f"{DAY}_snapshot_093000.parquet",
                f"{DAY}_snapshots.parquet", "notes.txt", f"{DAY}_snapshots_.parquet"):
        (folder / odd).write_bytes(b"")
    index = store.day_index("AAPL")
    assert {day: index.get(day.isoformat(), []) for day in days} == {day: store.day_files("AAPL", day) for day in days}
    assert f"{DAY}_snapshots_.parquet" in [p.name for p in index[DAY.isoformat()]]  # an empty suffix matches both ways
    (folder / f"{DAY}_snapshots_.parquet").unlink()  # (an empty file: kept out of the reads below)
    index = store.day_index("AAPL")
    assert [p.name for p in index[days[1].isoformat()]] == [f"{days[1]}_snapshots_093000.parquet", f"{days[1]}_snapshots_databento.parquet"]
    for day in days:
        with_index, without = store.read_day("AAPL", day, index), store.read_day("AAPL", day)
        assert with_index[1] == without[1]
        np.testing.assert_array_equal(with_index[0].timestamp, without[0].timestamp)
        np.testing.assert_array_equal(with_index[0].bid_prices, without[0].bid_prices)
    assert store.day_index("MSFT") == {}  # no folder yet


def _top_equals(top: L2Book, book: L2Book) -> bool:
    return top.levels == 1 and all(
        np.array_equal(getattr(top, name), getattr(book, name)[:, :1] if name != "timestamp" else book.timestamp)
        for name in ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes")
    )


def test_the_top_of_book_read_is_level_0_of_the_files_as_they_are_now(tmp_path, monkeypatch):
    """Curation and alignment read the top of book, from memory when this process read the same
    files lately: it is always level 0 of what ``read_day`` reads from the files on disk now (a
    replaced or an added file is read again), whoever read them first."""
    from resources import l2_store

    monkeypatch.setattr(l2_store, "TOP_OF_BOOK", l2_store._BookMemory(l2_store.TOP_OF_BOOK_CACHE_BYTES))
    monkeypatch.setattr(l2_store, "WRITTEN_BOOKS", l2_store._BookMemory(0, view=l2_store.copy_of_book))  # reads from the files
    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    days = [DAY, DAY + dt.timedelta(days=1)]
    for day in days:
        store.write("AAPL", day, simulate_day(2, "AAPL", day).book, suffix="093000", source="sim")
    full, sources = store.read_day("AAPL", DAY)  # e.g. the L2 features, first
    top, top_sources = store.read_day_top("AAPL", DAY)
    assert l2_store.TOP_OF_BOOK.get(l2_store.files_identity(store.day_files("AAPL", DAY))) is not None  # served from memory
    assert _top_equals(top, full) and top_sources == sources == ["sim"]
    top.bid_prices.fill(-1.0)  # a caller writing into its copy changes nobody else's
    assert _top_equals(store.read_day_top("AAPL", DAY)[0], full)
    on_disk = store._read_files(store.day_files("AAPL", days[1]))[0]  # (not through the memory)
    first = store.read_day_top("AAPL", days[1], store.day_index("AAPL"))[0]  # read first as the top: from the file
    assert _top_equals(first, on_disk)
    first.ask_sizes.fill(-1)  # nor into the copy a miss returned
    assert _top_equals(store.read_day_top("AAPL", days[1])[0], on_disk)

    store.write("AAPL", DAY, simulate_day(5, "AAPL", DAY).book, suffix="093000", source="sim")  # the file replaced
    assert _top_equals(store.read_day_top("AAPL", DAY)[0], store.read_day("AAPL", DAY)[0])
    assert not _top_equals(store.read_day_top("AAPL", DAY)[0], full)
    store.write("AAPL", DAY, simulate_day(6, "AAPL", DAY).book, suffix="databento", source="databento")  # a file added
    merged, merged_sources = store.read_day("AAPL", DAY)
    top, top_sources = store.read_day_top("AAPL", DAY, store.day_index("AAPL"))
    assert _top_equals(top, merged) and top_sources == merged_sources == ["databento"]
    assert store.read_day_top("MSFT", DAY)[0].levels == 1 and len(store.read_day_top("MSFT", DAY)[0]) == 0


def _books_equal(a: L2Book, b: L2Book) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name)) and getattr(a, name).dtype == getattr(b, name).dtype
               for name in ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"))


def test_a_day_this_process_wrote_is_read_from_memory_as_the_file_gives_it(tmp_path, monkeypatch):
    """The L2 features read the days the same run just wrote from memory: exactly what reading the
    file gives (also for a book written out of order with a repeated timestamp), a copy per caller,
    and only while the file on disk is the one written (replaced, added to, or renamed over by
    another writer right after the write: read from disk)."""
    from resources import l2_store

    monkeypatch.setattr(l2_store, "WRITTEN_BOOKS", l2_store._BookMemory(l2_store.WRITTEN_BOOKS_CACHE_BYTES, view=l2_store.copy_of_book))
    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    book = simulate_day(2, "AAPL", DAY).book
    shuffled = book.take(np.concatenate([np.arange(len(book))[::-1], [3]]))  # newest first, one snapshot twice
    store.write("AAPL", DAY, shuffled, suffix="093000", source="sim")
    files = store.day_files("AAPL", DAY)
    assert l2_store.WRITTEN_BOOKS.get(l2_store.files_identity(files)) is not None  # remembered
    from_disk, disk_sources = store._read_files(files)
    read, sources = store.read_day("AAPL", DAY)
    assert _books_equal(read, from_disk) and sources == disk_sources == ["sim"] and _books_equal(read, book)
    read.bid_prices.fill(-1.0)  # a caller writing into its copy changes nobody else's
    assert _books_equal(store.read_day("AAPL", DAY)[0], from_disk)

    later = DAY + dt.timedelta(days=3)  # in time order, in other types: remembered from its arrays, as the file reads
    ordered = simulate_day(4, "AAPL", later).book
    narrow = L2Book(ordered.timestamp, ordered.bid_prices.astype(np.float32), ordered.bid_sizes.astype(np.int32), ordered.ask_prices, ordered.ask_sizes)
    store.write("AAPL", later, narrow, suffix="093000", source="sim")
    remembered = l2_store.WRITTEN_BOOKS.get(l2_store.files_identity(store.day_files("AAPL", later)))
    assert remembered is not None and remembered[1] == ["sim"]
    assert _books_equal(remembered[0], store._read_files(store.day_files("AAPL", later))[0])
    narrow.bid_sizes.fill(0)  # the writer's arrays are not the remembered ones
    assert _books_equal(store.read_day("AAPL", later)[0], store._read_files(store.day_files("AAPL", later))[0])

    store.write("AAPL", DAY, simulate_day(6, "AAPL", DAY).book, suffix="databento", source="databento")  # a file added
    assert _books_equal(store.read_day("AAPL", DAY)[0], store._read_files(store.day_files("AAPL", DAY))[0])

    real_atomic_write = l2_store.atomic_write
    other = simulate_day(9, "AAPL", DAY + dt.timedelta(days=1)).book

    def another_writer_wins(target, write, **kwargs):  # another process renames its file over ours right after our rename
        path = real_atomic_write(target, write, **kwargs)
        tmp = path.with_name("other.tmp")
        pq.write_table(other.to_arrow(extra={"source": "sim"}), tmp)
        tmp.replace(path)
        return path

    monkeypatch.setattr(l2_store, "atomic_write", another_writer_wins)
    day = DAY + dt.timedelta(days=1)
    store.write("AAPL", day, simulate_day(2, "AAPL", day).book, suffix="093000", source="sim")
    assert _books_equal(store.read_day("AAPL", day)[0], other)  # the file on disk, not the book we wrote


def test_the_top_of_book_memory_is_bounded(tmp_path, monkeypatch):
    from resources import file_memory, l2_store

    store = L2SnapshotStore(level2_path=str(tmp_path), fsync=False)
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    for day in days:
        store.write("AAPL", day, simulate_day(2, "AAPL", day).book, suffix="093000", source="sim")
    one_day = sum(getattr(store.read_day_top("AAPL", DAY)[0], n).nbytes for n in ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"))
    cache = l2_store._BookMemory(int(2.5 * one_day), ttl_seconds=60)
    monkeypatch.setattr(l2_store, "TOP_OF_BOOK", cache)

    def held() -> list[bool]:
        return [cache.get(l2_store.files_identity(store.day_files("AAPL", day))) is not None for day in days]

    for _ in range(2):  # a step reads the days in order, the next step reads them again
        for day in days:
            store.read_day_top("AAPL", day)
        assert cache.size <= cache.budget and held() == [True, True, False, False]  # the first two kept for the next step
    clock = time.monotonic()
    monkeypatch.setattr(file_memory.time, "monotonic", lambda: clock + 61)  # an hour later: old entries give way
    store.read_day("AAPL", days[3])
    assert held() == [False, True, False, True] and cache.size <= cache.budget


def test_the_lost_dates_journal_is_shared_by_processes_taken_once_and_mine_only_leaves_others(tmp_path):
    """Records survive the process that made them, a record is taken by one taker only, a reporter
    taking only its own leaves another process's for the owner, and a garbled record is set aside."""
    import datetime as dt
    import subprocess
    import sys

    from resources import lost_dates

    root = tmp_path / "lake"
    mine = lost_dates.LostDates("curated_bars", "AAPL", "2024-11", frozenset({dt.date(2024, 11, 18)}), "/q/a.corrupt")
    lost_dates.record(root, mine)
    script = (
        "import sys; from resources import lost_dates as l\n"
        "l.record(sys.argv[1], l.LostDates('labels/version=v1', 'MSFT', '2024-11', None, '/q/b.corrupt'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(root)], check=True, cwd=Path(__file__).resolve().parents[1])
    (lost_dates.journal_dir(root) / "00000000000000000000-x-y.json").write_text("{not json")
    assert [lost.symbol for lost in lost_dates.pending(root)] == ["AAPL", "MSFT"]
    taken = lost_dates.take(root, mine_only=True)
    assert taken == [mine]  # the other process's record stays
    second = lost_dates.take(root)
    assert [lost.symbol for lost in second] == ["MSFT"] and mine in lost_dates.pending(root)  # AAPL's is claimed: not taken twice, still pending for the gate
    lost_dates.release(second)  # a taker that failed puts it back
    others = lost_dates.take(root, ["labels/version=v1"])
    assert len(others) == 1 and others[0].dates is None and others[0].symbol == "MSFT"
    lost_dates.settle([*taken, *others])
    assert lost_dates.take(root) == [] and lost_dates.pending(root) == []
    assert len(list(lost_dates.journal_dir(root).glob("*.bad"))) == 1


def test_takers_racing_over_garbled_journal_records_never_crash_and_the_audit_lists_them(tmp_path):
    import multiprocessing

    from resources import lost_dates

    root = tmp_path / "lake"
    lost_dates.journal_dir(root).mkdir(parents=True)
    for i in range(200):
        (lost_dates.journal_dir(root) / f"{i:020d}-p-x.json").write_text("{garbled")
    workers = [multiprocessing.get_context("fork").Process(target=lost_dates.take, args=(str(root),)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert len(lost_dates.unreadable(root)) == 200 and lost_dates.pending(root) == []


def test_a_taker_killed_before_it_settled_leaves_the_record_for_the_next_one(tmp_path):
    """SIGKILL between taking a record and settling it (mid re-computation): the claim of the dead
    process goes back to the journal at the next look, so the loss is re-computed by the next run."""
    import datetime as dt
    import multiprocessing
    import os
    import signal

    from resources import lost_dates

    root = tmp_path / "lake"
    lost = lost_dates.LostDates("curated_bars", "AAPL", "2024-11", frozenset({dt.date(2024, 11, 18)}), "/q/a.corrupt")
    lost_dates.record(root, lost)

    def take_then_die():
        assert lost_dates.take(root) == [lost]
        os.kill(os.getpid(), signal.SIGKILL)

    child = multiprocessing.get_context("fork").Process(target=take_then_die)
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert lost_dates.take(root) == [lost]  # back, taken by this process now
    lost_dates.release([lost])
    with pytest.raises(RuntimeError):
        with lost_dates.taking(root) as taken:  # a taker's block that raises puts the record back
            assert taken == [lost]
            raise RuntimeError("re-computation failed")
    with lost_dates.taking(root) as taken:
        assert taken == [lost]
    assert not list(lost_dates.journal_dir(root).iterdir())  # settled as the block ended
