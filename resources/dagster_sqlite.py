"""Dagster's SQLite event log with pooled connections (``instance_class`` in dagster.yaml).

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine for every statement batch and
disposes it afterwards (``NullPool``). Each stored event so pays the engine set-up, a fresh SQLite
connection and, because closing the last connection of a WAL database checkpoints it, a WAL
checkpoint. A ranged run of the offline graph stores two to three asset events per (asset, date)
(materialization planned, materialization, the completeness check's evaluation): on 10 symbols x 60
days that bookkeeping was ~40% of a one-worker backfill (11.0 s of 27.8 s), ~9 ms per event.

``PlatformInstance`` is Dagster's instance whose default SQLite event log (same files and schema in
the instance's folder; run and schedule storages untouched) is ``PooledSqliteEventLogStorage``,
which keeps one engine (one pooled connection) per database file: the index shard for the life of the
storage, the run shards of the ``MAX_RUN_SHARDS`` most recently used runs. Everything else, the
SQL, the transactions (one per ``_connect`` block, as before), the ``_db_lock`` serialising a
process's threads, the busy timeout between processes, is Dagster's own code. Also, a planned check
evaluation over many partitions serialises its event once instead of once per partition (the rows
are the same). Engines are dropped, never shared, in a forked child, closed before ``wipe`` deletes
the shard files and on ``dispose``.

The on-disk state is interchangeable with Dagster's default SQLite storage: an instance switches
between the two by its dagster.yaml alone (tested both ways). Any other configured storage
(``storage: postgres``) is used as it is.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as db
from dagster._core.instance import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy.engine import Connection, Engine

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # as Dagster's own connections
MAX_RUN_SHARDS = 8  # run-shard engines kept open per storage (a run worker writes one; the UI reads a few)


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one long-lived engine per database file (see the module doc)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # shard -> engine, least recently used first
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (created, and its database initialised, on first use); call with ``_db_lock`` held."""
        if self._engines_pid != os.getpid():  # a forked child must not use its parent's connections
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=db.pool.QueuePool,
                pool_size=1,
                max_overflow=2,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        run_shards = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for name in run_shards[: max(0, len(run_shards) - MAX_RUN_SHARDS)]:
            self._engines.pop(name).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    def _close_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_engines()  # before the shard files are deleted under open connections
        super().wipe()

    def upgrade(self) -> None:
        self._close_engines()
        super().upgrade()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()

    def _store_asset_check_evaluation_planned(self, event, event_id: int | None) -> None:
        """Dagster's method with the event serialised once for all partitions (same rows)."""
        planned = event.dagster_event.event_specific_data
        partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        serialized = serialize_value(event)
        timestamp = self._event_insert_timestamp(event)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    [
                        dict(
                            asset_key=planned.asset_key.to_string(),
                            check_name=planned.check_name,
                            partition=partition_key,
                            run_id=event.run_id,
                            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                            evaluation_event=serialized,
                            evaluation_event_timestamp=timestamp,
                            evaluation_event_storage_id=event_id,
                        )
                        for partition_key in partition_keys
                    ]
                )
            )


class PlatformInstance(DagsterInstance):
    """The Dagster instance of dagster.yaml (``instance_class``): Dagster's own, whose SQLite event
    log (the default storage, in the instance's folder) is the pooled one; any other storage
    (``storage: postgres`` at scale, README "Scaling out") is used as configured."""

    config_defaults = staticmethod(InstanceRef.config_defaults)

    @classmethod
    def config_schema(cls) -> dict:
        return {}  # no settings of its own

    def __init__(self, *args, event_storage: EventLogStorage, **kwargs):
        if type(event_storage) is SqliteEventLogStorage:
            base_dir = event_storage._base_dir
            event_storage.dispose()
            event_storage = PooledSqliteEventLogStorage(base_dir, inst_data=event_storage.inst_data)
        super().__init__(*args, event_storage=event_storage, **kwargs)
