"""Symbol universe metadata, the bars manifests and the coverage views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_api.coverage import coverage_stats, coverage_summary, get_coverage
from platform_assets.calendars import CRYPTO
from platform_assets.universe import (
    UnknownSymbolError,
    add_default_universe,
    add_symbols,
    asset_types,
    default_universe,
    remove_symbol,
    tracked_symbols,
    universe_table,
)
from resources.manifests import (
    COVERAGE_MANIFEST,
    DOWNLOAD_MANIFEST,
    ManifestError,
    build_coverage,
    coverage_path,
    manifest_dir,
    read_coverage,
    read_download_manifest,
)


def test_universe_types_metadata_and_removal_keeps_data(platform):
    instance = platform.instance
    assert add_symbols(instance, ["AAPL", "BTC-USD"]) == ["AAPL", "BTC-USD"]
    add_symbols(instance, ["COIN"], asset_type="stock")
    add_symbols(instance, ["XBTUSD"], asset_type="crypto")  # no -USD suffix: typed explicitly
    assert asset_types(instance) == {"AAPL": "stock", "BTC-USD": "crypto", "COIN": "stock", "XBTUSD": "crypto"}
    assert tracked_symbols(instance, CRYPTO) == ["BTC-USD", "XBTUSD"]
    report = run_backfill(instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-03"), defs=platform.defs)
    assert report.success
    files_before = sorted((platform.settings.base_path / "lake").rglob("*.parquet"))
    remove_symbol(instance, "AAPL")
    assert "AAPL" not in tracked_symbols(instance)
    assert sorted((platform.settings.base_path / "lake").rglob("*.parquet")) == files_before  # nothing deleted
    removed = universe_table(instance, include_removed=True).set_index("symbol").loc["AAPL"]
    assert removed["removed_at"] and not removed["tracked"]
    with pytest.raises(UnknownSymbolError):
        remove_symbol(instance, "AAPL")
    add_symbols(instance, ["AAPL"])  # re-adding tracks it again
    assert universe_table(instance).set_index("symbol").loc["AAPL", "removed_at"] is None


def test_default_universe_file(platform):
    universe = default_universe()
    assert universe["stock"] and all(not s.endswith("-USD") for s in universe["stock"])
    assert universe["crypto"] and all(s.endswith("-USD") for s in universe["crypto"])
    added = add_default_universe(platform.instance)
    assert set(added) == set(universe["stock"]) | set(universe["crypto"])


def test_manifests_follow_every_raw_write_and_coverage_is_derived(platform):
    add_symbols(platform.instance, ["AAPL", "BTC-USD"])
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-04"), defs=platform.defs).success
    assert run_backfill(platform.instance, plan_backfill(["BTC-USD"], "2024-12-06", "2024-12-08", market=CRYPTO), defs=platform.defs).success
    folder = manifest_dir(platform.settings.base_path)
    records = read_download_manifest(folder / DOWNLOAD_MANIFEST)
    assert [(r["symbol"], r["time_start"][:10]) for r in records] == [
        ("AAPL", "2024-12-02"), ("AAPL", "2024-12-03"), ("AAPL", "2024-12-04"),
        ("BTC-USD", "2024-12-06"), ("BTC-USD", "2024-12-07"), ("BTC-USD", "2024-12-08"),
    ]
    first = records[0]
    assert first["schema_version"] == "bars_manifest.v1" and first["vendor"] == "sim" and first["bar_size"] == "1 min"
    assert Path(first["path"]).is_absolute() and Path(first["path"]).exists() and first["rows"] > 300 and "close" in first["columns"]
    coverage = read_coverage(coverage_path(platform.settings.base_path))
    entries = {e["symbol"]: e for e in coverage["entries"]}
    assert entries["AAPL"]["total"] == {"date_start": "2024-12-02", "date_end": "2024-12-04"} and len(entries["AAPL"]["days"]) == 3
    assert {d["date"]: d for d in entries["BTC-USD"]["days"]}["2024-12-07"]["rows"] > 1300  # a weekend day: crypto trades
    # re-running writes no new batch, so the log does not grow
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-04"), defs=platform.defs).success
    assert len(read_download_manifest(folder / DOWNLOAD_MANIFEST)) == len(records)


def test_manifest_versions_are_checked_and_a_torn_last_line_is_tolerated(tmp_path):
    good = {"schema_version": "bars_manifest.v1", "written_at": "2024-12-02T22:00:00+00:00", "vendor": "sim", "file_format": "parquet",
            "symbol": "AAPL", "bar_size": "1m", "path": "p", "filename": "f", "rows": 390, "columns": ["ts"],
            "time_start": "2024-12-02T14:30:00+00:00", "time_end": "2024-12-02T20:59:00+00:00"}
    path = tmp_path / DOWNLOAD_MANIFEST
    path.write_text(json.dumps(good) + "\n" + '{"schema_version": "bars_manifest.v1", "symb')
    assert len(read_download_manifest(path)) == 1  # a crash mid-append loses no earlier record
    path.write_text(json.dumps({**good, "schema_version": "bars_manifest.v9"}) + "\n")
    with pytest.raises(ManifestError, match=r":1: unknown schema_version 'bars_manifest.v9'"):
        read_download_manifest(path)
    coverage = tmp_path / COVERAGE_MANIFEST
    coverage.write_text(json.dumps({**build_coverage([good]), "schema_version": "bars_coverage.v0"}))
    with pytest.raises(ManifestError, match="bars_coverage.v0"):
        read_coverage(coverage)
    better = {**good, "rows": 391, "path": "q"}
    assert build_coverage([good, better])["entries"][0]["days"][0]["path"] == "q"  # the fuller file wins


def test_coverage_views_and_stats(platform):
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-04"), defs=platform.defs).success
    assert run_backfill(platform.instance, plan_backfill(["MSFT"], "2024-12-03", "2024-12-03"), defs=platform.defs).success
    rows = {r["symbol"]: r for r in get_coverage(settings=platform.settings)}
    aapl = rows["AAPL"]["layers"]
    assert aapl["raw"] == {"earliest": "2024-12-02", "latest": "2024-12-04", "file_count": 3, "total_rows": aapl["raw"]["total_rows"]}
    assert aapl["curated"]["total_rows"] == 3 * 390
    # bar_features v1 and v2, l2_features v1 and v2: one month file each for the run's 3 dates
    assert aapl["features"]["file_count"] == 4 and aapl["features"]["total_rows"] == 4 * 3 * 390
    stats = {r["symbol"]: r["layers"] for r in coverage_stats("2024-12-02", "2024-12-07", settings=platform.settings)}  # [start, end)
    assert stats["AAPL"]["curated"]["status"] == "partial" and stats["AAPL"]["curated"]["missing_days"] == ["2024-12-05", "2024-12-06"]
    full = {r["symbol"]: r["layers"] for r in coverage_stats("2024-12-02", "2024-12-05", ["AAPL", "MSFT", "NVDA"], settings=platform.settings)}
    assert full["AAPL"]["curated"]["status"] == "full" and full["MSFT"]["curated"]["status"] == "partial" and full["NVDA"]["raw"]["status"] == "none"
    assert coverage_summary(list(map(lambda s: {"layers": full[s]}, full)))["curated"] == {"full": 1, "partial": 1, "none": 1}


def test_mdp_symbols_list_into_a_closed_pipe_stops_quietly(tmp_path):
    """``mdp symbols list | head -1``: the reader leaves early; the command stops without a
    BrokenPipeError traceback, with the status a shell gives a program stopped by SIGPIPE."""
    import fcntl
    import os
    import subprocess
    import sys

    F_SETPIPE_SZ = 1031  # Linux fcntl
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    repo = Path(__file__).resolve().parent.parent
    cli = [sys.executable, "-m", "platform_api.cli"]
    assert subprocess.run([*cli, "symbols", "add", "--defaults"], cwd=repo, env=env, capture_output=True, timeout=180).returncode == 0
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # smaller than the listing (~520 lines): the writer meets the closed pipe
    listing = subprocess.Popen([*cli, "symbols", "list"], cwd=repo, env=env, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.readline().strip()
    # the reader is gone (head -1)
    _, errors = listing.communicate(timeout=180)
    assert b"BrokenPipeError" not in errors and b"Traceback" not in errors, errors.decode()[-2000:]
    assert listing.returncode == 141
