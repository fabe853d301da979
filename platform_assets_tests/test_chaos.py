"""Chaos suite (README "Reliability"): faults injected into real processes, real files, a real instance.

* SIGKILL at random points of an ``mdp backfill`` subprocess (twice), then a re-run: every
  partition's content hash equals a clean run's, no run is left STARTED, no temp file is left.
* SIGKILL at random points of a compaction process, then a re-run: same content, one file per date.
* SIGKILL of a detached API job worker: the job reads FAILED from any process, its run too.
* Compaction concurrent with re-computation, 50 trials: the new values everywhere.
* Readers (DuckDB via LakeReader, the DuckDB views, coverage, ``ParquetLake.read``) during
  repeated compaction swaps: no error, never a date twice.
* A torn raw batch and a truncated month file: the next run quarantines and heals them.
* Bad configuration and input: NaN/inf DQ thresholds and a mixed stock/crypto backfill are refused.

Random points come from ``CHAOS_SEED`` (printed on failure) so a failing trial can be replayed.
The whole file runs in about a minute on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from definitions import build_definitions
from platform_api import jobs
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.coverage import get_coverage
from platform_api.lake_reader import LakeReader
from platform_assets.automation.compaction import compact_closed_months, compactable_tables
from platform_assets.automation.run_reaper import PID_TAG, reap_dead_runs
from platform_assets.quality.config import RuleConfigError, load_rule_sets
from resources.atomic import TMP_PREFIX
from resources.lake import CORRUPT_DIR, CURATED_BARS, ParquetLake, Table, content_hash, month_file_dates, quarantine_table, raw_bars_table
from resources.schemas import L2Book
from resources.settings import load_settings
from resources.validation import InvalidInputError
from resources.warehouse import LakeWarehouse

from faults import full_disk_for_month_writes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("CHAOS_SEED", time.time_ns() % 1_000_000))
IN_FLIGHT = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
VOLATILE = {"ingestion_ts", "evaluated_at"}  # wall-clock stamps: differ between any two runs
FORK = multiprocessing.get_context("fork")


# ------------------------------------------------------------------------------------ helpers
def _lake_tables(lake: ParquetLake) -> list[Table]:
    root = lake.root
    tables = [*compactable_tables(), raw_bars_table("sim")]
    tables += [Table("dq_metrics", (("dataset", d.name.split("=", 1)[1]),)) for d in sorted((root / "dq_metrics").glob("dataset=*"))]
    return tables


def partition_hashes(data: Path) -> dict[str, str]:
    """Content hash of every stored (table, symbol, date) and L2 file, volatile stamps excluded."""
    lake = ParquetLake(base_path=str(data), fsync=False)
    out = {}
    for table in _lake_tables(lake):
        raw = table.name == "raw_bars"
        for row in lake.list_partitions(table).itertuples():
            frame = lake.read_latest_batch(table, row.symbol, row.date) if raw else lake.read(table, [row.symbol], [row.date])
            frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
            keys = [c for c in ("ts", "metric") if c in frame.columns]
            frame = frame.sort_values(keys).reset_index(drop=True) if keys else frame
            out[f"{table}|{row.symbol}|{row.date}"] = content_hash(frame)
    for path in sorted((data / "level2").glob("*/*.parquet")):
        out[str(path.relative_to(data))] = _arrow_hash(pq.read_table(path))
    return out


def _arrow_hash(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]


def temp_files(data: Path) -> list[Path]:
    return [p for p in data.rglob(f"{TMP_PREFIX}*")]


def _age_temp_files(data: Path, seconds: float = 3600) -> None:
    """Make leftover temp files look as old as after a restart the next day (past the grace period)."""
    old = time.time() - seconds
    for path in temp_files(data):
        os.utime(path, (old, old))


def _settings(data: Path):
    return load_settings(DATA_PATH_OVERRIDE=str(data), LAKE_FSYNC="false")


def _backfill_in_process(data: Path, home: Path, symbols, start, end):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        report = run_backfill(instance, plan_backfill(symbols, start, end), defs=build_definitions(_settings(data)), add_missing_symbols=True)
        in_flight = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    return report, in_flight, failed


def _instance_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def _frame(symbol: str, day: dt.date, value: float, rows: int = 5) -> pd.DataFrame:
    ts = pd.date_range(pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=14, minutes=30), periods=rows, freq="1min")
    return pd.DataFrame({"date": [day] * rows, "symbol": symbol, "ts": ts, "close": np.full(rows, value)})


NOV = [dt.date(2024, 11, d) for d in (4, 5, 6, 7, 8, 11, 12, 13)]


# ------------------------------------------------------------------ SIGKILL during a backfill
def test_sigkill_during_backfill_then_rerun_equals_a_clean_run(tmp_path):
    rng = random.Random(SEED)
    symbols, start, end = ["AAPL", "MSFT"], "2024-11-26", "2024-11-29"
    clean, data = tmp_path / "clean", tmp_path / "data"
    report, _, _ = _backfill_in_process(clean, _instance_home(tmp_path / "clean_home"), symbols, start, end)
    assert report.success
    reference = partition_hashes(clean)

    home = _instance_home(tmp_path / "home")
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(data), "DAGSTER_HOME": str(home), "LAKE_FSYNC": "false", "PYTHONPATH": str(REPO)}
    killed_at = []
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-m", "platform_api.cli", "backfill", "--symbols", ",".join(symbols), "--start", start, "--end", end],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not (data / "lake").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the first write: kill inside the pipeline, not during imports
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        killed_at.append((delay, child.poll()))
        _kill_group(child)
    assert any(code is None for _, code in killed_at), f"no trial was killed mid-run (seed {SEED}): {killed_at}"

    _age_temp_files(data)
    report, in_flight, failed = _backfill_in_process(data, home, symbols, start, end)
    assert report.success, [r.error for r in report.runs]
    assert not in_flight, f"runs left in flight after the re-run (seed {SEED})"
    assert failed, "the killed runs were marked FAILED by the reaper"
    assert all(PID_TAG in r.dagster_run.tags for r in failed)  # runs of the killed CLI, failed by the reaper
    assert partition_hashes(data) == reference, f"re-run after SIGKILL differs from a clean run (seed {SEED}, kills {killed_at})"
    assert not temp_files(data), f"temp files left after the re-run: {temp_files(data)}"


# ----------------------------------------------------------------- SIGKILL during compaction
def _compact_all(base: str, ready) -> None:
    lake = ParquetLake(base_path=base, fsync=False)
    ready.set()
    for table in compactable_tables()[:3]:
        lake.compact_table(table, "2024-12")


def _synthetic_lake(data: Path, symbols: int = 12) -> ParquetLake:
    lake = ParquetLake(base_path=str(data), fsync=False)
    for table in compactable_tables()[:3]:
        for i in range(symbols):
            for day in NOV:
                lake.write_partition(table, f"S{i:02d}", day, _frame(f"S{i:02d}", day, float(day.day + i)))
    return lake


def test_sigkill_during_compaction_then_rerun_keeps_every_row_once(tmp_path):
    rng = random.Random(SEED + 1)
    template = tmp_path / "template"
    _synthetic_lake(template)
    reference = partition_hashes(template)
    shutil.copytree(template, tmp_path / "calibration")
    started = time.monotonic()
    _compact_all(str(tmp_path / "calibration"), FORK.Event())
    duration = time.monotonic() - started  # kill points are drawn inside one compaction's duration
    outcomes = []
    for trial in range(4):
        data = tmp_path / f"trial{trial}"
        shutil.copytree(template, data)
        ready = FORK.Event()
        child = FORK.Process(target=_compact_all, args=(str(data), ready))  # a real process, SIGKILLed below
        child.start()
        assert ready.wait(60)
        time.sleep(rng.uniform(0.0, duration))
        outcomes.append(child.exitcode)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        _age_temp_files(data)
        lake = ParquetLake(base_path=str(data), fsync=False)
        compact_closed_months(lake, "2024-12")
        assert partition_hashes(data) == reference, f"trial {trial} (seed {SEED + 1})"
        for table in compactable_tables()[:3]:
            assert not list(lake.table_dir(table).glob("symbol=*/date=*/part.parquet")), "every closed month compacted"
        assert not temp_files(data)
    assert None in outcomes, f"no compaction was killed mid-way (seed {SEED + 1}): {outcomes}"


# ------------------------------------------------------------- SIGKILL of a detached job worker
def test_a_killed_job_worker_reads_failed_from_any_process_and_its_run_too(platform):
    handle = jobs.trigger_historical_ingestion(
        "sim", ["AAPL", "MSFT"], "2024-11-04", "2024-11-29", add_missing_symbols=True,
        instance=platform.instance, settings=platform.settings, defs=platform.defs,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = platform.instance.get_run_records(dg.RunsFilter(tags={"platform/job_id": handle.job_id}))
        if any(r.dagster_run.status == dg.DagsterRunStatus.STARTED for r in runs):
            break
        time.sleep(0.1)
    assert jobs.get_job_status(handle.job_id, instance=platform.instance).state == "RUNNING"
    child = jobs._CHILDREN.pop(handle.job_id)  # forget the handle: this process now knows only the pid, like any other
    os.killpg(child.pid, signal.SIGKILL)
    time.sleep(0.3)  # not reaped: the worker stays a zombie, which must still count as gone
    status = jobs.get_job_status(handle.job_id, instance=platform.instance)
    assert status.state == "FAILED"
    assert any("worker process exited" in e for e in status.summary["errors"])
    runs = platform.instance.get_run_records(dg.RunsFilter(tags={"platform/job_id": handle.job_id}))
    assert runs and all(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in runs)
    child.wait(timeout=10)


def test_the_reaper_leaves_live_runs_alone(platform):
    run = platform.instance.create_run_for_job(
        dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags={PID_TAG: str(os.getpid()), "platform/host": os.uname().nodename}
    )
    assert reap_dead_runs(platform.instance) == []
    assert platform.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.NOT_STARTED
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = platform.instance.create_run_for_job(
        dg.GraphDefinition(name="noop2", node_defs=[]).to_job(), tags={PID_TAG: str(dead.pid), "platform/host": os.uname().nodename}
    )
    assert reap_dead_runs(platform.instance) == [ghost.run_id]
    assert platform.instance.get_run_by_id(ghost.run_id).status == dg.DagsterRunStatus.FAILURE


# ------------------------------------------------- compaction concurrent with re-computation
def _rewrite_days(base: str, start, seed: int) -> None:
    lake, rng = ParquetLake(base_path=base, fsync=False), random.Random(seed)
    start.wait()
    for day in rng.sample(NOV, len(NOV)):
        time.sleep(rng.uniform(0, 0.004))
        lake.write_partition(CURATED_BARS, "AAPL", day, _frame("AAPL", day, 1.0))


def _compact(base: str, start, seed: int) -> None:
    lake = ParquetLake(base_path=base, fsync=False)
    start.wait()
    time.sleep(random.Random(seed).uniform(0, 0.01))
    lake.compact_month(CURATED_BARS, "AAPL", "2024-11")


def test_compaction_concurrent_with_recomputation_never_loses_the_new_values(tmp_path):
    lost = []
    for trial in range(50):
        base = tmp_path / f"t{trial}"
        lake = ParquetLake(base_path=str(base), fsync=False)
        for day in NOV:
            lake.write_partition(CURATED_BARS, "AAPL", day, _frame("AAPL", day, 0.0))
        start = FORK.Barrier(2)
        workers = [FORK.Process(target=f, args=(str(base), start, SEED + trial)) for f in (_rewrite_days, _compact)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        frame = lake.read(CURATED_BARS, ["AAPL"], NOV)
        if len(frame) != 5 * len(NOV) or (frame["close"] != 1.0).any():
            lost.append(trial)
    assert not lost, f"old values survived in trials {lost} (seed {SEED})"


# ------------------------------------------------------------------- readers during compaction
def _read_loop(base: str, stop, errors) -> None:
    settings = types.SimpleNamespace(base_path=Path(base), level2_path=Path(base) / "level2")
    lake, warehouse = ParquetLake(base_path=base, fsync=False), LakeWarehouse(base_path=base, level2_path=str(Path(base) / "level2"))
    reads = 0
    while not stop.is_set():
        try:
            reader = LakeReader(settings)
            files = reader.files(CURATED_BARS, ["AAPL"], NOV)["AAPL"]
            if files:
                frame = reader.query("SELECT date, count(*) AS n FROM read_parquet($files) GROUP BY date", {"files": [str(f) for f in files]})
                if (frame["n"] != 5).any():
                    errors.put(f"LakeReader saw a date {frame['n'].max()} rows")
            with warehouse.connect() as conn:
                if "curated_bars" in [r[0] for r in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]:
                    counts = conn.execute("SELECT count(*) FROM curated_bars GROUP BY date HAVING count(*) <> 5").fetchall()
                    if counts:
                        errors.put(f"DuckDB view saw {counts}")
            get_coverage("AAPL", settings=settings)
            frame = lake.read(CURATED_BARS, ["AAPL"], NOV)
            if len(frame) and (frame.groupby("date").size() != 5).any():
                errors.put("ParquetLake.read saw a date twice")
            reads += 1
        except Exception as error:  # noqa: BLE001 - every reader error is a finding
            errors.put(f"{type(error).__name__}: {error}")
    errors.put(("reads", reads))


def test_readers_during_compaction_never_fail_nor_see_a_date_twice(tmp_path):
    base = str(tmp_path / "data")
    lake = ParquetLake(base_path=base, fsync=False)
    stop, errors = FORK.Event(), FORK.Queue()
    lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _frame("AAPL", NOV[0], 0.0))
    readers = [FORK.Process(target=_read_loop, args=(base, stop, errors)) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for cycle in range(8):
            for day in NOV:
                lake.write_partition(CURATED_BARS, "AAPL", day, _frame("AAPL", day, float(cycle)))
            assert lake.compact_month(CURATED_BARS, "AAPL", "2024-11") == len(NOV)
            for day in NOV[1:]:
                lake.delete_partition(CURATED_BARS, "AAPL", day)
            lake.delete_partition(CURATED_BARS, "AAPL", NOV[0])
    finally:
        stop.set()
        for reader in readers:
            reader.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    reads = sum(item[1] for item in found if isinstance(item, tuple))
    problems = [item for item in found if not isinstance(item, tuple)]
    assert not problems, problems[:5]
    assert reads >= 10, f"readers too slow to overlap compaction: {reads} reads"


# -------------------------------------------------------------------- corruption that heals
def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def test_torn_raw_batch_and_truncated_month_file_heal_on_the_next_run(platform):
    lake = platform.defs.resources["lake"]
    plan = plan_backfill(["AAPL"], "2024-11-27", "2024-12-02")
    assert run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True).success
    data = Path(platform.settings.base_path)
    reference = partition_hashes(data)
    lake.compact_table(CURATED_BARS, "2024-12")
    month = lake.month_file(CURATED_BARS, "AAPL", "2024-11")
    assert month_file_dates(month)
    batch = lake.batch_files(raw_bars_table("sim"), "AAPL", dt.date(2024, 11, 27))[-1]
    _truncate(batch)
    _truncate(month)

    with pytest.raises(OSError, match=str(month)):  # a reader's error names the file
        LakeReader(platform.settings).files(CURATED_BARS, ["AAPL"], [dt.date(2024, 11, 26)])
    assert run_backfill(platform.instance, plan, defs=platform.defs).success
    assert partition_hashes(data) == reference
    quarantined = sorted(p.name for p in (lake.root / CORRUPT_DIR).rglob("*.corrupt"))
    assert len(quarantined) == 2 and any(p.startswith(batch.name) for p in quarantined)
    assert pq.read_metadata(lake.batch_files(raw_bars_table("sim"), "AAPL", dt.date(2024, 11, 27))[-1]).num_rows > 0


def _rot_pages(path: Path) -> None:
    """Damage the data pages of a Parquet file, keeping its footer readable."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    end = len(data) - footer
    data[end // 4 : end // 2] = bytes(end // 2 - end // 4)
    path.write_bytes(bytes(data))


def test_a_partial_rerun_over_a_corrupt_month_file_recomputes_the_months_other_dates(platform):
    """A re-run of two dates meets month files holding eight: one torn (no footer), one rotted
    behind a readable footer. Each is quarantined whole; the step re-computes every date it held,
    not only the run's two, so the lake ends as before and Dagster records those dates again
    (materialized, completeness check passed) from this run, naming the quarantined file."""
    from platform_assets.symbol_days import COMPLETE_CHECK
    from resources.lake import feature_table

    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-18", "2024-11-27"), defs=platform.defs, add_missing_symbols=True).success
    data = Path(platform.settings.base_path)
    reference = partition_hashes(data)
    curated, features = lake.month_file(CURATED_BARS, "AAPL", "2024-11"), lake.month_file(feature_table("bar_features", "v1"), "AAPL", "2024-11")
    assert len(month_file_dates(curated)) == 8 and len(month_file_dates(features)) == 8
    _truncate(curated)
    _rot_pages(features)
    assert month_file_dates(features)  # the footer still reads

    report = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-26", "2024-11-27"), defs=platform.defs)
    assert report.success and report.complete
    assert partition_hashes(data) == reference  # nothing lost
    assert len(list((lake.root / CORRUPT_DIR).rglob("*.corrupt"))) == 2
    rerun = {run.run_id for run in report.runs}
    for asset in ("curated_bars", "bar_features"):
        key = dg.AssetKey(asset)
        event = platform.instance.get_latest_materialization_event(key)  # newest of any partition
        records = platform.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=["2024-11-18"]), limit=1).records
        assert records[0].run_id in rerun, asset
        assert "recomputed_after_quarantine" in records[0].asset_materialization.metadata and event is not None
        check = platform.instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, COMPLETE_CHECK), limit=50)
        latest = next(r for r in check if r.partition == "2024-11-18")
        assert latest.run_id in rerun and latest.evaluation.passed, asset

    _rot_pages(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))  # a daily run (one date, direct writes) heals too
    daily = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-27", "2024-11-27"), defs=platform.defs)
    assert daily.complete and partition_hashes(data) == reference

    shutil.rmtree(lake.partition_dir(raw_bars_table("sim"), "AAPL", dt.date(2024, 11, 19)))  # a lost date that cannot be re-computed
    lake.compact_month(CURATED_BARS, "AAPL", "2024-11")  # the daily heal wrote day files: one month file again
    _rot_pages(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))
    again = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-27", "2024-11-27"), defs=platform.defs)
    assert again.success and not again.complete  # the run says so (mdp backfill exits 1), it is not a quiet gap
    assert "curated_bars" in again.runs[0].failed_symbol_days and "not re-computed" in again.runs[0].failed_symbol_days["curated_bars"]
    assert not lake.has_partition(CURATED_BARS, "AAPL", dt.date(2024, 11, 19)) and lake.has_partition(CURATED_BARS, "AAPL", dt.date(2024, 11, 18))


