"""The TF_1 alignment guide (004) as written: file shapes and locations, env keys, torn tails, CLI listing."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from databento_gateway import DatabentoGateway  # noqa: E402
from dbn_builder import SimVendor  # noqa: E402
from tws_server import FakeTws  # noqa: E402

from platform_api.backfill import plan_backfill, run_backfill  # noqa: E402
from platform_assets.ingestion.l2_backfill import MANIFEST_FILE, SUMMARY_FILE, OrderedManifest, read_l2_manifest  # noqa: E402
from platform_assets.universe import add_symbols  # noqa: E402
from resources.bars_manifest import BarsManifest  # noqa: E402
from resources.manifests import (  # noqa: E402
    MANIFEST_FIELDS,
    TORN_SUFFIX,
    ManifestError,
    coverage_path,
    download_manifest_path,
    read_coverage,
    read_download_manifest,
)
from resources.settings import REPO_ROOT, SettingsError, load_settings  # noqa: E402

KEY = "db-TESTKEY0123456789abcdefghijk"


@pytest.fixture
def vendor():
    return SimVendor()


@pytest.fixture
def gateway(tmp_path, vendor, monkeypatch):
    gw = DatabentoGateway(provider=vendor, keys={KEY}, folder=tmp_path, stall_seconds=3)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gw.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    yield gw
    gw.close()


# ------------------------------------------------------------------------------ bars manifests
def test_bars_manifests_have_the_guides_exact_shape_and_location(platform):
    add_symbols(platform.instance, ["AAPL"])
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-03"), defs=platform.defs).success
    base = platform.settings.base_path
    lines = [json.loads(line) for line in download_manifest_path(base).read_text().splitlines()]
    assert len(lines) == 2 and all(set(line) == set(MANIFEST_FIELDS) for line in lines)  # every field, nothing else
    first = lines[0]
    assert first["schema_version"] == "bars_manifest.v1" and first["bar_size"] == "1 min" and first["vendor"] == "sim"
    assert first["file_format"] == "parquet" and Path(first["path"]).is_absolute() and Path(first["path"]).name == first["filename"]
    assert pq.read_metadata(first["path"]).num_rows == first["rows"] and first["columns"] == pq.read_schema(first["path"]).names
    pd.Timestamp(first["written_at"]), pd.Timestamp(first["time_start"]), pd.Timestamp(first["time_end"])  # ISO 8601

    document = json.loads((base / "bars_coverage_manifest.json").read_text())  # ${base}/bars_coverage_manifest.json
    assert coverage_path(base) == base / "bars_coverage_manifest.json"
    assert set(document) == {"schema_version", "generated_at", "entries"} and document["schema_version"] == "bars_coverage.v1"
    (entry,) = document["entries"]
    assert set(entry) == {"symbol", "bar_size", "total", "days"}
    assert entry["symbol"] == "AAPL" and entry["bar_size"] == "1 min"
    assert entry["total"] == {"date_start": "2024-12-02", "date_end": "2024-12-03"}
    assert [set(day) for day in entry["days"]] == [{"date", "time_start", "time_end", "path", "filename", "rows"}] * 2
    assert [day["date"] for day in entry["days"]] == ["2024-12-02", "2024-12-03"]
    assert all(Path(day["path"]).exists() and day["rows"] > 300 for day in entry["days"])


def test_unknown_schema_versions_are_rejected(tmp_path):
    (tmp_path / "manifests").mkdir()
    log = tmp_path / "manifests" / "bars_download_manifest.jsonl"
    log.write_text(json.dumps({"schema_version": "bars_manifest.v2"}) + "\n")
    with pytest.raises(ManifestError, match=r":1: unknown schema_version 'bars_manifest.v2'"):
        read_download_manifest(log)
    coverage = tmp_path / "bars_coverage_manifest.json"
    coverage.write_text(json.dumps({"schema_version": "bars_coverage.v2", "generated_at": "x", "entries": []}))
    with pytest.raises(ManifestError, match="bars_coverage.v2"):
        read_coverage(coverage)


def test_coverage_paths_and_days_read_the_same_on_the_fast_paths_as_parsed(tmp_path):
    """The coverage rebuild skips parsing for clean absolute paths and UTC stamps (it reads every
    record ever logged): other spellings still come out as ``Path`` / ``pd.Timestamp`` give them."""
    from resources.manifests import BARS_MANIFEST_VERSION, build_coverage

    base = tmp_path / "data"
    (base / "manifests").mkdir(parents=True)
    log = download_manifest_path(base)
    paths = [str(base / "a" / "b.parquet"), str(base) + "//a/./c.parquet", "rel/d.parquet", str(base / "e") + "/"]
    stamps = ["2024-11-26T14:30:00+00:00", "2024-11-26T23:30:00-05:00", "2024-11-27T14:30:00Z", "2024-11-28T01:30:00+02:00"]
    lines = [{"schema_version": BARS_MANIFEST_VERSION, "written_at": "2026-11-27T00:00:00+00:00", "vendor": "sim", "file_format": "parquet",
              "symbol": "AAPL", "bar_size": "1m", "path": p, "filename": Path(p).name, "rows": 3, "columns": ["ts"],
              "time_start": t, "time_end": t} for p, t in zip(paths, stamps)]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = read_download_manifest(log)
    assert [r["path"] for r in records] == [str(base / "a" / "b.parquet"), str(base / "a" / "c.parquet"), str((base / "rel" / "d.parquet").absolute()), str(base / "e")]
    assert all(r["bar_size"] == "1 min" for r in records)
    days = [d["date"] for d in build_coverage(records)["entries"][0]["days"]]
    assert days == ["2024-11-26", "2024-11-27"] and sorted({pd.Timestamp(t).tz_convert("UTC").date().isoformat() for t in stamps}) == days


def _frame(day: str) -> pd.DataFrame:
    ts = pd.date_range(f"{day} 14:30", periods=3, freq="1min", tz="UTC")
    return pd.DataFrame({"symbol": "AAPL", "ts": ts, "close": [1.0, 2.0, 3.0]})


def test_a_torn_tail_is_tolerated_then_healed_by_the_next_append_and_everything_is_mirrored(tmp_path):
    base, backup = tmp_path / "data", tmp_path / "backup"
    manifest = BarsManifest(base_path=str(base), fsync=False, backup_path=str(backup))
    files = []
    for day in ("2024-12-02", "2024-12-03"):
        path = base / "lake" / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        _frame(day).to_parquet(path)
        files.append(path)
    manifest.record(files[0], _frame("2024-12-02"), vendor="ib", symbol="AAPL", bar_size="1 hour")
    log = download_manifest_path(base)
    whole = log.read_text()
    torn = whole[: len(whole) // 2]  # a crash mid-append of the same line
    log.write_text(whole + torn)
    assert len(read_download_manifest(log)) == 1  # the reader tolerates the fragment
    manifest.record(files[1], _frame("2024-12-03"), vendor="ib", symbol="AAPL", bar_size="1 hour")
    text = log.read_text()
    assert text.endswith("\n") and [json.loads(line)["time_start"][:10] for line in text.splitlines()] == ["2024-12-02", "2024-12-03"]
    assert (log.parent / (log.name + TORN_SUFFIX)).read_text() == torn + "\n"  # the fragment is kept for inspection
    records = read_download_manifest(log)
    assert [(r["vendor"], r["bar_size"]) for r in records] == [("IBKR", "1 hour")] * 2
    document = manifest.rebuild_coverage()
    assert [d["date"] for d in document["entries"][0]["days"]] == ["2024-12-02", "2024-12-03"]
    # ML_BACKUP_PATH: the same relative paths, complete copies
    assert (backup / "manifests" / "bars_download_manifest.jsonl").read_text() == text
    assert json.loads((backup / "bars_coverage_manifest.json").read_text()) == json.loads(coverage_path(base).read_text())
    files[0].unlink()  # a file that is gone leaves the coverage
    assert [d["date"] for d in manifest.rebuild_coverage()["entries"][0]["days"]] == ["2024-12-03"]


def test_the_l2_manifest_heals_its_torn_tail_too(tmp_path):
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps({"symbol": "AAPL", "date": "2024-12-02", "status": "WRITE"}) + "\n" + '{"symbol": "MS')
    assert [r["symbol"] for r in read_l2_manifest(path)] == ["AAPL"]
    manifest = OrderedManifest(path, fsync=False)
    manifest.add(0, {"symbol": "MSFT", "date": "2024-12-02", "status": "written", "zero_rows": False, "rows": 5, "path": "p", "error": None})
    assert [(r["symbol"], r["status"]) for r in read_l2_manifest(path)] == [("AAPL", "WRITE"), ("MSFT", "WRITE")]
    assert all(json.loads(line) for line in path.read_text().splitlines())


# ------------------------------------------------------------------------------ L2 backfill
def test_backfill_l2_and_the_batch_entry_points_follow_the_guide(tmp_path, gateway, vendor, platform):
    from platform_api import backfill_l2, find_warrior_tasks, run_warrior_backfill

    assert list(inspect.signature(backfill_l2).parameters)[:4] == ["symbol", "trading_day", "force", "strict"]
    assert inspect.signature(find_warrior_tasks).parameters["since_days"].default is None
    assert inspect.signature(find_warrior_tasks).parameters["last"].default is None
    run = inspect.signature(run_warrior_backfill).parameters
    assert list(run)[0] == "tasks" and all(run[k].default in (False, None) for k in ("force", "strict", "max_tasks", "max_workers"))

    settings = load_settings(
        DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url, ML_BACKUP_PATH=str(tmp_path / "backup"),
        LOGS_PATH=str(tmp_path / "logs"), L2_BACKFILL_WINDOW_ET="09:00-16:30", L2_TRADING_WINDOW_ET="10:00-15:00", L2_BACKFILL_CONCURRENCY="3",
    )
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    today = dt.date(2024, 12, 5)  # a Thursday: the two latest completed sessions are Dec 3 and 4
    tasks = find_warrior_tasks(last=2, today=today, instance=platform.instance)
    assert tasks == [("AAPL", dt.date(2024, 12, 3)), ("AAPL", dt.date(2024, 12, 4)), ("MSFT", dt.date(2024, 12, 3)), ("MSFT", dt.date(2024, 12, 4))]
    assert find_warrior_tasks(today=today, instance=platform.instance) == [("AAPL", dt.date(2024, 12, 4)), ("MSFT", dt.date(2024, 12, 4))]
    assert [d for _, d in find_warrior_tasks(since_days=7, today=today, symbols=["AAPL"])] == [dt.date(2024, 11, 29), dt.date(2024, 12, 2), dt.date(2024, 12, 3), dt.date(2024, 12, 4)]
    with pytest.raises(ValueError, match="since_days"):
        find_warrior_tasks(since_days=0, today=today, symbols=["AAPL"])

    vendor.empty_days = {("MSFT", dt.date(2024, 12, 4))}
    vendor.unknown_symbols = {"ZZZZ"}
    one = backfill_l2("AAPL", dt.date(2024, 12, 3), settings=settings)
    assert set(one) >= {"status", "zero_rows", "path", "rows", "error"} and one["status"] == "written" and one["error"] is None
    stamps = pd.to_datetime(pq.read_table(one["path"]).column("timestamp").to_numpy()).tz_localize("UTC").tz_convert("America/New_York")
    assert stamps.min().time() >= dt.time(10, 0) and stamps.max().time() < dt.time(15, 0)  # L2_TRADING_WINDOW_ET is enforced

    summary = run_warrior_backfill(tasks + [("ZZZZ", dt.date(2024, 12, 3))], settings=settings)
    manifest = read_l2_manifest(settings.base_path / "manifests" / MANIFEST_FILE)
    assert [(r["symbol"], r["date"], r["status"]) for r in manifest] == [
        ("AAPL", "2024-12-03", "SKIP"), ("AAPL", "2024-12-04", "WRITE"), ("MSFT", "2024-12-03", "WRITE"), ("MSFT", "2024-12-04", "EMPTY"),
        ("ZZZZ", "2024-12-03", "ERROR"),
    ]
    assert set(summary) >= {"counts", "zero_row_tasks", "errors", "total_tasks", "duration_sec", "strict", "force", "max_tasks", "concurrency"}
    assert summary["counts"] == {"WRITE": 2, "SKIP": 1, "EMPTY": 1, "ERROR": 1} and summary["total_tasks"] == 5
    assert summary["zero_row_tasks"] == [["MSFT", "2024-12-04"]] and summary["errors"][0].startswith("ZZZZ 2024-12-03: ")
    assert summary["concurrency"] == 3 and summary["max_tasks"] is None  # L2_BACKFILL_CONCURRENCY, the legacy key
    saved = settings.base_path / "manifests" / SUMMARY_FILE
    assert json.loads(saved.read_text()) == summary
    backup = tmp_path / "backup" / "manifests"  # ML_BACKUP_PATH mirrors the manifest and the summary
    assert (backup / SUMMARY_FILE).read_text() == saved.read_text()
    assert (backup / MANIFEST_FILE).read_text() == (settings.base_path / "manifests" / MANIFEST_FILE).read_text()
    log = (tmp_path / "logs" / "backfill_l2.log").read_text().splitlines()  # LOGS_PATH: machine-parsable SUMMARY lines
    assert json.loads(log[-1].split(" SUMMARY ", 1)[1]) == summary
    assert coverage_path(settings.base_path).exists()  # the coverage manifest is refreshed at the end of a batch
    with pytest.raises(RuntimeError, match="ZZZZ 2024-12-04"):
        run_warrior_backfill([("ZZZZ", dt.date(2024, 12, 4))], strict=True, settings=settings)


# ------------------------------------------------------------------------------ live capture
def test_session_stats_carry_the_guides_fields(tmp_path):
    from platform_assets.ingestion.depth_capture import record_depth
    from resources.ib_source import IBSource
    from resources.l2_store import L2SnapshotStore

    tws = FakeTws()
    try:
        tws.depth_script = [(0, 0, 1, 99.99, 100), (0, 0, 0, 100.01, 200), (0, 1, 1, 99.98, 150)]
        store = L2SnapshotStore(level2_path=str(tmp_path / "level2"), fsync=False)
        source = IBSource(port=tws.port, base_delay_s=0.05, connect_timeout_s=5)
        stats = asyncio.run(record_depth(source, store, "AAPL", interval_s=0.05, rotate_s=3600, flush_s=0.1, duration_s=0.6))
    finally:
        tws.close()
    (path,) = sorted((tmp_path / "level2" / "AAPL").glob("session_stats_*.json"))
    document = json.loads(path.read_text())
    assert document["num_snapshots"] == stats.snapshots > 0 and document["num_messages"] == stats.messages == 3
    assert document["interval_ms"] == 50 and document["levels"] == 10


# ------------------------------------------------------------------------------ environment
def test_every_env_key_of_the_guide_is_read(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    (config / "symbol_mapping.json").write_text('{"BRKB": "BRK.B"}')
    (config / "other.json").write_text("{}")
    env = {
        "ML_BASE_PATH": str(tmp_path / "ml"), "ML_BACKUP_PATH": str(tmp_path / "bk"), "LOGS_PATH": str(tmp_path / "logs"),
        "TEMP_PATH": str(tmp_path / "tmp"), "CONFIG_PATH": str(config), "LEVEL2_DIRNAME": "Level2", "L2_BACKFILL_CONCURRENCY": "6",
        "L2_BACKFILL_WINDOW_ET": "09:00-16:30", "L2_TRADING_WINDOW_ET": "09:30-16:00", "LOG_LEVEL": "debug",
    }
    monkeypatch.delenv("DATA_PATH_OVERRIDE", raising=False)
    monkeypatch.delenv("L2_MAX_WORKERS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.base_path == tmp_path / "ml" and settings.level2_path == tmp_path / "ml" / "Level2"
    assert settings.backup_path == tmp_path / "bk" and settings.logs_path == tmp_path / "logs" and settings.temp_path == tmp_path / "tmp"
    assert settings.config_path == config and settings.symbol_mapping_file == config / "symbol_mapping.json"  # default under CONFIG_PATH
    assert settings.l2_max_workers == 6 and settings.log_level == "DEBUG"
    assert (settings.l2_window.start, settings.l2_window.end) == (dt.time(9, 30), dt.time(16, 0))
    monkeypatch.setenv("L2_MAX_WORKERS", "2")
    assert load_settings().l2_max_workers == 2  # the new key wins over the legacy one
    monkeypatch.setenv("SYMBOL_MAPPING_FILE", "other.json")
    assert load_settings().symbol_mapping_file == config / "other.json"  # relative: under CONFIG_PATH first
    monkeypatch.setenv("SYMBOL_MAPPING_FILE", "config/symbol_mapping.json")
    monkeypatch.delenv("CONFIG_PATH")
    assert load_settings().symbol_mapping_file == REPO_ROOT / "config" / "symbol_mapping.json"  # ... then the repository root
    monkeypatch.setenv("SYMBOL_MAPPING_FILE", "missing.json")
    with pytest.raises(SettingsError, match="SYMBOL_MAPPING_FILE='missing.json': file not found"):
        load_settings()
    monkeypatch.delenv("SYMBOL_MAPPING_FILE")
    with pytest.raises(SettingsError, match="do not overlap"):
        load_settings(L2_TRADING_WINDOW_ET="17:00-18:00")


def test_empty_env_values_are_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in ("DATA_PATH_OVERRIDE", "ML_BASE_PATH", "ML_BACKUP_PATH", "LOGS_PATH", "TEMP_PATH", "CONFIG_PATH", "SYMBOL_MAPPING_FILE", "L2_MAX_WORKERS"):
        monkeypatch.setenv(key, "")
    monkeypatch.setenv("PLATFORM_API_TOKEN", "   ")
    monkeypatch.setenv("LOG_LEVEL", " ")
    settings = load_settings()
    assert settings.base_path == REPO_ROOT / "data" and settings.base_path != tmp_path  # never the current folder
    assert settings.backup_path is None and settings.temp_path is None and settings.api_token is None
    assert settings.l2_max_workers == 4 and settings.log_level == "INFO" and settings.config_path == REPO_ROOT / "config"
    assert load_settings(DATA_PATH_OVERRIDE="", ML_BASE_PATH=str(tmp_path / "ml")).base_path == tmp_path / "ml"  # keywords too


# ------------------------------------------------------------------------------ CLI listing
def test_describe_lists_every_command_line_tool_with_its_arguments(capsys):
    from platform_api.cli import build_parser, main

    assert main(["--describe", "--json"]) == 0
    described = {c["tool"]: c for c in json.loads(capsys.readouterr().out)}
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {f"mdp {name}" for name in subcommands} <= set(described)
    assert {"mdp warrior-backfill", "mdp build-bars-coverage", "mdp l2-backfill", "mdp backfill"} <= set(described)
    flags = {flag for a in described["mdp warrior-backfill"]["arguments"] for flag in a["flags"]}
    assert {"--since", "--last", "--max-workers", "--max-tasks", "--strict", "--force"} <= flags
    backfill = {a["name"]: a for a in described["mdp backfill"]["arguments"]}
    assert backfill["symbols"]["required"] and backfill["workers"]["default"] == 1
    assert main(["--describe"]) == 0
    text = capsys.readouterr().out
    assert "mdp warrior-backfill:" in text and "--since" in text


# ------------------------------------------------------------------------------ L2 folder under ML_BASE_PATH
def test_l2_files_under_ml_base_path_are_found_by_both_spellings_of_the_guide(tmp_path):
    """The guide's contract writes `${DATA_PATH_OVERRIDE or ML_BASE_PATH}/level2/{SYMBOL}/` while
    LEVEL2_DIRNAME defaults to `Level2` under the ML base: with only ML_BASE_PATH set, a real
    backfill's L2 day file is at both paths (`level2` a link to `Level2`), the same file."""
    import os
    import subprocess

    ml = tmp_path / "Machine Learning"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_PATH_OVERRIDE", "LEVEL2_DIRNAME")}
    env.update(ML_BASE_PATH=str(ml), DAGSTER_HOME=str(home), LAKE_FSYNC="false", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "platform_api.cli", "backfill", "--symbols", "AAPL", "--start", "2024-11-26", "--end", "2024-11-27"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    contract = sorted((ml / "level2" / "AAPL").glob("*_snapshots_*.parquet"))
    default = sorted((ml / "Level2" / "AAPL").glob("*_snapshots_*.parquet"))
    assert [p.name for p in contract] == [p.name for p in default] == ["2024-11-26_snapshots_093000.parquet"]
    assert (ml / "level2").is_symlink() and contract[0].resolve() == default[0].resolve()
    frame = pd.read_parquet(contract[0])
    assert {"timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"} <= set(frame.columns) and str(frame["timestamp"].dt.tz) == "UTC"
    assert load_settings(ML_BASE_PATH=str(ml), DATA_PATH_OVERRIDE="", LEVEL2_DIRNAME="").level2_path == ml / "Level2"  # where the platform reads
