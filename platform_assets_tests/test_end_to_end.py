"""The whole graph on a temporary Dagster instance: lake contents, idempotency, loading, bad input."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_assets.calendars import STOCKS, session_minutes
from platform_assets.partitions import SYMBOLS_TAG
from resources.validation import InvalidDateRangeError, InvalidSymbolError

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["AAPL", "MSFT", "SPY"]
START, END = "2024-11-26", "2024-12-02"  # Thanksgiving (11-28) is skipped, 11-29 is a half day
DATES = [dt.date(2024, 11, 26), dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 12, 2)]


def _lake_snapshot(base: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(base)): (p.stat().st_size, p.stat().st_mtime) for p in base.rglob("*") if p.is_file()}


def _rows(lake, table) -> int:
    return len(lake.read(table))


def test_ranged_backfill_end_to_end_and_idempotent(platform):
    plan = plan_backfill(SYMBOLS, START, END)
    assert plan.dates == DATES and len(plan.chunks) == 1
    report = run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True)
    assert report.success, [r.error for r in report.runs]
    assert len(report.runs) == 1  # one run for the whole range
    run = platform.instance.get_run_by_id(report.runs[0].run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert report.runs[0].materializations == {k: 4 for k in report.runs[0].materializations} and len(report.runs[0].materializations) == 7

    lake = platform.resources["lake"]
    from resources.lake import ALIGNED_BARS, CURATED_BARS, feature_table, labels_table, raw_bars_table

    minutes = sum(len(session_minutes(STOCKS, d)) for d in DATES)
    assert minutes == 390 * 3 + 210
    curated = lake.read(CURATED_BARS)
    assert len(curated) == minutes * len(SYMBOLS)
    assert not curated.duplicated(["symbol", "ts"]).any()
    assert set(curated["source"]) == {"sim"}
    assert set(curated["dq_status"]) <= {"ok", "imputed", "missing"} and curated["is_imputed"].any()
    for table in (ALIGNED_BARS, feature_table("bar_features", "v1"), feature_table("l2_features", "v1"), labels_table("v1")):
        assert _rows(lake, table) == minutes * len(SYMBOLS), table
    raw_files = sorted((lake.root / "raw_bars").rglob("batch-*.parquet"))
    assert len(raw_files) == len(SYMBOLS) * len(DATES)
    raw = pq.read_table(raw_files[0]).to_pandas()
    assert {"source", "symbol", "ts", "batch_id", "ingestion_ts"} <= set(raw.columns) and set(raw["source"]) == {"sim"}
    l2_files = sorted(Path(platform.settings.level2_path).rglob("*_snapshots_*.parquet"))
    assert len(l2_files) == len(SYMBOLS) * len(DATES)
    assert l2_files[0].name in {f"{d}_snapshots_093000.parquet" for d in DATES}

    before = _lake_snapshot(platform.settings.base_path)
    curated_before = curated.sort_values(["symbol", "ts"]).reset_index(drop=True)
    again = run_backfill(platform.instance, plan, defs=platform.defs)
    assert again.success
    after = _lake_snapshot(platform.settings.base_path)
    assert set(after) == set(before)  # no new files: raw batches are not re-appended
    assert all(after[p] == before[p] for p in before if p.startswith("lake/raw_bars/"))  # raw untouched
    curated_after = lake.read(CURATED_BARS).sort_values(["symbol", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(curated_before, curated_after)


def test_symbol_subset_runs_only_those_symbols_and_loads_through_the_io_manager(platform):
    from platform_assets.universe import add_symbols

    add_symbols(platform.instance, ["AAPL", "MSFT", "NVDA"])
    plan = plan_backfill(["NVDA"], "2024-12-02", "2024-12-03")
    report = run_backfill(platform.instance, plan, defs=platform.defs)
    assert report.success
    run = platform.instance.get_run_by_id(report.runs[0].run_id)
    assert run.tags[SYMBOLS_TAG] == "NVDA"
    with dg.instance_for_test(temp_dir=str(platform.home)) as _:
        pass
    curated = platform.defs.load_asset_value("curated_bars", partition_key="2024-12-02", instance=platform.instance)
    assert set(curated["symbol"]) == {"NVDA"} and len(curated) == 390
    features = platform.defs.load_asset_value("bar_features", partition_key="2024-12-03", instance=platform.instance)
    assert set(features["feature_version"]) == {"v2"} and len(features) == 390  # versioned tables load their newest version by default
    raw = platform.defs.load_asset_value("raw_bars_sim", partition_key="2024-12-02", instance=platform.instance)
    assert set(raw["symbol"]) == {"NVDA"}
    book = platform.defs.load_asset_value("l2_snapshots_sim", partition_key="2024-12-02", instance=platform.instance)
    assert len(book) > 0 and book["bid_prices"].map(len).eq(10).all()


def test_unknown_symbols_fail_unless_added(platform):
    plan = plan_backfill(["AAPL"], "2024-12-02", "2024-12-02")
    from platform_assets.universe import UnknownSymbolError

    with pytest.raises(UnknownSymbolError, match="AAPL"):
        run_backfill(platform.instance, plan, defs=platform.defs)


@pytest.mark.parametrize(
    ("symbols", "start", "end", "error"),
    [
        (["../x"], "2024-12-02", "2024-12-03", InvalidSymbolError),
        (["AAPL;DROP"], "2024-12-02", "2024-12-03", InvalidSymbolError),
        (["AAPL"], "2024-12-05", "2024-12-02", InvalidDateRangeError),
        (["AAPL"], "2024-12-25", "2024-12-25", InvalidDateRangeError),
        (["AAPL"], "2024-12-28", "2024-12-29", InvalidDateRangeError),
        (["AAPL"], "1999-01-04", "1999-01-05", InvalidDateRangeError),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(symbols, start, end, error):
    with pytest.raises(error):
        plan_backfill(symbols, start, end)


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "platform_api.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_main_job_and_bad_input_leave_data_untouched(tmp_path):
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"), "LAKE_FSYNC": "false"}
    ok = _cli(["backfill", "--symbols", "AAPL,MSFT", "--start", "2024-12-02", "--end", "2024-12-05"], env)
    assert ok.returncode == 0, ok.stderr
    assert "curated_bars" in ok.stdout and "2 symbols x 3 trading days" in ok.stdout
    assert "DQ status" in ok.stdout and "gap minutes" in ok.stdout
    before = _lake_snapshot(tmp_path / "data")
    for args in (
        ["--symbols", "../x", "--start", "2024-12-02", "--end", "2024-12-03"],
        ["--symbols", "AAPL;DROP", "--start", "2024-12-02", "--end", "2024-12-03"],
        ["--symbols", "AAPL", "--start", "2024-12-04", "--end", "2024-12-02"],
        ["--symbols", "AAPL", "--start", "2024-12-25", "--end", "2024-12-25"],
    ):
        bad = _cli(["backfill", *args], env)
        assert bad.returncode == 2
        assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert _lake_snapshot(tmp_path / "data") == before

    # a damaged file of another symbol never turns a complete backfill into a crash in its summary
    other = next((tmp_path / "data" / "lake" / "raw_bars" / "source=sim" / "symbol=MSFT").rglob("batch-*.parquet"))
    other.write_bytes(b"garbage" * 50)
    again = _cli(["backfill", "--symbols", "AAPL", "--start", "2024-12-02", "--end", "2024-12-05"], env)
    assert again.returncode == 0, again.stderr
    assert "Summary (succeeded" in again.stdout and "unavailable" in again.stdout and "Traceback" not in again.stderr


def test_dagster_definitions_validate(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