def test_a_corrupt_month_file_of_a_symbol_outside_the_run_met_while_judging_is_recomputed(platform):
    """A run for AAPL judges every tracked symbol's dates: MSFT's torn curated month file is
    quarantined there, and the step re-computes all of MSFT's dates it held (its footer is gone:
    the month's dates Dagster has materialized), DQ results included: the lake ends as before."""
    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], "2024-11-20", "2024-11-26"), defs=platform.defs, add_missing_symbols=True).complete
    data = Path(platform.settings.base_path)
    reference = partition_hashes(data)
    _truncate(lake.month_file(CURATED_BARS, "MSFT", "2024-11"))
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-25", "2024-11-26"), defs=platform.defs).complete
    assert partition_hashes(data) == reference


def test_an_input_month_file_found_corrupt_downstream_fails_its_own_assets_dates(platform):
    """``bar_features`` alone over two dates reads a torn curated month file: it quarantines it and
    fails its two dates, and every date the file held fails ``curated_bars``' completeness check
    (the step cannot re-compute another asset's table), so no date of it stays green without data."""
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.symbol_days import COMPLETE_CHECK

    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-18", "2024-11-22"), defs=platform.defs, add_missing_symbols=True).success
    _truncate(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))
    job = platform.defs.resolve_job_def("offline_pipeline")
    result = job.execute_in_process(
        instance=platform.instance, asset_selection=[dg.AssetKey("bar_features")], raise_on_error=False,
        tags={RANGE_START_TAG: "2024-11-21", RANGE_END_TAG: "2024-11-22"},
    )
    assert not result.success  # neither of its dates landed
    history = platform.instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK), limit=50)
    latest = {}
    for record in history:
        latest.setdefault(record.partition, record)
    days = ["2024-11-18", "2024-11-19", "2024-11-20", "2024-11-21", "2024-11-22"]
    assert all(not latest[day].evaluation.passed and "AAPL (lost with" in latest[day].evaluation.metadata["missing"].value for day in days)
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-18", "2024-11-22"), defs=platform.defs).complete
    _truncate(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))  # lost a second time: reported again (a second runless report of a date used to crash)
    assert not job.execute_in_process(instance=platform.instance, asset_selection=[dg.AssetKey("bar_features")], raise_on_error=False,
                                      tags={RANGE_START_TAG: "2024-11-21", RANGE_END_TAG: "2024-11-22"}).success
    history = platform.instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("curated_bars"), COMPLETE_CHECK), limit=100)
    latest = {}
    for record in history:
        latest.setdefault(record.partition, record)
    assert all(not latest[day].evaluation.passed and "AAPL (lost with" in latest[day].evaluation.metadata["missing"].value for day in days)


