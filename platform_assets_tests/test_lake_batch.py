"""Batched lake writes: one file per (table, symbol, month) per step, same data as per-date files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from resources import lake as lake_module
from resources.lake import CURATED_BARS, ParquetLake, Table, month_file_dates, symbol_layout
from resources.lake_batch import FlushError
from resources.settings import load_settings

NOV = [dt.date(2024, 11, d) for d in (25, 26, 27, 29)]
SYMBOLS = ["AAPL", "MSFT", "SPY"]
WALL_CLOCK_COLUMNS = ("evaluated_at", "ingestion_ts")  # when a run ran, not what it computed


def _bars(symbol: str, day: dt.date, n: int = 3) -> pd.DataFrame:
    ts = pd.date_range(pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(hours=15), periods=n, freq="min")
    return pd.DataFrame({"date": [day] * n, "symbol": [symbol] * n, "ts": ts, "close": [float(day.day)] * n})


def test_a_scope_writes_one_month_file_and_reads_its_own_writes(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with lake.batched_writes():
        for day in NOV:
            lake.write_partition(CURATED_BARS, "AAPL", day, _bars("AAPL", day))
        assert not lake.symbol_dir(CURATED_BARS, "AAPL").exists()  # nothing on disk yet
        assert all(lake.has_partition(CURATED_BARS, "AAPL", day) for day in NOV)  # read-your-writes
        lake.delete_partition(CURATED_BARS, "AAPL", NOV[-1])
        assert not lake.has_partition(CURATED_BARS, "AAPL", NOV[-1])
        lake.write_partition(CURATED_BARS, "MSFT", NOV[0], _bars("MSFT", NOV[0]))
        early = lake.read(CURATED_BARS, ["AAPL"], NOV[:1])  # a read flushes what it needs first
        assert len(early) == 3 and early["close"].tolist() == [25.0] * 3
    month = lake.month_file(CURATED_BARS, "AAPL", "2024-11")
    assert month.exists() and month_file_dates(month) == frozenset(NOV[:3])
    assert not list(lake.symbol_dir(CURATED_BARS, "AAPL").glob("date=*/part.parquet"))
    # a single new date of a month without a month file stays a day file
    assert (lake.partition_dir(CURATED_BARS, "MSFT", NOV[0]) / "part.parquet").exists()
    got = lake.read(CURATED_BARS, ["AAPL"], NOV)
    assert got.groupby("date").size().to_dict() == {d: 3 for d in NOV[:3]}


def test_a_later_scope_replaces_its_dates_in_the_month_file_and_keeps_the_others(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with lake.batched_writes():
        for day in NOV[:3]:
            lake.write_partition(CURATED_BARS, "AAPL", day, _bars("AAPL", day))
    lake.write_partition(CURATED_BARS, "AAPL", NOV[3], _bars("AAPL", NOV[3], n=2))  # a new date (daily run): a day file beside it
    assert (lake.partition_dir(CURATED_BARS, "AAPL", NOV[3]) / "part.parquet").exists()
    with lake.batched_writes():
        lake.write_partition(CURATED_BARS, "AAPL", NOV[1], _bars("AAPL", NOV[1], n=5).assign(close=-1.0))
    got = lake.read(CURATED_BARS, ["AAPL"], NOV)
    assert got.groupby("date").size().to_dict() == {NOV[0]: 3, NOV[1]: 5, NOV[2]: 3, NOV[3]: 2}
    assert set(got.loc[got["date"] == NOV[1], "close"]) == {-1.0}
    assert got["date"].is_monotonic_increasing  # rows stay in date order
    assert month_file_dates(lake.month_file(CURATED_BARS, "AAPL", "2024-11")) == frozenset(NOV[:3])
    with lake.batched_writes():  # a date the month file holds is replaced inside it, even alone
        lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _bars("AAPL", NOV[0], n=1))
    assert not (lake.partition_dir(CURATED_BARS, "AAPL", NOV[0]) / "part.parquet").exists()
    assert len(lake.read(CURATED_BARS, ["AAPL"], [NOV[0]])) == 1


def test_a_failed_write_names_its_partitions_and_loses_no_other(tmp_path, monkeypatch):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    real = lake_module.write_parquet_atomic

    def failing_for_msft(table, target, **kwargs):
        if "symbol=MSFT" in str(target):
            raise OSError("disk full")
        return real(table, target, **kwargs)

    monkeypatch.setattr(lake_module, "write_parquet_atomic", failing_for_msft)
    with pytest.raises(FlushError) as raised:
        with lake.batched_writes():
            for symbol in ("AAPL", "MSFT"):
                for day in NOV:
                    lake.write_partition(CURATED_BARS, symbol, day, _bars(symbol, day))
    assert set(raised.value.failures) == {(CURATED_BARS, "MSFT", day) for day in NOV}
    assert "disk full" in str(raised.value)
    assert all(lake.has_partition(CURATED_BARS, "AAPL", day) for day in NOV)
    assert not any(lake.has_partition(CURATED_BARS, "MSFT", day) for day in NOV)


def test_an_exception_in_the_scope_still_writes_what_was_done(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with pytest.raises(ZeroDivisionError):
        with lake.batched_writes():
            lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _bars("AAPL", NOV[0]))
            1 / 0
    assert lake.has_partition(CURATED_BARS, "AAPL", NOV[0])


def _derived_tables(lake: ParquetLake) -> list[Table]:
    """Every lake table holding per-(symbol, date) ``part.parquet`` files (derived, DQ, quarantine)."""
    folders = {p.parent.parent.parent for p in lake.root.rglob("part.parquet")}
    return [Table(str(folder.relative_to(lake.root))) for folder in sorted(folders) if "corrupt_files" not in str(folder)]


def _lake_contents(lake: ParquetLake) -> dict[str, pd.DataFrame]:
    out = {}
    for table in _derived_tables(lake):
        frame = lake.read(table)
        if frame.empty:
            continue
        keys = [c for c in ("symbol", "date", "ts", "metric", "rule") if c in frame.columns]
        drop = [c for c in frame.columns if c in WALL_CLOCK_COLUMNS]
        out[str(table)] = frame.drop(columns=drop).sort_values(keys, kind="stable").reset_index(drop=True)
    return out


def _file_count(root: Path) -> int:
    return sum(1 for _ in (root / "lake").rglob("*.parquet"))


@pytest.fixture
def two_platforms(tmp_path):
    import dagster as dg
    from definitions import build_definitions

    out = {}
    for batched in (False, True):
        settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / f"data-{batched}"), LAKE_FSYNC="false", LAKE_BATCH_WRITES=str(batched).lower())
        home = tmp_path / f"home-{batched}"
        home.mkdir()
        out[batched] = (settings, build_definitions(settings), home)
    with dg.instance_for_test(temp_dir=str(out[False][2])) as per_date, dg.instance_for_test(temp_dir=str(out[True][2])) as batched:
        yield {False: (*out[False][:2], per_date), True: (*out[True][:2], batched)}


def test_batched_run_stores_exactly_what_the_per_date_path_stores(two_platforms):
    """Equivalence: the whole offline graph, same seeded inputs, per-date files vs batched month files."""
    contents, files = {}, {}
    for batched, (settings, defs, instance) in two_platforms.items():
        report = run_backfill(instance, plan_backfill(SYMBOLS, "2024-11-25", "2024-12-03"), defs=defs, add_missing_symbols=True)
        assert report.success, [r.error for r in report.runs]
        lake = defs.resources["lake"]
        assert lake.batch_writes is batched
        messages = [e.user_message for run in report.runs for e in instance.all_logs(run.run_id)]
        assert not [m for m in messages if "batched pass failed" in m]  # no symbol fell back to per-date
        contents[batched], files[batched] = _lake_contents(lake), _file_count(settings.base_path)
    assert set(contents[True]) == set(contents[False]) and len(contents[True]) >= 10, sorted(contents[True])
    for table, frame in contents[False].items():
        pd.testing.assert_frame_equal(contents[True][table], frame, check_dtype=True, obj=table)
    assert files[True] < files[False] * 0.7, files
    lake = two_platforms[True][1].resources["lake"]
    held = month_file_dates(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))
    assert len(held) >= 2 and {d for d in symbol_layout(lake.symbol_dir(CURATED_BARS, "AAPL")) if d.month == 11} == set(NOV)


def test_a_month_file_keeps_when_each_date_was_written(tmp_path):
    """Rewriting one date of a month file must not make its other dates look freshly computed
    (the L2 sensor compares this with the snapshot file's time)."""
    import time

    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with lake.batched_writes():
        for day in NOV[:3]:
            lake.write_partition(CURATED_BARS, "AAPL", day, _bars("AAPL", day))
    first = {day: lake.written_ns(CURATED_BARS, "AAPL", day) for day in NOV[:3]}
    assert len(set(first.values())) == 1 and None not in first.values()
    time.sleep(0.01)
    with lake.batched_writes():
        lake.write_partition(CURATED_BARS, "AAPL", NOV[1], _bars("AAPL", NOV[1], n=4))
    assert lake.written_ns(CURATED_BARS, "AAPL", NOV[1]) > first[NOV[1]]
    assert lake.written_ns(CURATED_BARS, "AAPL", NOV[0]) == first[NOV[0]] and lake.written_ns(CURATED_BARS, "AAPL", NOV[2]) == first[NOV[2]]
    lake.delete_partition(CURATED_BARS, "AAPL", NOV[2])
    assert lake.written_ns(CURATED_BARS, "AAPL", NOV[0]) == first[NOV[0]] and lake.written_ns(CURATED_BARS, "AAPL", NOV[2]) is None
    lake.write_partition(CURATED_BARS, "AAPL", NOV[3], _bars("AAPL", NOV[3]))  # a day file: its own mtime
    day_file = lake.partition_dir(CURATED_BARS, "AAPL", NOV[3]) / "part.parquet"
    day_written = day_file.stat().st_mtime_ns
    assert lake.written_ns(CURATED_BARS, "AAPL", NOV[3]) == day_written
    assert lake.compact_month(CURATED_BARS, "AAPL", "2024-11") == 1  # compaction keeps the day file's time
    assert not day_file.exists() and lake.written_ns(CURATED_BARS, "AAPL", NOV[3]) == day_written
    assert lake.written_ns(CURATED_BARS, "AAPL", NOV[0]) == first[NOV[0]]


def test_replacing_a_date_of_a_month_file_keeps_its_rows_in_date_order(tmp_path):
    """One writer for both paths: a date replaced outside a batched scope is merged into the month
    file in date order (bulk reads stream month files in order, without a sort), a corrupt month
    file is quarantined and the date written as a day file."""
    import pyarrow.parquet as pq

    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    with lake.batched_writes():
        for day in NOV[:3]:
            lake.write_partition(CURATED_BARS, "AAPL", day, _bars("AAPL", day))
    month = lake.month_file(CURATED_BARS, "AAPL", "2024-11")
    lake.write_partition(CURATED_BARS, "AAPL", NOV[1], _bars("AAPL", NOV[1]).assign(close=99.0))
    stored = pq.read_table(month).to_pandas()
    assert stored["date"].tolist() == [d for d in NOV[:3] for _ in range(3)]  # in date order, the middle one replaced
    assert stored.loc[stored["date"] == NOV[1], "close"].tolist() == [99.0] * 3 and month_file_dates(month) == frozenset(NOV[:3])
    month.write_bytes(b"not parquet")
    written = lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _bars("AAPL", NOV[0]))
    assert written == lake.partition_dir(CURATED_BARS, "AAPL", NOV[0]) / "part.parquet" and not month.exists()
    assert lake.read(CURATED_BARS, ["AAPL"], NOV)["date"].tolist() == [NOV[0]] * 3
