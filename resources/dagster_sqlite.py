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

Batched writes: Dagster hands a storage some events as a batch (a run's planned materializations and
check evaluations at its creation, a step's materializations of its partitions) when the instance's
event batch size is above zero. Dagster's SQLite storage stores a batch event by event, one
transaction each (~2.6 ms per event here, pooled). ``store_event_batch`` stores it with the very
same per-event code inside one transaction per database file (the run's shard, the index), so a
60-date run's ~840 planned and materialization events commit in a few transactions. A batch that
fails rolls back whole and Dagster stores its events one by one. ``PlatformInstance`` turns batching
on (``EVENT_BATCH_SIZE``) for this storage unless ``DAGSTER_EVENT_BATCH_SIZE`` says otherwise.

The on-disk state is interchangeable with Dagster's default SQLite storage: an instance switches
between the two by its dagster.yaml alone (tested both ways). Any other configured storage
(``storage: postgres``) is used as it is.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as db
from dagster._core.instance import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy.engine import Connection, Engine

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # as Dagster's own connections
MAX_RUN_SHARDS = 8  # run-shard engines kept open per storage (a run worker writes one; the UI reads a few)
EVENT_BATCH_SIZE = 5000  # events of one Dagster batch stored per transaction (a 64-date run plans ~450 per asset set)


def _found_before_or_now(seen: set[str], name: str, ask) -> bool:
    """Whether ``name`` exists: remembered in ``seen`` once ``ask()`` found it (schema objects are
    only ever added, by an upgrade), asked again while it was not."""
    if name in seen:
        return True
    if ask():
        seen.add(name)
        return True
    return False


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one long-lived engine per database file (see the module doc)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # shard -> engine, least recently used first
        self._engines_pid = os.getpid()
        self._batch: dict[str, Connection] | None = None  # shard -> open connection of the batch being stored
        self._batch_thread: int | None = None
        self._tables_seen: set[str] = set()  # index tables known to exist (tables are only ever added, by upgrade)
        self._asset_key_columns_seen: set[str] = set()
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
        if self._batch is not None and self._batch_thread == threading.get_ident():
            yield self._batch_connection(shard)  # inside store_event_batch: its open transaction
            return
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    def _batch_connection(self, shard: str) -> Connection:
        conn = self._batch.get(shard)
        if conn is None:
            conn = self._batch[shard] = self._engine(shard).connect()
            conn.begin()
        return conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Dagster's per-event storing of ``events`` in one transaction per database file: all of
        them are stored or (on an error, re-raised) none."""
        with self._db_lock:
            self._batch, self._batch_thread = {}, threading.get_ident()
            try:
                for event in events:
                    self.store_event(event)
                for conn in self._batch.values():  # the run's shard first, the index after it (as store_event)
                    conn.commit()
            except BaseException:
                for conn in self._batch.values():
                    conn.rollback()
                raise
            finally:
                for conn in self._batch.values():
                    conn.close()
                self._batch, self._batch_thread = None, None

    def _close_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def has_table(self, table_name: str) -> bool:
        """Dagster's check (a new engine each call, ~1 ms; asked for every asset event stored),
        remembered once the table exists."""
        return _found_before_or_now(self._tables_seen, table_name, lambda: super(PooledSqliteEventLogStorage, self).has_table(table_name))

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        """Dagster's column reflection (asked for every asset event stored), remembered once the column exists."""
        return _found_before_or_now(
            self._asset_key_columns_seen, column_name, lambda: super(PooledSqliteEventLogStorage, self)._has_asset_key_col_on_connection(conn, column_name)
        )

    def _forget_schema(self) -> None:
        self._tables_seen.clear()
        self._asset_key_columns_seen.clear()

    def wipe(self) -> None:
        self._close_engines()  # before the shard files are deleted under open connections
        self._forget_schema()
        super().wipe()

    def upgrade(self) -> None:
        self._close_engines()
        self._forget_schema()
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

    def _get_event_batch_size(self) -> int:
        """Dagster's batch size (``DAGSTER_EVENT_BATCH_SIZE``, 0 = off) when set; else batches on for
        the pooled SQLite log, which stores a batch in one transaction."""
        configured = os.getenv("DAGSTER_EVENT_BATCH_SIZE")
        if configured is not None:
            return int(configured)
        return EVENT_BATCH_SIZE if isinstance(self.event_log_storage, PooledSqliteEventLogStorage) else 0

    def __init__(self, *args, event_storage: EventLogStorage, **kwargs):
        if type(event_storage) is SqliteEventLogStorage:
            base_dir = event_storage._base_dir
            event_storage.dispose()
            event_storage = PooledSqliteEventLogStorage(base_dir, inst_data=event_storage.inst_data)
        super().__init__(*args, event_storage=event_storage, **kwargs)