def test_temp_files_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    lake = ParquetLake(base_path=str(tmp_path), fsync=False)
    lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _frame("AAPL", NOV[0], 0.0))
    folder = lake.partition_dir(CURATED_BARS, "AAPL", NOV[0])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale, fresh, alive = (folder / f"{TMP_PREFIX}{pid}-{tag}.parquet" for pid, tag in ((dead.pid, "a"), (dead.pid, "b"), (live.pid, "c")))
        for path in (stale, fresh, alive):
            path.write_bytes(b"partial")
        old = time.time() - 3600
        os.utime(stale, (old, old))
        os.utime(alive, (old, old))
        lake.write_partition(CURATED_BARS, "AAPL", NOV[0], _frame("AAPL", NOV[0], 1.0))
        assert not stale.exists()  # its writer is dead and it is past the grace period
        assert fresh.exists() and alive.exists()  # too young to judge / its writer is alive
    finally:
        live.kill()
        live.wait()


def test_the_l2_asset_sweeps_dead_writers_temp_files_once_per_folder_and_its_writes_skip_the_listing(platform):
    """L2 folders hold a file per day, so ``l2_snapshots_sim`` sweeps each symbol folder once per
    step and writes without a listing per file: a dead writer's stale temp file still goes (and a
    live writer's stays) when the asset runs outside a backfill (no backfill sweep before it)."""
    from platform_api.backfill import _execute_chunk, run_tags
    from platform_assets.universe import add_symbols
    from resources.l2_store import L2SnapshotStore

    store = L2SnapshotStore(level2_path=str(platform.settings.level2_path), fsync=False)
    folder = store.symbol_dir("AAPL")
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale, alive = folder / f"{TMP_PREFIX}{dead.pid}-a.parquet", folder / f"{TMP_PREFIX}{live.pid}-b.parquet"
        old = time.time() - 3600
        for path in (stale, alive):
            path.write_bytes(b"partial")
            os.utime(path, (old, old))
        written = store.write("AAPL", NOV[0], L2Book.empty(10), suffix="093000", source="sim", sweep=False)
        assert written.exists() and stale.exists()  # sweep=False: no listing, nothing removed
        plan = plan_backfill(["AAPL"], NOV[0], NOV[1])
        add_symbols(platform.instance, ["AAPL"])
        tags = run_tags(plan, plan.dates, ["AAPL"], "test")
        outcome = _execute_chunk(platform.instance, plan.job_name, tags, "WARNING", platform.defs, ["l2_snapshots_sim"])
        assert outcome.success and outcome.materializations == {"l2_snapshots_sim": 2}
        assert not stale.exists() and alive.exists()
        assert len(store.day_files("AAPL", NOV[1])) == 1
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------- no silent switch-off
def test_nan_and_inf_thresholds_are_refused_naming_file_and_rule(tmp_path):
    for bad in (".nan", ".inf", "-.inf", '"nan"'):
        path = tmp_path / "rules.yaml"
        path.write_text(f"version: 1\ndatasets:\n  curated_bars:\n    - {{name: gap_ratio_max, rule: gap_ratio, warn: {bad}, error: 0.5}}\n")
        with pytest.raises(RuleConfigError, match=rf"{path}.*gap_ratio_max.*warn=.*not a finite number"):
            load_rule_sets(path)


