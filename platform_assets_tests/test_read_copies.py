"""Read copies of closed feature months: same training rows as Parquet, never stale, crash-safe."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from definitions import build_definitions
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.retrieval import get_features_for_training
from platform_assets.automation.compaction import refresh_read_copies
from resources.lake import ParquetLake, feature_table, symbol_layout
from resources.read_copy import READ_COPY_FILE, build_read_copy, usable_read_copy
from resources.settings import load_settings

SYMBOLS = ["AAPL", "MSFT"]
TABLE = feature_table("bar_features", "v1")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory):
    """November (closed) and two December sessions of two symbols, written the batched way."""
    root = tmp_path_factory.mktemp("read_copies")
    settings = load_settings(DATA_PATH_OVERRIDE=str(root / "data"), LAKE_FSYNC="false")
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        report = run_backfill(instance, plan_backfill(SYMBOLS, "2024-11-25", "2024-12-03"), defs=build_definitions(settings), add_missing_symbols=True)
        assert report.success
    return root / "data"


@pytest.fixture
def lake_copy(built_lake, tmp_path):
    """A private copy of the built lake (tests here rewrite and break files)."""
    data = tmp_path / "data"
    shutil.copytree(built_lake, data)
    settings = load_settings(DATA_PATH_OVERRIDE=str(data), LAKE_FSYNC="false")
    return settings, ParquetLake(base_path=str(data), fsync=False)


def _pull(settings, group="bar_features", version="v1", symbols=SYMBOLS, start="2024-11-25", end="2024-12-04"):
    return get_features_for_training([group], version, symbols, start, end, settings=settings)


def _same(a, b):
    pd.testing.assert_frame_equal(a.features, b.features)
    assert a.metadata["coverage"] == b.metadata["coverage"] and a.metadata["rows"] == b.metadata["rows"]


def test_training_pulls_from_read_copies_equal_the_parquet_answer(lake_copy):
    settings, lake = lake_copy
    ranges = [("2024-11-25", "2024-12-04"), ("2024-11-26T15:00:00Z", "2024-11-27T16:30:00Z"), ("2024-12-02", "2024-12-04"), ("2024-11-01", "2024-11-27")]
    before = {(v, r): _pull(settings, version=v, start=r[0], end=r[1]) for v in ("v1", "v2") for r in ranges}
    built = refresh_read_copies(lake, "2024-12")
    assert built == {str(feature_table(g, v)): 2 for g in ("bar_features", "l2_features") for v in ("v1", "v2")} | {"labels/version=v1": 2}
    assert (lake.symbol_dir(TABLE, "AAPL") / READ_COPY_FILE).exists()
    for (version, (start, end)), parquet in before.items():
        copied = _pull(settings, version=version, start=start, end=end)
        _same(parquet, copied)
    full = _pull(settings)
    assert full.metadata["files_read"] == 4  # one read copy (November) + one December month file per symbol
    assert list(full.features["symbol"].unique()) == SYMBOLS and full.features.groupby("symbol")["ts"].is_monotonic_increasing.all()
    assert refresh_read_copies(lake, "2024-12") == {}  # up to date: nothing rewritten


def test_a_rewritten_month_retires_its_copy_until_the_next_build(lake_copy):
    """A rewrite of one November date (a re-run, a repair) must show at once: the copy standing for
    the old month file is no longer used for that symbol; the other symbol keeps its copy."""
    settings, lake = lake_copy
    refresh_read_copies(lake, "2024-12")
    day = dt.date(2024, 11, 26)
    changed = lake.read(TABLE, ["AAPL"], [day])
    changed["ret_1"] = 42.0
    lake.write_partition(TABLE, "AAPL", day, changed)
    assert usable_read_copy(lake.symbol_dir(TABLE, "AAPL"), symbol_layout(lake.symbol_dir(TABLE, "AAPL"))) is None
    assert usable_read_copy(lake.symbol_dir(TABLE, "MSFT"), symbol_layout(lake.symbol_dir(TABLE, "MSFT"))) is not None
    pulled = _pull(settings).features
    rows = pulled[(pulled["symbol"] == "AAPL") & (pulled["ts"].dt.date == day)]
    assert len(rows) == 390 and (rows["ret_1"] == 42.0).all()
    assert build_read_copy(lake, TABLE, "AAPL", "2024-12") == 4 * 390 - 180  # 11-29 is a half day
    _same(_pull(settings), _pull(settings))
    assert (_pull(settings).features.loc[lambda f: (f["symbol"] == "AAPL") & (f["ts"].dt.date == day), "ret_1"] == 42.0).all()


def test_a_stored_file_inside_the_copy_range_retires_it(lake_copy):
    """Rows from a copy followed by other files must stay in time order: a day file holding a date
    inside the copy's range (e.g. a late backfill of a missing session) makes the copy unusable."""
    settings, lake = lake_copy
    build_read_copy(lake, TABLE, "AAPL", "2024-12")
    folder = lake.symbol_dir(TABLE, "AAPL")
    layout = symbol_layout(folder)
    assert usable_read_copy(folder, layout) is not None
    layout[dt.date(2024, 11, 28)] = folder / "date=2024-11-28" / "part.parquet"
    assert usable_read_copy(folder, layout) is None
    later = dict(symbol_layout(folder))
    later[dt.date(2024, 12, 5)] = folder / "date=2024-12-05" / "part.parquet"
    assert usable_read_copy(folder, later) is not None  # after the range: fine


