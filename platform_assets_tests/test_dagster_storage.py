"""The instance storage of dagster.yaml (``resources.dagster_sqlite``): Dagster's SQLite storage with
pooled connections must record exactly what Dagster's default storage records, over the same files."""

from __future__ import annotations

import collections
import multiprocessing
import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db
import yaml
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from platform_api.backfill import plan_backfill, run_backfill
from platform_assets.partitions import stock_date_partitions
from platform_assets_tests.conftest import pooled_instance
from resources.dagster_sqlite import EVENT_BATCH_SIZE, MAX_RUN_SHARDS, PooledSqliteEventLogStorage

REPO = Path(__file__).resolve().parents[1]
ASSETS = ["raw_bars_sim", "l2_snapshots_sim", "curated_bars", "aligned_bars", "bar_features", "l2_features", "labels"]


def _fingerprint(instance: dg.DagsterInstance) -> dict:
    """What the UI and our status answers read: partition status per asset, every check execution
    (asset, check, partition, status), run statuses and the Dagster event types stored per run."""
    status = {}
    for asset in ASSETS:
        value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(asset), stock_date_partitions)
        status[asset] = (
            sorted(value.deserialize_materialized_partition_subsets(stock_date_partitions).get_partition_keys()),
            sorted(value.deserialize_failed_partition_subsets(stock_date_partitions).get_partition_keys()),
        )
    with instance.event_log_storage.index_connection() as conn:
        checks = sorted(
            tuple("" if value is None else value for value in row)
            for row in conn.execute(db.text("SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions")).fetchall()
        )
    runs = sorted((run.tags.get("dagster/asset_partition_range_start"), run.status.value) for run in instance.get_runs())
    events = collections.Counter(
        record.dagster_event.event_type_value for run in instance.get_runs() for record in instance.all_logs(run.run_id) if record.dagster_event
    )
    return {"status": status, "checks": checks, "runs": runs, "events": dict(events)}


def _home(path: Path, storage: dict | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"telemetry": {"enabled": False}, **(storage or {})}
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def _backfill(home: Path, defs) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # two runs (one per date range), a symbol-day fails its completeness check on one date
        report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-05", min_chunks=2), defs=defs, add_missing_symbols=True)
        assert report.success and len(report.runs) == 2


def test_pooled_instance_records_what_dagsters_default_storage_records(tmp_path, monkeypatch):
    from definitions import build_definitions
    from resources.settings import load_settings

    batches = []  # the pooled storage stores Dagster's event batches in one transaction each
    store_batch = PooledSqliteEventLogStorage.store_event_batch
    monkeypatch.setattr(
        PooledSqliteEventLogStorage, "store_event_batch",
        lambda self, events: (batches.append((len(events), {e.get_dagster_event().event_type_value for e in events})), store_batch(self, events)),
    )
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    fingerprints = {}
    for name, storage in (("default", None), ("pooled", pooled_instance())):
        home = _home(tmp_path / name, storage)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / f"data-{name}"), LAKE_FSYNC="false")
        _backfill(home, build_definitions(settings))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage) == (name == "pooled")
            fingerprints[name] = _fingerprint(instance)
    assert fingerprints["pooled"] == fingerprints["default"]
    assert batches and max(size for size, _ in batches) > 10  # the planned events of a run, a step's materializations
    assert (2, {"ASSET_CHECK_EVALUATION"}) in batches  # a step's per-date completeness evaluations (2 dates per run)
    assert fingerprints["pooled"]["status"]["curated_bars"][0] == ["2024-12-02", "2024-12-03", "2024-12-04", "2024-12-05"]
    assert fingerprints["pooled"]["events"]["ASSET_CHECK_EVALUATION"] > 0

    # the same files read the same under either storage: switch each home to the other one
    _home(tmp_path / "default", pooled_instance())
    _home(tmp_path / "pooled", None)
    for name in ("default", "pooled"):
        with dg.DagsterInstance.from_config(str(tmp_path / name)) as instance:
            assert _fingerprint(instance) == fingerprints[name]


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [r.dagster_event.message for r in instance.all_logs(run_id) if r.dagster_event and (r.dagster_event.message or "").startswith("event")]


def _report_in_runs(instance: dg.DagsterInstance, count: int) -> list[str]:
    job = dg.GraphDefinition(name="noop", node_defs=[]).to_job()
    run_ids = []
    for index in range(count):
        run = instance.create_run_for_job(job)
        instance.report_engine_event(f"event {index}", run)
        run_ids.append(run.run_id)
    return run_ids


def test_open_engines_are_bounded_and_closed_before_wipe(tmp_path):
    home = _home(tmp_path / "home", pooled_instance())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        run_ids = _report_in_runs(instance, MAX_RUN_SHARDS + 4)
        assert len(storage._engines) <= MAX_RUN_SHARDS + 1  # the index shard and the recent runs' shards
        for index, run_id in enumerate(run_ids):  # every run's events stay readable, evicted or not
            assert _messages(instance, run_id) == [f"event {index}"]
        instance.wipe()
        assert list(storage._engines) in ([], ["index"])  # no connection to a deleted run shard (the index is kept, emptied)
        assert not [p for p in (home / "history" / "runs").glob("*.db") if p.name != "index.db"]
        assert all(not instance.all_logs(run_id) for run_id in run_ids)
        fresh = _report_in_runs(instance, 1)[0]  # a new shard file, not a connection to a deleted one
        assert (home / "history" / "runs" / f"{fresh}.db").exists()
        assert _messages(instance, fresh) == ["event 0"]
    assert not storage._engines  # disposed with the instance