def test_a_backfill_mixing_stock_and_crypto_symbols_is_refused_and_crypto_alone_runs_the_crypto_graph():
    with pytest.raises(InvalidInputError, match="BTC-USD.*crypto.*AAPL"):
        plan_backfill(["AAPL", "BTC-USD"], "2024-12-02", "2024-12-03")
    plan = plan_backfill(["BTC-USD"], "2024-11-30", "2024-12-01")
    assert plan.job_name == "crypto_pipeline" and len(plan.dates) == 2  # a weekend: crypto trades 24/7


@pytest.mark.parametrize("damage", ["rotted", "torn"])
def test_a_loss_found_by_a_reader_in_another_process_is_healed_by_the_next_daily_run(platform, damage):
    """A training script (its own process) reads a curated month file rotted behind its footer (a
    DuckDB read fails) or torn (its footer does not read while the reader resolves the files: this
    used to raise without quarantining, so Dagster stayed green and no run re-computed it): its
    read quarantines the file and the loss goes to the lake's journal. The next daily run (one
    date, another process) takes it and re-computes every date the file held: nothing is lost."""
    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-18", "2024-11-27"), defs=platform.defs, add_missing_symbols=True).complete
    data = Path(platform.settings.base_path)
    reference = partition_hashes(data)
    (_rot_pages if damage == "rotted" else _truncate)(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))
    script = (
        "import sys\nfrom platform_api.retrieval import get_curated_bars\n"
        "try:\n    get_curated_bars(['AAPL'], '2024-11-19', '2024-11-20')\nexcept OSError as error:\n    print('READ FAILED', error)\n"
    )
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(data), "LAKE_FSYNC": "false"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "READ FAILED" in done.stdout and "moved to" in done.stdout, done.stdout + done.stderr
    assert not lake.has_partition(CURATED_BARS, "AAPL", dt.date(2024, 11, 19))  # quarantined by the script's read
    journal = list((lake.root / "quarantine" / "lost_dates").glob("*.json"))
    assert len(journal) == 1
    daily = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-27", "2024-11-27"), defs=platform.defs)
    assert daily.complete
    assert partition_hashes(data) == reference
    assert not list((lake.root / "quarantine" / "lost_dates").glob("*.json"))  # taken


