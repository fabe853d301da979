"""The Parquet lake: system of record, one folder per table, hive-style partition folders.

Layout under ``{base}/lake``::

    raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-20240103T000102Z-<hash>.parquet  (append-only)
    curated_bars/symbol=AAPL/date=2024-01-02/part.parquet                                 (replaced)
    features/bar_features/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    labels/version=v1/symbol=AAPL/date=2024-01-02/part.parquet
    quarantine/raw_bars/source=sim/symbol=AAPL/date=2024-01-02/batch-....parquet
    quarantine/corrupt_files/<path of a corrupt file>.<UTC stamp>.corrupt               (never deleted)

Derived tables hold one ``part.parquet`` per (symbol, date), replaced atomically on re-run, so a
re-run never duplicates rows; inside ``batched_writes`` (every symbol-day step) the dates a step
writes for one (symbol, month) go to that month's file in one write instead (``resources.lake_batch``). Closed months of a derived table can be *compacted* into one file per
(symbol, month), ``symbol=S/month=YYYY-MM/part.parquet``, whose footer lists the dates it holds
(``platform.dates``): readers open 1 file instead of ~21. Every method here understands both
layouts; writing or deleting a date of a compacted month rewrites the month file, so a date lives
in exactly one file (after a crash mid-compaction the month file wins over leftover day files). Raw batches are fsynced (the system of record); derived files are
only renamed atomically, since they can always be rebuilt from raw. Raw tables are append-only: a batch is written once under a content
hash (``batch_id``); re-ingesting identical data writes nothing, changed vendor data adds a batch
and readers take the newest batch.

Concurrency (README "Reliability"): every writer of a (table, symbol) holds that folder's exclusive
``.lock`` for its whole read-modify-write (day writes, month rewrites, compaction, raw batches);
steps that remove a file or merge day files into a month file also hold the table's exclusive
``.lock``, which readers hold shared from resolving files to reading them. Corrupt files are moved
to ``quarantine/corrupt_files`` (never deleted) by the writer or asset that finds them, and the
next run re-fetches (raw) or re-computes (derived) what they held.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pandas.core.util.hashing import combine_hash_arrays

from resources import lake_batch, lost_dates
from resources.atomic import LOCK_WAIT_SECONDS, TMP_PREFIX, LockTimeoutError, file_lock, sweep_tree, write_parquet_atomic
from resources.file_memory import FileMemory, file_identity
from resources.parquet_format import write_options
from resources.validation import normalize_symbol

PART_FILE = "part.parquet"
BATCH_PREFIX = "batch-"


@dataclass(frozen=True)
class Table:
    """A lake table: a name (may contain ``/``) plus fixed hive dimensions such as source/version."""

    name: str
    dims: tuple[tuple[str, str], ...] = ()

    def relative_dir(self) -> Path:
        path = Path(*self.name.split("/"))
        for key, value in self.dims:
            path = path / f"{key}={value}"
        return path

    def __str__(self) -> str:
        return "/".join([self.name, *(f"{k}={v}" for k, v in self.dims)])


def raw_bars_table(source: str) -> Table:
    return Table("raw_bars", (("source", source),))


def quarantine_table(table: Table) -> Table:
    return Table(f"quarantine/{table.name}", table.dims)


def feature_table(group: str, version: str) -> Table:
    return Table(f"features/{group}", (("version", version),))


def labels_table(version: str) -> Table:
    return Table("labels", (("version", version),))


MONTH_PREFIX = "month="
DATES_KEY = b"platform.dates"
WRITTEN_KEY = b"platform.written"  # month files: {date: ns} when each date's rows were last written
LOCK_FILE = ".lock"
CORRUPT_DIR = Path("quarantine") / "corrupt_files"
_LOG = logging.getLogger(__name__)


class _EveryDate:
    def __contains__(self, item) -> bool:
        return True


_EVERY_DATE = _EveryDate()


class CorruptLakeFileError(OSError):
    """A lake file exists but cannot be read as Parquet (torn write, truncation, garbage)."""

    def __init__(self, path: Path | str, reason: object):
        self.path, self.reason = Path(path), str(reason)
        super().__init__(f"corrupt lake file {self.path}: {self.reason}")


THREADED_DECODE_BYTES = 128 << 10
"""Files smaller than this are decoded on the calling thread: the thread pool's hand-off cost more
than it saved on the lake's day files (an L2 day 0.60 -> 0.47 ms; a raw batch, a DQ file ~5-10%
less), while month files (250 KB - 1 MB) decode up to 1.8x faster with it."""
SMALL_PARQUET_BYTES = 64 << 20
"""Files up to this size are read into memory in one call and decoded from the buffer: about half
the time of ``pq.read_table`` on the lake's small files (its dataset machinery costs ~0.5 ms per
file). Bigger files are read by ``pq.read_table`` (streamed, no second copy in memory)."""


WRITTEN_TABLES_BYTES = 256 * 2**20
"""Memory for the raw batches (~60 KB each) and curated month files (~1.4 MB each) this process wrote."""
WRITTEN_TABLES = FileMemory(WRITTEN_TABLES_BYTES)
"""The Arrow tables of files this process wrote with ``write_parquet_remembered`` (raw batches, the
month files of ``READ_BACK_TABLES``), by file identity (``resources.file_memory``): curation in the
same run reads the batches the raw step just wrote from memory (~0.6 ms per symbol-day saved), the
later steps the curated month files."""


READ_BACK_TABLES = frozenset({"curated_bars"})
"""Derived tables whose month files a run's later steps read back (alignment, the bar features and
the labels read the curated bars the run just wrote): remembered in ``WRITTEN_TABLES`` when written
(~1.4 MB per symbol-month)."""


def write_parquet_remembered(table: pa.Table, target: Path, *, fsync: bool, options: dict | None = None) -> Path:
    """``write_parquet_atomic``, and ``table`` remembered for this process's ``read_parquet_checked``
    / ``read_parquet_table`` of the file while it is the one written (a file replaced since is read
    from disk). The caller holds the file's (table, symbol) lock, as every lake writer does, so no
    other writer renames a file over it between the write and the look at its identity."""
    path = write_parquet_atomic(table, target, fsync=fsync, options=options)
    try:
        WRITTEN_TABLES.put(file_identity(path), table, table.nbytes)
    except FileNotFoundError:
        pass
    return path


def read_parquet_checked(path: Path, columns: Sequence[str] | None = None, *, from_memory: bool = True) -> pa.Table:
    """Read one Parquet file (all or ``columns``, in that order); failures name the file: a missing
    file stays ``FileNotFoundError``, an unreadable one (or a requested column it lacks) raises
    ``CorruptLakeFileError``. A file this process wrote with ``write_parquet_remembered`` (and
    that is unchanged since) comes from memory unless ``from_memory=False``."""
    wanted = list(columns) if columns else None
    try:
        stat = os.stat(path)
        remembered = WRITTEN_TABLES.get(file_identity(path, stat)) if from_memory else None
        if remembered is not None:
            if wanted and (absent := [name for name in wanted if name not in remembered.column_names]):
                raise pa.ArrowInvalid(f"no column {absent[0]!r} in the file (columns: {remembered.column_names})")
            return remembered.select(wanted) if wanted else remembered
        if stat.st_size > SMALL_PARQUET_BYTES:
            return pq.read_table(path, columns=wanted)
        with open(path, "rb") as handle:
            data = handle.read()
        parquet = pq.ParquetFile(pa.BufferReader(data))
        if wanted:
            absent = [name for name in wanted if name not in parquet.schema_arrow.names]
            if absent:
                raise pa.ArrowInvalid(f"no column {absent[0]!r} in the file (columns: {parquet.schema_arrow.names})")
        return parquet.read(columns=wanted, use_threads=len(data) > THREADED_DECODE_BYTES)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise CorruptLakeFileError(path, exc) from exc


def corrupt_file_name(name: str) -> str:
    """The name a corrupt file is kept under: ``<name>.<UTC stamp>.corrupt`` (no reader lists it)."""
    return f"{name}.{pd.Timestamp.now(tz='UTC').strftime('%Y%m%dT%H%M%S%fZ')}.corrupt"


def parquet_file_ok(path: Path, rows: int | None = None) -> bool:
    """Whether ``path`` has a readable Parquet footer (and ``rows`` rows when given)."""
    try:
        metadata = pq.read_metadata(path)
    except FileNotFoundError:
        return False
    except (pa.ArrowException, OSError):
        return False
    return rows is None or metadata.num_rows == rows


DECODE_BATCH_ROWS = 65_536


def decodable_rows(path: Path) -> int | None:
    """The rows of a Parquet file when all of it decodes (footer and every page, read from disk in
    batches: bounded memory on a multi-million-row L2 day); None when it does not (or is gone)."""
    try:
        with pq.ParquetFile(path) as parquet:
            return sum(batch.num_rows for batch in parquet.iter_batches(batch_size=DECODE_BATCH_ROWS))
    except (pa.ArrowException, OSError):
        return None


def parquet_file_readable(path: Path) -> bool:
    """Whether the whole of ``path`` decodes (footer and every page): the check before quarantining."""
    return decodable_rows(path) is not None


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _sweep_wanted(name: str, symbols: set | None, days: set | None) -> bool:
    if name.startswith("symbol="):
        return symbols is None or name in symbols
    if name.startswith(("date=", MONTH_PREFIX)):
        return days is None or name in days
    return True


def _date_of(day_file: Path) -> dt.date:
    return dt.date.fromisoformat(day_file.parent.name[5:])


GATE_FILE = ".lock.gate"
GATE_HOLD_SECONDS = 2.0
GATE_OPEN_SECONDS = (0.06, 0.12)
"""How long a writer that gave up waiting leaves the gate open: longer than a waiting lock's longest
poll interval (50 ms, ``resources.atomic.file_lock``), so a queued reader sees it open."""

_shared_holds: dict[str, int] = {}
_shared_holds_guard = threading.Lock()


def _forget_shared_holds() -> None:
    _shared_holds.clear()  # a forked child holds no layout lock of its own


os.register_at_fork(after_in_child=_forget_shared_holds)


@contextlib.contextmanager
def _counted_shared_hold(key: str):
    with _shared_holds_guard:
        _shared_holds[key] = _shared_holds.get(key, 0) + 1
    try:
        yield
    finally:
        with _shared_holds_guard:
            left = _shared_holds.get(key, 1) - 1
            if left > 0:
                _shared_holds[key] = left
            else:
                _shared_holds.pop(key, None)


@contextlib.contextmanager
def layout_lock(table_dir: Path, *, shared: bool, timeout: float = LOCK_WAIT_SECONDS):
    """A table's layout lock (``table_dir/.lock``), writer-preferring.

    ``flock`` grants a shared lock whenever only shared holders exist, so a steady stream of
    readers starved compaction (measured: 12 swaps under 2 looping readers took 60 s). A gate
    file fixes that: a writer holds the gate exclusively while it waits for the layout lock, and
    readers pass the gate (shared, for an instant) before taking theirs, so new readers queue
    behind a waiting writer while the readers already inside finish.

    A process that already holds a table's shared lock (an open ``LakeReader``, a DuckDB
    connection, a coverage scan) takes it again without passing the gate: it is a reader already
    inside, and queueing it behind a writer that waits for it would stall both (measured: two
    looping readers that kept a ``LakeReader`` open while querying the same table again held a
    compaction off for minutes). A writer that still cannot get the layout lock within
    ``GATE_HOLD_SECONDS`` (readers of two tables queued at each other's gates) opens the gate for
    ``GATE_OPEN_SECONDS`` before retrying. A reader of a table that does not exist yet locks
    nothing (there is nothing to protect).
    """
    gate, lock = table_dir / GATE_FILE, table_dir / LOCK_FILE
    if shared:
        key = os.path.abspath(table_dir)
        with contextlib.ExitStack() as stack:
            if _shared_holds.get(key):
                stack.enter_context(file_lock(lock, shared=True, create=False, timeout=timeout))
            else:
                with file_lock(gate, shared=True, create=False, timeout=timeout):
                    stack.enter_context(file_lock(lock, shared=True, create=False, timeout=timeout))
            stack.enter_context(_counted_shared_hold(key))
            yield
        return
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.ExitStack() as stack:
            with file_lock(gate, timeout=max(deadline - time.monotonic(), 0.0)):
                try:
                    stack.enter_context(file_lock(lock, timeout=max(min(GATE_HOLD_SECONDS, deadline - time.monotonic()), 0.0)))
                except LockTimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    held = False
                else:
                    held = True
            if held:
                yield
                return
        time.sleep(random.uniform(*GATE_OPEN_SECONDS))


def _dates_held_by(path: Path) -> tuple[str, frozenset | None] | None:
    """(month, dates) a derived table's file holds, for ``lost_dates``: a day file its date, a
    month file the dates its footer lists (None when the footer does not read); None for any other
    file (raw batches: their day keeps its other batches and is re-fetched by ingestion)."""
    folder = path.parent.name
    if folder.startswith(MONTH_PREFIX):
        try:
            return folder[len(MONTH_PREFIX):], month_file_dates(path)
        except CorruptLakeFileError:
            return folder[len(MONTH_PREFIX):], None
    if folder.startswith("date=") and path.name == PART_FILE:
        day = _date_of(path)
        return month_of(day), frozenset({day})
    return None


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@functools.lru_cache(maxsize=65536)
def _month_dates_cached(path: str, mtime_ns: int, size: int) -> frozenset:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise CorruptLakeFileError(path, exc) from exc
    text = metadata.get(DATES_KEY, b"").decode()
    return frozenset(dt.date.fromisoformat(d) for d in text.split(",") if d)


def month_file_dates(path: Path) -> frozenset:
    """The dates a compacted month file holds (from its footer; cached per file version).
    Raises ``CorruptLakeFileError`` (naming the file) for an unreadable one."""
    try:
        stat = path.stat()
        return _month_dates_cached(str(path), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        return frozenset()


def symbol_layout(symbol_dir: Path) -> dict[dt.date, Path]:
    """Every stored date of one symbol's folder and the file holding it (month file wins)."""
    layout: dict[dt.date, Path] = {}
    months = []
    try:
        entries = list(os.scandir(symbol_dir))
    except FileNotFoundError:
        return layout
    for entry in entries:
        if entry.name.startswith("date=") and os.path.exists(os.path.join(entry.path, PART_FILE)):
            layout[dt.date.fromisoformat(entry.name[5:])] = Path(entry.path) / PART_FILE
        elif entry.name.startswith(MONTH_PREFIX) and os.path.exists(os.path.join(entry.path, PART_FILE)):
            months.append(Path(entry.path) / PART_FILE)
    for path in months:
        for day in month_file_dates(path):
            layout[day] = path
    return layout


def layout_files(layout: dict[dt.date, Path], days: set | None = None) -> list[Path]:
    """The files of a ``symbol_layout`` holding ``days`` (all when None), in date order, each once."""
    return list(dict.fromkeys(layout[day] for day in sorted(layout) if days is None or day in days))


CURATED_BARS = Table("curated_bars")
ALIGNED_BARS = Table("aligned_bars")


def content_hash(frame: pd.DataFrame, *identity: str) -> str:
    """Deterministic 16-hex-digit hash of a frame's values (and identity strings)."""
    digest = hashlib.sha256("|".join(identity).encode())
    if len(frame):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def content_hash_of_columns(columns: Mapping[str, np.ndarray | pd.api.extensions.ExtensionArray], *identity: str) -> str:
    """``content_hash(pd.DataFrame(columns), *identity)`` without building the frame (~0.5 ms per
    raw batch): pandas' own per-column hashes, combined as ``hash_pandas_object`` combines them."""
    digest = hashlib.sha256("|".join(identity).encode())
    arrays = list(columns.values())
    if arrays and len(arrays[0]):
        digest.update(combine_hash_arrays((pd.util.hash_array(values) for values in arrays), len(arrays)).tobytes())
    digest.update(",".join(map(str, columns)).encode())
    return digest.hexdigest()[:16]


class ParquetLake(dg.ConfigurableResource):
    """Reads and writes lake tables as Parquet files (atomic temp file + rename)."""

    base_path: str
    fsync: bool = True
    batch_writes: bool = True
    read_copies: bool = True  # keep Arrow read copies of closed feature/label months (resources.read_copy)

    @property
    def root(self) -> Path:
        return _lake_root(self.base_path)

    # --------------------------------------------------------- batched writes
    @contextlib.contextmanager
    def batched_writes(self):
        """Keep this thread's derived-partition writes in memory and write them per (table, symbol,
        month) when the outermost scope ends or ``flush_pending`` is called (``resources.lake_batch``).
        Raises ``lake_batch.FlushError`` naming the partitions that could not be written.
        A no-op when ``batch_writes`` is off (every write is then its own file at once)."""
        if not self.batch_writes:
            yield
            return
        root = str(self.root)
        lake_batch.open_scope(root)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            buffer = lake_batch.current(root)
            outermost = lake_batch.close_scope(root)
            if outermost and buffer is not None:
                try:
                    self._flush_groups(buffer.take())
                except lake_batch.FlushError:
                    if not failed:
                        raise
                    _LOG.exception("pending lake writes not written after a failed step")

    def flush_pending(self, table: Table | None = None, symbol: str | None = None, days=None) -> None:
        """Write the pending partitions of this thread's scope now (all, or one table / symbol)."""
        buffer = lake_batch.current(str(self.root))
        if buffer is not None:
            self._flush_groups(buffer.take(table, normalize_symbol(symbol) if symbol else None, days))

    def _flush_groups(self, groups: list[tuple]) -> None:
        failures: dict[tuple, Exception] = {}
        for (table, symbol), days in groups:
            for month, parts in lake_batch.by_month(days).items():
                try:
                    self._write_month_parts(table, symbol, month, parts)
                except Exception as exc:  # noqa: BLE001 - name every partition that did not land
                    failures.update({(table, symbol, day): exc for day in parts})
        if failures:
            raise lake_batch.FlushError(failures)

    def _write_month_parts(self, table: Table, symbol: str, month: str, parts: dict, fsync: bool = False) -> Path:
        """Write dates of one (symbol, month) in one locked read-modify-write: one month file (dates
        already in it kept, theirs replaced, rows ordered by date), or a day file when it is a single
        date no readable month file holds. Returns the file written. Every writer goes through here
        (``write_partition`` directly, batched scopes when they flush)."""
        with self._symbol_lock(table, symbol):
            held = self._month_dates_or_all(table, symbol, month)
            if len(parts) == 1 and next(iter(parts)) not in held:
                return self._write_day_file(table, symbol, parts, fsync)  # a daily run: beside the month file, merged by compaction
            if held is not _EVERY_DATE and held <= parts.keys():
                kept, dates = None, frozenset()  # every date it holds is replaced: no need to read it
            else:
                kept, dates = self._month_table(table, symbol, month)
                if kept is None and len(parts) == 1:
                    return self._write_day_file(table, symbol, parts, fsync)  # the month file was corrupt: quarantined
            if kept is not None:
                kept = _without_dates(kept, parts)
            merged = lake_batch.concat_by_date(([kept] if kept is not None else []) + list(parts.values()))
            target = self.month_file(table, symbol, month)
            with self._table_lock(table):
                now = time.time_ns()
                _write_month(merged, target, set(dates) | set(parts), fsync, {d: now for d in parts}, _options(table, merged),
                             remember=table.name in READ_BACK_TABLES)
                for day in parts:
                    day_file = self.partition_dir(table, symbol, day) / PART_FILE
                    if day_file.exists():
                        day_file.unlink()
                        with contextlib.suppress(OSError):
                            day_file.parent.rmdir()
            return target

    def _write_day_file(self, table: Table, symbol: str, parts: dict, fsync: bool) -> Path:
        (day, data), = parts.items()
        return write_parquet_atomic(data, self.partition_dir(table, symbol, day) / PART_FILE, fsync=fsync, options=_options(table, data))

    # ----------------------------------------------------------------- paths
    def table_dir(self, table: Table) -> Path:
        return _table_dir(self.root, table)

    def partition_dir(self, table: Table, symbol: str, day: dt.date) -> Path:
        return _symbol_dir(self.root, table, symbol) / f"date={day.isoformat()}"

    # ------------------------------------------------------ replaced partitions
    def symbol_dir(self, table: Table, symbol: str) -> Path:
        return _symbol_dir(self.root, table, symbol)

    def month_file(self, table: Table, symbol: str, month: str) -> Path:
        return self.symbol_dir(table, symbol) / f"{MONTH_PREFIX}{month}" / PART_FILE

    # ------------------------------------------------------------------ locks
    def _symbol_lock(self, table: Table, symbol: str):
        """Exclusive lock of one (table, symbol): held by every writer for its whole read-modify-write."""
        return file_lock(self.symbol_dir(table, symbol) / LOCK_FILE)

    def _table_lock(self, table: Table, *, shared: bool = False):
        """The table's layout lock: shared by readers from resolving files to reading them, exclusive
        (briefly, inside a symbol lock) around every step that removes a file or merges day files
        into a month file. Readers never take a symbol lock, writers at most one: no lock cycle."""
        return layout_lock(self.table_dir(table), shared=shared)

    def reading(self, table: Table):
        """Shared layout lock of ``table``: files resolved inside the block stay valid until it ends."""
        return self._table_lock(table, shared=True)

    # ------------------------------------------------------------ corruption
    def quarantine_path(self, path: Path) -> Path:
        """Where a corrupt lake file is moved: ``lake/quarantine/corrupt_files/<its path>.<UTC stamp>.corrupt``."""
        relative = Path(path).resolve().relative_to(self.root.resolve())
        return self.root / CORRUPT_DIR / relative.parent / corrupt_file_name(relative.name)

    def quarantine_file(self, table: Table, path: Path, *, locked_symbol: bool = False, check=None) -> Path | None:
        """Move a corrupt file of ``table`` to the quarantine folder (never deleted); returns where.

        Takes the file's symbol lock (unless the caller holds it) and the table's exclusive lock, and
        re-checks that the file is still unreadable first (a concurrent writer may have replaced it).
        """
        path = Path(path)
        symbol = next((part.split("=", 1)[1] for part in path.relative_to(self.table_dir(table)).parts if part.startswith("symbol=")), None)
        if symbol is None:
            raise ValueError(f"{path}: not a file of lake table {table}")
        with contextlib.ExitStack() as stack:
            if not locked_symbol:
                stack.enter_context(self._symbol_lock(table, symbol))
            stack.enter_context(self._table_lock(table))
            if not path.exists() or (check or parquet_file_readable)(path):
                return None
            held = _dates_held_by(path)
            target = self.quarantine_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            _LOG.warning("quarantined corrupt lake file %s -> %s", path, target)
            if held is not None:
                lost_dates.record(str(self.root), lost_dates.LostDates(str(table), symbol, *held, str(target)))
            return target

    def table_of(self, path: Path) -> Table | None:
        """The lake table a data file under this lake belongs to (None: not a table's data file)."""
        try:
            parts = Path(path).resolve().relative_to(self.root.resolve()).parts
        except ValueError:
            return None
        cut = next((i for i, part in enumerate(parts) if part.startswith("symbol=")), None)
        if not cut:
            return None
        names = [part for part in parts[:cut] if "=" not in part]
        dims = tuple(tuple(part.split("=", 1)) for part in parts[:cut] if "=" in part)
        if not names or any("=" not in part for part in parts[len(names):cut]):
            return None
        return Table("/".join(names), dims)

    def quarantine_if_corrupt(self, path: Path) -> Path | None:
        """A reader outside the lake's own read paths (DuckDB) failed on ``path``: when it is a
        table's file that does not decode, quarantine it (its dates go to the lost-dates journal,
        so the next run of its asset re-computes them). Returns where it went (None: not moved)."""
        table = self.table_of(path)
        if table is None or not Path(path).exists():
            return None
        return self.quarantine_file(table, Path(path))

    def taking_lost_dates(self, tables: Iterable[Table] | None, symbols: Iterable[str] | None = None, *, mine_only: bool = False, where=None):
        """A block over the dates ``tables`` (all when None) of ``symbols`` (all when None) lost to
        files quarantined (by any process: the journal ``lake/quarantine/lost_dates``) and not taken
        yet (``resources.lost_dates.taking``): the owning step re-computes them, anyone else reports
        them (``platform_assets.lake_status``); ``mine_only``: only the records this process made.
        They leave the journal when the block ends, and go back to it when the block raises."""
        return lost_dates.taking(str(self.root), None if tables is None else [str(t) for t in tables], symbols, mine_only=mine_only, where=where)

    def pending_lost_dates(self, table: Table, symbol: str) -> list[lost_dates.LostDates]:
        """The journal's records of (table, symbol) not re-computed yet (left in the journal)."""
        return [lost for lost in lost_dates.pending(str(self.root)) if lost.table == str(table) and lost.symbol == symbol]

    def _month_table(self, table: Table, symbol: str, month: str) -> tuple[pa.Table | None, frozenset]:
        """(rows, dates) of a month file under the caller's symbol lock; a corrupt one is quarantined
        (its dates become missing, so the next run over them re-computes them)."""
        path = self.month_file(table, symbol, month)
        if not path.exists():
            return None, frozenset()
        try:
            return read_parquet_checked(path), month_file_dates(path)
        except CorruptLakeFileError:
            self.quarantine_file(table, path, locked_symbol=True)
            return None, frozenset()

    def _month_dates_or_all(self, table: Table, symbol: str, month: str):
        """Dates the (symbol, month) file holds, from its footer (empty when there is none); a
        corrupt file answers "every date" so the caller takes the path that quarantines it."""
        try:
            return month_file_dates(self.month_file(table, symbol, month))
        except CorruptLakeFileError:
            return _EVERY_DATE

    # ------------------------------------------------------ replaced partitions
    def day_source(self, table: Table, symbol: str, day: dt.date) -> Path | None:
        """The file holding (symbol, day): its compacted month file, its day file, or None."""
        self._flush_if_pending(table, [symbol], [day])
        month = self.month_file(table, symbol, month_of(day))
        if month.exists() and day in month_file_dates(month):
            return month
        path = self.partition_dir(table, symbol, day) / PART_FILE
        return path if path.exists() else None

    def write_partition(
        self,
        table: Table,
        symbol: str,
        day: dt.date,
        data: pd.DataFrame | pa.Table,
        schema: pa.Schema | None = None,
        *,
        durable: bool = False,
    ) -> Path | None:
        """Replace the (symbol, date) partition of a derived table with ``data``.

        Always atomic (readers see the old or the new file) and serialised with every other writer
        of (table, symbol) - compaction included - for the whole read-modify-write, so no update is
        lost. Derived tables can be rebuilt from raw, so they are fsynced only when ``durable``.
        In a compacted month the month file is rewritten with the date's rows replaced.
        """
        fsync = self.fsync and durable
        new = _to_arrow(data, schema)
        buffer = lake_batch.current(str(self.root))
        if buffer is not None and not durable:
            buffer.put(table, normalize_symbol(symbol), day, new)
            if buffer.rows > lake_batch.MAX_PENDING_ROWS:
                self._flush_groups(buffer.take())
            return None  # written when the scope flushes (day or month file)
        return self._write_month_parts(table, symbol, month_of(day), {day: new}, fsync=fsync)

    def _flush_if_pending(self, table: Table, symbols: list | None, days: list | None) -> None:
        """Before a read: write this scope's pending partitions the read may need (read-your-writes)."""
        buffer = lake_batch.current(str(self.root))
        if buffer is None or not buffer.pending:
            return
        wanted = set(days) if days is not None else None
        for symbol in symbols if symbols is not None else [None]:
            self._flush_groups(buffer.take(table, normalize_symbol(symbol) if symbol else None, wanted))

    def written_ns(self, table: Table, symbol: str, day: dt.date) -> int | None:
        """When the (symbol, date) rows were last written (ns), whatever the layout; None if not stored.
        A month file keeps this per date, so rewriting one date does not make the others look new."""
        source = self.day_source(table, symbol, day)
        if source is None:
            return None
        if source.parent.name.startswith(MONTH_PREFIX):
            return written_times(source).get(day)
        return source.stat().st_mtime_ns

    def has_partition(self, table: Table, symbol: str, day: dt.date, *, quarantine: bool = True) -> bool:
        """Whether the (symbol, date) partition of a derived table is stored (either layout).
        A corrupt month file is quarantined first (its dates are then not stored); with
        ``quarantine=False`` it is left in place and ``CorruptLakeFileError`` raised."""
        buffer = lake_batch.current(str(self.root))
        if buffer is not None and buffer.has(table, normalize_symbol(symbol), day):
            return True
        return self._answer(table, lambda: self.day_source(table, symbol, day) is not None, quarantine)

    def stored_dates(self, table: Table, symbol: str, *, quarantine: bool = True) -> set[dt.date]:
        """Every date of (table, symbol) stored (either layout) or pending in this thread's batch:
        ``has_partition`` for all of a symbol's dates with one folder scan. A corrupt month file is
        quarantined first (its dates are then not stored); with ``quarantine=False`` it is left in
        place and ``CorruptLakeFileError`` raised."""
        buffer = lake_batch.current(str(self.root))
        pending = set(buffer.pending.get((table, normalize_symbol(symbol)), {})) if buffer is not None else set()
        return self._answer(table, lambda: set(symbol_layout(self.symbol_dir(table, symbol))), quarantine) | pending

    def stored_files(self, table: Table, symbol: str) -> list[Path]:
        """The files holding (table, symbol)'s stored dates (a corrupt month file quarantined first)."""
        return self._quarantining(table, lambda: list(symbol_layout(self.symbol_dir(table, symbol)).values()))

    def _answer(self, table: Table, answer, quarantine: bool):
        return self._quarantining(table, answer) if quarantine else answer()

    def _quarantining(self, table: Table, answer, rounds: int = 100):
        """``answer()``, quarantining each corrupt file it meets and asking again (a symbol may
        have several corrupt month files); after ``rounds`` files the last error is raised."""
        for _ in range(rounds):
            try:
                return answer()
            except CorruptLakeFileError as error:
                self.quarantine_file(table, error.path)
        return answer()

    def delete_partition(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Remove a derived partition (used when a re-run produces nothing for it)."""
        buffer = lake_batch.current(str(self.root))
        deleted = buffer is not None and buffer.drop(table, normalize_symbol(symbol), day)
        if not os.path.isdir(self.symbol_dir(table, symbol)):
            return deleted  # nothing stored for the symbol (the common case for quarantine/blocked tables)
        path = self.partition_dir(table, symbol, day) / PART_FILE
        if not path.exists() and not self.month_file(table, symbol, month_of(day)).exists():
            return deleted  # nothing stored: no lock needed (the common case for quarantine/blocked tables)
        with self._symbol_lock(table, symbol):
            kept, dates = self._month_table(table, symbol, month_of(day))
            if not path.exists() and day not in dates:
                return deleted
            with self._table_lock(table):
                if path.exists():
                    path.unlink()
                    deleted = True
                if kept is not None and day in dates:
                    month = self.month_file(table, symbol, month_of(day))
                    if dates - {day}:
                        _write_month(_without_dates(kept, [day]), month, dates - {day}, self.fsync, options=_options(table, kept))
                    else:
                        month.unlink()
                    deleted = True
        return deleted

    def compact_month(self, table: Table, symbol: str, month: str) -> int:
        """Merge the day files of (symbol, month) into its month file; returns the dates merged.

        Runs under the (table, symbol) lock, so no writer can rewrite a day file between the read
        and the removal; each day file's identity (inode, size, mtime) is re-checked before the swap
        anyway. The month file is written atomically before the day files are removed, both under
        the table's exclusive layout lock, so readers see the old layout or the new one. A corrupt
        day file is quarantined (its date is re-computed by the next run), never merged.
        """
        with self._symbol_lock(table, symbol):
            folder = self.symbol_dir(table, symbol)
            day_files = sorted(folder.glob(f"date={month}-*/{PART_FILE}"))
            if not day_files:
                return 0
            existing, dates = self._month_table(table, symbol, month)
            dates = set(dates)
            seen = {path: _identity(path) for path in day_files}
            tables, merged_files = [], []
            for path in day_files:
                try:
                    tables.append(read_parquet_checked(path))
                except CorruptLakeFileError:
                    self.quarantine_file(table, path, locked_symbol=True)
                    continue
                merged_files.append(path)
            if existing is not None:
                tables.insert(0, _without_dates(existing, [_date_of(path) for path in merged_files]))
            if not tables:
                return 0
            dates |= {_date_of(path) for path in merged_files}
            merged = pa.concat_tables([t for t in tables if t.num_rows] or tables[:1], promote_options="default")
            if "date" in merged.column_names and "ts" in merged.column_names:
                merged = merged.sort_by([("date", "ascending"), ("ts", "ascending")])
            target = self.month_file(table, symbol, month)
            with self._table_lock(table):
                changed = [str(p) for p in merged_files if _identity(p) != seen[p]]
                if changed:
                    raise RuntimeError(f"day files changed during compaction despite the lock: {', '.join(changed)}")
                _write_month(merged, target, dates, self.fsync, {_date_of(p): seen[p][2] for p in merged_files}, _options(table, merged))
                for path in merged_files:
                    path.unlink()
                    with contextlib.suppress(OSError):
                        path.parent.rmdir()
            return len(merged_files)

    def compact_table(self, table: Table, before_month: str) -> dict[str, int]:
        """Compact every month earlier than ``before_month`` (YYYY-MM) of every symbol; dates merged per symbol."""
        out = {}
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            symbol = symbol_dir.name.split("=", 1)[1]
            months = sorted({p.name[5:12] for p in symbol_dir.glob("date=*")} - {""})
            merged = sum(self.compact_month(table, symbol, m) for m in months if m < before_month)
            if merged:
                out[symbol] = merged
        return out

    def sweep_temp_files(self, symbols: Iterable[str] | None = None, days: Iterable[dt.date] | None = None) -> list[Path]:
        """Remove the ``.tmp-*`` files crashed writers left in the lake (see ``resources.atomic``):
        everywhere, or only in the folders of ``symbols`` x ``days`` (and their month folders), which
        keeps a run-start sweep proportional to the run, not to the lake."""
        wanted_symbols = {f"symbol={normalize_symbol(s)}" for s in symbols} if symbols is not None else None
        wanted_days = {f"date={d.isoformat()}" for d in days} | {f"{MONTH_PREFIX}{month_of(d)}" for d in days} if days is not None else None
        return sweep_tree(self.root, keep_dir=lambda name: _sweep_wanted(name, wanted_symbols, wanted_days))

    def partition_files(self, table: Table, symbols: Iterable[str], days: Iterable[dt.date]) -> list[Path]:
        """The files holding the (symbol, date) partitions (a month file once; may hold other dates)."""
        days = list(days)
        files: list[Path] = []
        for symbol in symbols:
            seen = set()
            for day in days:
                path = self.day_source(table, symbol, day)
                if path is not None and path not in seen:
                    seen.add(path)
                    files.append(path)
        return files

    def read(
        self,
        table: Table,
        symbols: Iterable[str] | None = None,
        days: Iterable[dt.date] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of the given (symbol, date) partitions (all partitions when omitted).

        Files are resolved and read under the table's shared layout lock. A corrupt file is
        quarantined (outside that lock) and the read done again without it.
        """
        symbols = list(symbols) if symbols is not None else None
        days = list(days) if days is not None else None
        self._flush_if_pending(table, symbols, days)
        for attempt in range(3):
            try:
                with self.reading(table):
                    if symbols is None or days is None:
                        files = self._glob(table, symbols, days)
                    else:
                        files = self.partition_files(table, symbols, days)
                    if not files:
                        return pd.DataFrame(columns=list(columns) if columns else None)
                    filter_days = days is not None and any(f.parent.name.startswith(MONTH_PREFIX) for f in files)
                    wanted = list(columns) if columns else None
                    if filter_days and wanted is not None and "date" not in wanted:
                        wanted.append("date")  # a month file holds other dates too: filter on it, then drop it
                    data = self._read_files(files, wanted)
                break
            except CorruptLakeFileError as error:
                if attempt == 2:
                    raise
                self.quarantine_file(table, error.path)
        if filter_days and "date" in data.column_names:
            data = data.filter(pc.is_in(_as_date32(data.column("date")), pa.array(sorted(set(days)), pa.date32())))
            if columns and "date" not in columns:
                data = data.drop_columns(["date"])
        return data.to_pandas()

    def _read_files(self, files: list[Path], columns: list[str] | None) -> pa.Table:
        """``read_parquet_table``; inside a batched-writes scope a lone month file is read once."""
        buffer = lake_batch.current(str(self.root))
        if buffer is None or len(files) != 1 or not files[0].parent.name.startswith(MONTH_PREFIX):
            return read_parquet_table(files, columns)
        return buffer.cached_read(files[0], columns, read_parquet_table)

    def _glob(self, table: Table, symbols: Iterable[str] | None, days: Iterable[dt.date] | None) -> list[Path]:
        wanted_symbols = {normalize_symbol(s) for s in symbols} if symbols is not None else None
        wanted_days = set(days) if days is not None else None
        files: list[Path] = []
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            if wanted_symbols is not None and symbol_dir.name.split("=", 1)[1] not in wanted_symbols:
                continue
            files += layout_files(symbol_layout(symbol_dir), wanted_days)
        return files

    def list_partitions(self, table: Table) -> pd.DataFrame:
        """(symbol, date, path) of every stored partition of a table (either layout)."""
        self._flush_if_pending(table, None, None)
        rows = []
        root = self.table_dir(table)
        for symbol_dir in sorted(root.glob("symbol=*")) if root.exists() else []:
            symbol = symbol_dir.name.split("=", 1)[1]
            layout = symbol_layout(symbol_dir)
            if not layout:  # raw tables: batch files, no part.parquet
                for path in sorted(symbol_dir.glob("date=*")):
                    if path.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in path.iterdir()):
                        rows.append({"symbol": symbol, "date": dt.date.fromisoformat(path.name[5:]), "path": str(path)})
                continue
            rows += [{"symbol": symbol, "date": day, "path": str(path.parent)} for day, path in sorted(layout.items())]
        return pd.DataFrame(rows, columns=["symbol", "date", "path"])

    # ------------------------------------------------------- append-only batches
    def raw_dates(self, table: Table, symbol: str) -> set[dt.date]:
        """The dates of a raw table's symbol folder holding at least one batch file."""
        try:
            names = os.listdir(self.symbol_dir(table, symbol))
        except (FileNotFoundError, NotADirectoryError):
            return set()
        days = (dt.date.fromisoformat(name[5:]) for name in names if name.startswith("date="))
        return {day for day in days if self.has_batch(table, symbol, day)}

    def has_batch(self, table: Table, symbol: str, day: dt.date) -> bool:
        """Whether a raw partition holds at least one batch file."""
        return bool(self.batch_files(table, symbol, day))

    def batch_files(self, table: Table, symbol: str, day: dt.date) -> list[Path]:
        """Batches of a raw partition, oldest first (names sort by ingestion time); one listing of
        the date folder (no glob: read for every date a curation or an ingestion touches)."""
        folder = self.partition_dir(table, symbol, day)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [folder / name for name in sorted(names) if name.startswith(BATCH_PREFIX) and name.endswith(".parquet")]

    def append_batch(
        self,
        table: Table,
        symbol: str,
        day: dt.date,
        data: pd.DataFrame,
        batch_id: str,
        ingestion_ts: pd.Timestamp,
        schema: pa.Schema | None = None,
    ) -> tuple[Path, bool]:
        """Write a raw batch unless a batch with the same ``batch_id`` exists. Returns (path, written).

        An existing batch of that id is verified first (decoded whole, same row count): a corrupt
        one (torn by a crash or a full disk, or pages damaged behind a readable footer) is
        quarantined and the batch written anew, so re-ingesting heals it in the same run. The check
        and the write hold the (table, symbol) lock.
        """
        arrow = _to_arrow(data, schema)
        with self._symbol_lock(table, symbol):
            for existing in self.batch_files(table, symbol, day):
                if existing.stem.endswith(f"-{batch_id}"):
                    if parquet_file_ok(existing, arrow.num_rows) and parquet_file_readable(existing):
                        return existing, False
                    self.quarantine_file(table, existing, locked_symbol=True,
                                         check=lambda p: parquet_file_ok(p, arrow.num_rows) and parquet_file_readable(p))
            stamp = ingestion_ts.tz_convert("UTC").strftime("%Y%m%dT%H%M%S%fZ")
            target = self.partition_dir(table, symbol, day) / f"{BATCH_PREFIX}{stamp}-{batch_id}.parquet"
            return write_parquet_remembered(arrow, target, fsync=self.fsync), True

    def read_latest_batch(self, table: Table, symbol: str, day: dt.date) -> pd.DataFrame | None:
        """The newest batch of a raw partition (None when there is none).

        A corrupt newest batch is quarantined and a ``CorruptLakeFileError`` naming it raised: the
        next ingestion of that partition re-fetches it (its batch id no longer exists).
        """
        found, corrupt = self.read_latest_batches(table, symbol, [day])
        if day in corrupt:
            raise corrupt[day]
        return found[day].to_pandas() if day in found else None

    def read_latest_batches(
        self, table: Table, symbol: str, days: Sequence[dt.date]
    ) -> tuple[dict[dt.date, pa.Table], dict[dt.date, CorruptLakeFileError]]:
        """``read_latest_batch`` for many of a symbol's dates (``batch_files`` of each; no scan of the
        symbol folder, which holds every date of the history): {date: its newest batch as Arrow}
        for the dates that have a readable one, and {date: the error} for those whose newest batch
        is corrupt (quarantined, as ``read_latest_batch`` does; the caller reports those dates, they
        are not skipped)."""
        tables, corrupt = {}, {}
        with self.reading(table):
            for day in days:
                batches = self.batch_files(table, symbol, day)
                if batches:
                    try:
                        tables[day] = read_parquet_checked(batches[-1])
                    except CorruptLakeFileError as error:
                        corrupt[day] = error
        for day, error in corrupt.items():
            moved = self.quarantine_file(table, error.path)
            corrupt[day] = CorruptLakeFileError(error.path, f"{error.reason}; moved to {moved}, re-ingest this partition to re-fetch it")
        return tables, corrupt


@functools.lru_cache(maxsize=1024)
def _table_dir(root: Path, table: Table) -> Path:
    """A table's folder (cached: built for every partition a step touches)."""
    return root / table.relative_dir()


@functools.lru_cache(maxsize=65536)
def _symbol_dir(root: Path, table: Table, symbol: str) -> Path:
    """A (table, symbol) folder; ``symbol`` validated (an invalid one raises and is not cached)."""
    return _table_dir(root, table) / f"symbol={normalize_symbol(symbol)}"


@functools.lru_cache(maxsize=64)
def _lake_root(base_path: str) -> Path:
    return Path(base_path) / "lake"


def _to_arrow(data: pd.DataFrame | pa.Table, schema: pa.Schema | None) -> pa.Table:
    if isinstance(data, pa.Table):
        return data if schema is None else data.select(schema.names).cast(schema)
    if schema is not None:  # column by column: a third of from_pandas' time on small frames (no pandas metadata)
        return pa.Table.from_arrays([pa.array(data[field.name], type=field.type, from_pandas=True) for field in schema], schema=schema)
    return pa.Table.from_pandas(data, preserve_index=False)


def read_parquet_files(files: Sequence[Path], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read many Parquet files of one schema into one DataFrame (multi-threaded)."""
    if not files:
        return pd.DataFrame(columns=list(columns) if columns else None)
    return read_parquet_table(files, columns).to_pandas()


def read_parquet_table(files: Sequence[Path], columns: Sequence[str] | None = None) -> pa.Table:
    """Read many Parquet files of one schema into one Arrow table (multi-threaded); a failure names the file."""
    if len(files) == 1:
        return read_parquet_checked(files[0], columns)
    remembered = _remembered_tables(files)
    if remembered is not None:  # every file written by this process and unchanged since: no read
        wanted = list(columns) if columns else remembered[0].column_names
        if all(name in remembered[0].column_names for name in wanted):
            return pa.concat_tables([t.select(wanted) for t in remembered])
    try:
        dataset = pads.dataset([str(f) for f in files], format="parquet")
        return dataset.to_table(columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        for path in files:  # name the culprit: a dataset error does not always say which file
            if not parquet_file_ok(path):
                raise CorruptLakeFileError(path, exc) from exc
        raise


def _remembered_tables(files: Sequence[Path]) -> list[pa.Table] | None:
    """The ``WRITTEN_TABLES`` tables of ``files`` when all are remembered with one schema (the
    dataset read's would then be the same table), else None."""
    tables = []
    for path in files:
        try:
            table = WRITTEN_TABLES.get(file_identity(path))
        except FileNotFoundError:
            return None
        if table is None or (tables and not table.schema.equals(tables[0].schema, check_metadata=False)):
            return None
        tables.append(table)
    return tables


def _as_date32(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_date32(column.type) else column.cast(pa.date32())


def _without_dates(table: pa.Table, days: Iterable[dt.date]) -> pa.Table:
    """``table`` without the rows of ``days`` (unchanged when it has no ``date`` column)."""
    if "date" not in table.column_names or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(_as_date32(table.column("date")), pa.array(sorted(days), pa.date32()))))


def written_times(path: Path) -> dict[dt.date, int]:
    """When each date of a month file was last written (ns; the file's mtime for dates written
    before the footer kept it). {} for a missing or unreadable file."""
    try:
        stat = path.stat()
        raw = (pq.read_schema(path).metadata or {}).get(WRITTEN_KEY)
    except (OSError, pa.ArrowException):
        return {}
    times = {dt.date.fromisoformat(k): int(v) for k, v in json.loads(raw).items()} if raw else {}
    for day in month_file_dates(path):
        times.setdefault(day, stat.st_mtime_ns)
    return times


def _options(table: Table, data: pa.Table) -> dict:
    """Parquet encoding of ``table``'s files (``resources.parquet_format``)."""
    return write_options(table.name, data.schema, data.num_rows)


def _write_month(
    table: pa.Table, target: Path, dates, fsync: bool, fresh: dict | None = None, options: dict | None = None, remember: bool = False,
) -> Path:
    """Write a month file listing ``dates``; ``fresh`` = {date: ns} written now (or, for compaction,
    when the merged day file was), the other dates keep their previous written time. ``remember``:
    kept in ``WRITTEN_TABLES`` for this process's reads (``write_parquet_remembered``)."""
    fresh = fresh or {}
    previous = {} if all(d in fresh for d in dates) else written_times(target)  # every date rewritten: nothing to keep
    written = {d.isoformat(): fresh.get(d, previous.get(d)) for d in sorted(dates)}
    metadata = dict(table.schema.metadata or {})
    metadata[DATES_KEY] = ",".join(sorted(d.isoformat() for d in dates)).encode()
    metadata[WRITTEN_KEY] = json.dumps({k: v for k, v in written.items() if v is not None}).encode()
    if remember:
        return write_parquet_remembered(table.replace_schema_metadata(metadata), target, fsync=fsync, options=options)
    return write_parquet_atomic(table.replace_schema_metadata(metadata), target, fsync=fsync, options=options)