def test_a_corrupt_or_deleted_copy_falls_back_to_parquet(lake_copy):
    settings, lake = lake_copy
    parquet = _pull(settings)
    refresh_read_copies(lake, "2024-12")
    path = lake.symbol_dir(TABLE, "AAPL") / READ_COPY_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    _same(parquet, _pull(settings))
    assert refresh_read_copies(lake, "2024-12") == {str(TABLE): 1}  # rebuilt
    (lake.symbol_dir(TABLE, "MSFT") / READ_COPY_FILE).unlink()
    _same(parquet, _pull(settings))


def test_sigkill_while_building_a_copy_leaves_the_old_copy_and_the_answers(lake_copy):
    """A builder killed mid-write leaves at most a temp file: the old copy still valid, answers equal."""
    settings, lake = lake_copy
    refresh_read_copies(lake, "2024-12")
    parquet = _pull(settings)
    old = (lake.symbol_dir(TABLE, "AAPL") / READ_COPY_FILE).read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import pyarrow as pa
        from resources import read_copy
        from resources.lake import ParquetLake, feature_table
        lake = ParquetLake(base_path={str(settings.base_path)!r}, fsync=False)
        class Dying:
            def __init__(self, sink, schema):
                self.sink = sink
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return False
            def write_table(self, table, max_chunksize=None):
                self.sink.write(b"ARROW1" + b"x" * 4096)
                self.sink.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        read_copy.pa.ipc.new_file = Dying
        read_copy.build_read_copy(lake, feature_table("bar_features", "v1"), "AAPL", "9999-12")
        """
    )
    process = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120)
    assert process.returncode == -signal.SIGKILL
    folder = lake.symbol_dir(TABLE, "AAPL")
    assert (folder / READ_COPY_FILE).read_bytes() == old
    assert [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]  # the dead writer's temp file
    _same(parquet, _pull(settings))
    assert build_read_copy(lake, TABLE, "AAPL", "9999-12") == 4 * 390 - 180 + 2 * 390  # November and December
    _same(parquet, _pull(settings))


def test_compaction_job_builds_read_copies(tmp_path, built_lake):
    data = tmp_path / "data"
    shutil.copytree(built_lake, data)
    settings = load_settings(DATA_PATH_OVERRIDE=str(data), LAKE_FSYNC="false")
    defs = build_definitions(settings)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = defs.resolve_job_def("compact_lake_job").execute_in_process(
            instance=instance, run_config={"ops": {"compact_lake_op": {"config": {"before_month": "2024-12"}}}}
        )
        messages = [record.user_message for record in instance.all_logs(result.run_id)]
    assert result.success
    lake = ParquetLake(base_path=str(data), fsync=False)
    assert all((lake.symbol_dir(TABLE, s) / READ_COPY_FILE).exists() for s in SYMBOLS)
    assert any("read copies of 2 symbols rebuilt" in m for m in messages)
    assert os.path.getsize(lake.symbol_dir(TABLE, "AAPL") / READ_COPY_FILE) > 0


def test_group_rows_sorts_a_symbol_whose_files_come_out_of_time_order(lake_copy):
    """The order guard: files listed newest first still give rows in (symbol, ts) order."""
    from platform_api.group_rows import group_rows
    from platform_api.lake_reader import LakeReader, SymbolSources

    settings, lake = lake_copy
    reader = LakeReader(settings)
    days = [dt.date(2024, 11, 25) + dt.timedelta(days=i) for i in range(10)]
    sources = reader.sources(TABLE, SYMBOLS, days)
    picked = [("ret_1", "ret_1")]
    start, end = pd.Timestamp("2024-11-25", tz="UTC"), pd.Timestamp("2024-12-04", tz="UTC")
    forward = group_rows(reader, sources, picked, start, end).frame()
    backward = group_rows(reader, {s: SymbolSources(src.all_files[::-1], None) for s, src in sources.items()}, picked, start, end).frame()
    assert len(sources["AAPL"].all_files) == 2  # November and December month files
    pd.testing.assert_frame_equal(forward, backward)
    assert forward.groupby("symbol")["ts"].is_monotonic_increasing.all() and list(forward["symbol"].unique()) == SYMBOLS
    reader.release()


def test_a_copy_without_session_runs_in_its_footer_gives_the_same_coverage(lake_copy, monkeypatch):
    """Copies whose footer has no session runs (dates out of order, or written before the runs were
    recorded) still answer the same rows and coverage: sessions are then computed from the rows."""
    from resources import read_copy

    settings, lake = lake_copy
    parquet = _pull(settings, start="2024-11-26T15:00:00Z", end="2024-12-03T15:00:00Z")
    monkeypatch.setattr(read_copy, "_session_runs", lambda rows: None)
    build_read_copy(lake, TABLE, "AAPL", "2024-12")
    monkeypatch.undo()
    build_read_copy(lake, TABLE, "MSFT", "2024-12")
    aapl = usable_read_copy(lake.symbol_dir(TABLE, "AAPL"), symbol_layout(lake.symbol_dir(TABLE, "AAPL")))
    msft = usable_read_copy(lake.symbol_dir(TABLE, "MSFT"), symbol_layout(lake.symbol_dir(TABLE, "MSFT")))
    assert aapl.session_runs is None and msft.session_runs is not None and len(msft.session_runs) == 4
    _same(parquet, _pull(settings, start="2024-11-26T15:00:00Z", end="2024-12-03T15:00:00Z"))


def test_read_copies_switched_off_are_ignored_and_removed(lake_copy):
    settings, lake = lake_copy
    refresh_read_copies(lake, "2024-12", enabled=True)
    on = _pull(settings)
    off_settings = load_settings(DATA_PATH_OVERRIDE=str(settings.base_path), LAKE_FSYNC="false", LAKE_READ_COPIES="false")
    off = _pull(off_settings)
    _same(on, off)
    from platform_api.lake_reader import LakeReader

    days = [dt.date(2024, 11, 25), dt.date(2024, 12, 2)]
    with_copies, without = LakeReader(settings).sources(TABLE, ["AAPL"], days), LakeReader(off_settings).sources(TABLE, ["AAPL"], days)
    assert with_copies["AAPL"].read_copy is not None and len(with_copies["AAPL"].files) == 1  # December month file
    assert without["AAPL"].read_copy is None and len(without["AAPL"].files) == 2  # November month file instead of the copy
    assert (lake.symbol_dir(TABLE, "AAPL") / READ_COPY_FILE).exists()
    assert refresh_read_copies(lake, "2024-12", enabled=False) == {}
    assert not list(lake.table_dir(TABLE).glob(f"symbol=*/{READ_COPY_FILE}"))
    _same(on, _pull(settings))


def test_coverage_reports_read_copies_as_the_guides_cache_layer(lake_copy):
    """The HTTP guide's ``cache`` layer: the read copies, their dates, files and rows; never part of
    a symbol's full/partial/none status; a stale copy (its month rewritten) is not reported."""
    from platform_api.coverage import coverage_report, get_coverage, symbol_coverage

    settings, lake = lake_copy
    before = {row["symbol"]: row["layers"] for row in get_coverage(settings=settings)}
    assert before["AAPL"]["cache"] == {"earliest": None, "latest": None, "file_count": 0, "total_rows": 0}
    rows = build_read_copy(lake, TABLE, "AAPL", "2024-12")
    cache = {row["symbol"]: row["layers"] for row in get_coverage(settings=settings)}["AAPL"]["cache"]
    assert cache == {"earliest": "2024-11-25", "latest": "2024-11-29", "file_count": 1, "total_rows": rows}
    single = symbol_coverage("AAPL", "stock", dt.date(2024, 11, 25), dt.date(2024, 12, 3), settings=settings)
    report = coverage_report({"AAPL": "stock", "MSFT": "stock"}, dt.date(2024, 11, 25), dt.date(2024, 12, 3), settings=settings)
    assert set(single["coverage"]) == set(report["stocks"]["MSFT"]) == {"raw", "processed", "cache", "features"}
    assert single["coverage"]["cache"] == cache and report["symbol_status"] == {"AAPL": "full", "MSFT": "full"}  # MSFT has no copy
    month = lake.symbol_dir(TABLE, "AAPL") / "month=2024-11" / "part.parquet"
    os.utime(month, ns=(month.stat().st_atime_ns, month.stat().st_mtime_ns + 1_000_000))  # the month changed since the copy
    assert {row["symbol"]: row["layers"] for row in get_coverage(settings=settings)}["AAPL"]["cache"]["file_count"] == 0