def test_a_crash_between_a_raw_batch_and_its_repeated_rows_loses_neither(platform, monkeypatch):
    """Rows repeating a batch's key are kept only in ``quarantine/raw_bars``. A fault after the
    batch was stored but before its repeats were (a crash, a full disk) must not lose them: the
    re-run finds the batch already stored, so the repeats are written first."""
    from platform_assets.ingestion.raw_batches import raw_batch_table

    symbols, start, end = ["AAPL", "MSFT"], dt.date(2024, 11, 11), dt.date(2024, 11, 22)
    plan = plan_backfill(symbols, start, end)
    source, raw = platform.defs.resources["offline_source"], raw_bars_table("sim")
    delivered = {}
    for day in plan.dates:
        for symbol in symbols:
            _, _, repeated = raw_batch_table(source.day(symbol, day).bar_columns, source="sim", symbol=symbol, day=day,
                                             ingestion_ts=pd.Timestamp.now(tz="UTC"))
            delivered[(symbol, day)] = len(repeated)
    assert sum(delivered.values()) > 0, "the simulator repeats some keys in this range"

    real_append = ParquetLake.append_batch

    def full_disk_for_quarantine(self, table, *args, **kwargs):
        if table.name.startswith("quarantine/"):
            raise OSError(28, "No space left on device (injected)")
        return real_append(self, table, *args, **kwargs)

    monkeypatch.setattr(ParquetLake, "append_batch", full_disk_for_quarantine)
    assert not run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True, asset_selection=["raw_bars_sim"]).success
    monkeypatch.setattr(ParquetLake, "append_batch", real_append)
    assert run_backfill(platform.instance, plan, defs=platform.defs, asset_selection=["raw_bars_sim"]).success

    lake = platform.defs.resources["lake"]
    stored = {}
    for (symbol, day), repeats in delivered.items():
        files = lake.batch_files(quarantine_table(raw), symbol, day)
        tables = [pq.read_table(f) for f in files]
        stored[(symbol, day)] = sum(t.num_rows for t in tables)
        assert all(set(t.column("reject_reason").to_pylist()) == {"duplicate_key"} for t in tables)
    assert stored == delivered
    assert all(lake.batch_files(raw, s, d) for s in symbols for d in plan.dates)