def _child_reports(instance: dg.DagsterInstance, queue) -> None:
    run_ids = _report_in_runs(instance, 2)
    queue.put((run_ids, instance.event_log_storage._engines_pid == os.getpid()))  # engines of its own, not the parent's


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method")
def test_a_forked_child_opens_its_own_connections(tmp_path):
    home = _home(tmp_path / "home", pooled_instance())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = _report_in_runs(instance, 1)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_reports, args=(instance, queue))
        child.start()
        child_runs, own_engines = queue.get(timeout=120)
        child.join(timeout=120)
        assert child.exitcode == 0 and own_engines
        after = _report_in_runs(instance, 1)  # the parent's pooled connections still work
        for run_id in [*before, *child_runs, *after]:
            assert _messages(instance, run_id) == ["event 0"] or _messages(instance, run_id) == ["event 1"]


def test_repo_dagster_yaml_selects_the_pooled_instance(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        _report_in_runs(instance, 1)
    assert (home / "history" / "runs.db").exists() and (home / "history" / "runs" / "index.db").exists()  # Dagster's default layout


def test_an_instance_opened_by_folder_uses_that_folder(tmp_path, monkeypatch):
    """``from_config(folder)`` with DAGSTER_HOME pointing elsewhere (or unset) records in that folder."""
    elsewhere = _home(tmp_path / "elsewhere", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(elsewhere))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        run_id = _report_in_runs(instance, 1)[0]
    assert (home / "history" / "runs" / f"{run_id}.db").exists()
    with dg.DagsterInstance.from_config(str(elsewhere)) as other:  # nothing recorded in the other home
        assert not other.get_runs()


def _materializations(run_id: str, count: int, start: int = 0) -> list:
    """``count`` materialization events of asset ``batched`` (partitions start..), as a step stores them."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    return [
        EventLogEntry(
            error_info=None, level=20, user_message="", run_id=run_id, timestamp=1.0 + index, job_name="noop",
            dagster_event=DagsterEvent(
                DagsterEventType.ASSET_MATERIALIZATION.value, "noop",
                event_specific_data=StepMaterializationData(dg.AssetMaterialization("batched", partition=str(index))),
            ),
        )
        for index in range(start, start + count)
    ]


def _stored(instance: dg.DagsterInstance, run_id: str) -> tuple[list, list]:
    """Partitions of asset ``batched`` in the run's shard and in the cross-run index."""
    in_run = [r.dagster_event.partition for r in instance.all_logs(run_id) if r.dagster_event and r.dagster_event.asset_key]
    in_index = [r.partition_key for r in instance.fetch_materializations(dg.AssetKey("batched"), limit=100).records]
    return sorted(in_run), sorted(in_index)


def test_an_event_batch_is_stored_whole_or_not_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    home = _home(tmp_path / "home", pooled_instance())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance._get_event_batch_size() == EVENT_BATCH_SIZE  # batching is on for the pooled log
        storage = instance.event_log_storage
        run_id = _report_in_runs(instance, 1)[0]
        storage.store_event_batch(_materializations(run_id, 5))
        first = [str(index) for index in range(5)]
        assert _stored(instance, run_id) == (first, first)

        store_event = PooledSqliteEventLogStorage.store_event
        seen = []

        def fail_on_the_fourth(self, event):
            seen.append(event)
            if len(seen) == 4:
                raise RuntimeError("disk full")
            store_event(self, event)

        monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event", fail_on_the_fourth)
        with pytest.raises(RuntimeError, match="disk full"):
            storage.store_event_batch(_materializations(run_id, 6, start=5))
        monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event", store_event)
        assert _stored(instance, run_id) == (first, first)  # the three stored before the failure rolled back, in both files
        _report_in_runs(instance, 1)  # the storage still writes after a failed batch (no transaction left open)
        assert storage._batch is None

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")  # Dagster's switch still turns it off
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance._get_event_batch_size() == 0


def test_the_schema_checks_remember_only_what_exists(tmp_path):
    home = _home(tmp_path / "home", pooled_instance())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.has_table("asset_check_executions") and "asset_check_executions" in storage._tables_seen
        assert not storage.has_table("table_added_later")
        with storage.index_connection() as conn:
            conn.execute(db.text("CREATE TABLE table_added_later (id INTEGER)"))
        assert storage.has_table("table_added_later")  # a missing table is asked again, not remembered
        assert storage.has_asset_key_index_cols()
        instance.wipe()
        assert "table_added_later" not in storage._tables_seen  # forgotten (wipe itself asks for its own tables again)