def test_a_lost_dates_record_whose_recomputation_fails_stays_for_the_next_run(platform, monkeypatch):
    """A re-run re-computes the dates a torn curated month file held; a full disk while writing them
    leaves the run incomplete AND the journal record in place, so the next normal run heals them
    (before: the record was settled, the next run green and complete, 6 dates gone for good)."""
    from resources import lost_dates

    lake = platform.defs.resources["lake"]
    assert run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-18", "2024-11-27"), defs=platform.defs, add_missing_symbols=True).success
    data = Path(platform.settings.base_path)
    reference = partition_hashes(data)
    _truncate(lake.month_file(CURATED_BARS, "AAPL", "2024-11"))
    run_dates = {dt.date(2024, 11, 26), dt.date(2024, 11, 27)}
    healing = lambda table, symbol, parts: table == CURATED_BARS and bool(set(parts) - run_dates)  # noqa: E731
    with full_disk_for_month_writes(monkeypatch, healing, "injected while re-computing the lost dates"):
        faulted = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-26", "2024-11-27"), defs=platform.defs)
    assert not faulted.complete
    assert [lost.table for lost in lost_dates.pending(lake.root)] == [str(CURATED_BARS)]

    healed = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-11-26", "2024-11-27"), defs=platform.defs)
    assert healed.success and healed.complete
    assert partition_hashes(data) == reference
    assert lost_dates.pending(lake.root) == []


def test_a_failed_quarantine_write_keeps_the_dq_verdict_of_curated_rows_that_landed(tmp_path, monkeypatch):
    """Curated rows land, their rejected-rows quarantine write hits a full disk: the day fails its
    completeness, but its DQ results and block markers stay (they judged rows that are stored), so
    the steps after it in the same run skip the blocked days. Before, the DQ results were discarded
    and aligned bars, features and labels were built on the ungated days."""
    from platform_assets.quality.checks import DEFAULT_RULES_FILE
    from platform_assets.quality.metrics import dq_blocked_table
    from resources.lake import ALIGNED_BARS, feature_table, labels_table

    rules = tmp_path / "rules.yaml"  # curated days with an invalid (rejected) raw row fail an error rule
    text = Path(DEFAULT_RULES_FILE).read_text()
    old = "stat: invalid_rows, group: validity, warn: 1, error: 20}"
    assert old in text
    rules.write_text(text.replace(old, "stat: invalid_rows, group: validity, warn: 1, error: 1}"))
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DQ_RULES_FILE=str(rules))
    defs = build_definitions(settings)
    (tmp_path / "home").mkdir()
    aapl_quarantine = lambda table, symbol, parts: table == quarantine_table(CURATED_BARS) and symbol == "AAPL"  # noqa: E731

    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        plan = plan_backfill(["AAPL", "MSFT"], "2024-11-18", "2024-11-27")
        with full_disk_for_month_writes(monkeypatch, aapl_quarantine):
            faulted = run_backfill(instance, plan, defs=defs, add_missing_symbols=True)
        assert not faulted.complete
        lake = defs.resources["lake"]
        blocked = lake.stored_dates(dq_blocked_table("curated_bars"), "AAPL")
        assert blocked  # the verdict of the stored rows was kept
        derived = (ALIGNED_BARS, feature_table("bar_features", "v1"), labels_table("v1"))
        assert not any(set(blocked) & lake.stored_dates(table, "AAPL") for table in derived)
        run_backfill(instance, plan, defs=defs)  # days blocked for both symbols fail their steps (nothing landed): not asserted green
        assert lake.stored_dates(dq_blocked_table("curated_bars"), "AAPL") == blocked
        assert set(blocked) <= lake.stored_dates(quarantine_table(CURATED_BARS), "AAPL")
        assert not any(set(blocked) & lake.stored_dates(table, "AAPL") for table in derived)


def test_a_crash_between_a_raw_batch_and_its_log_line_is_logged_by_the_re_run(platform, monkeypatch):
    """The bars download log gets a line per stored batch; a fault after the batch landed and before
    its line (a full disk) made the re-run, which finds the batch stored, never log it: the coverage
    document missed the day for good. The re-run logs a found batch whose line is missing."""
    from resources.bars_manifest import BarsManifest
    from resources.manifests import coverage_path, read_coverage

    plan = plan_backfill(["AAPL"], "2024-11-18", "2024-11-22")
    real_record = BarsManifest.record
    calls = []

    def full_disk_once(self, path, frame, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device (injected)")
        return real_record(self, path, frame, **kwargs)

    monkeypatch.setattr(BarsManifest, "record", full_disk_once)
    assert not run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True, asset_selection=["raw_bars_sim"]).success
    monkeypatch.setattr(BarsManifest, "record", real_record)
    assert run_backfill(platform.instance, plan, defs=platform.defs, asset_selection=["raw_bars_sim"]).success
    base = platform.settings.base_path
    lake = platform.defs.resources["lake"]
    stored = {str(lake.batch_files(raw_bars_table("sim"), "AAPL", day)[-1].absolute()) for day in plan.dates}
    logged = [r["path"] for r in _download_lines(base)]
    assert stored <= set(logged) and len(logged) == len(set(logged)) == len(stored)  # each once
    days = {d["date"] for entry in read_coverage(coverage_path(base))["entries"] if entry["symbol"] == "AAPL" for d in entry["days"]}
    assert days == {d.isoformat() for d in plan.dates}


def _download_lines(base) -> list[dict]:
    from resources.manifests import download_manifest_path, read_jsonl

    return [record for _, record in read_jsonl(download_manifest_path(base))]
