"""The lake's table layout lock across real processes: writer-preferring, and re-entrant for a
process that already reads the table (a nested read never waits behind a writer that waits for it).

Each test forks real processes holding real ``flock`` locks on a temp table folder.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from resources.atomic import LockTimeoutError
from resources.lake import GATE_FILE, layout_lock

FORK = multiprocessing.get_context("fork")


def _hold_exclusive(table_dir: str, acquired, release, go=None) -> None:
    if go is not None:  # forked before the parent took its lock: it holds no copy of that lock
        go.wait(60)
    with layout_lock(Path(table_dir), shared=False, timeout=60):
        acquired.set()
        release.wait(60)


def _hold_shared(table_dir: str, acquired, release) -> None:
    with layout_lock(Path(table_dir), shared=True, timeout=60):
        acquired.set()
        release.wait(60)


def _wait_until_gate_closed(table_dir: Path, deadline_s: float = 30.0) -> None:
    """Return once some process holds the table's gate exclusively (a writer is waiting)."""
    fd = os.open(table_dir / GATE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                return
            time.sleep(0.005)
        raise AssertionError("no writer closed the gate")
    finally:
        os.close(fd)


@pytest.fixture
def table_dir(tmp_path) -> Path:
    folder = tmp_path / "lake" / "curated_bars"
    folder.mkdir(parents=True)
    return folder


def _assert_a_fresh_reader_queues_behind_a_waiting_writer(table_dir: Path) -> None:
    """A reader process inside, a writer process waiting: a fresh shared lock here is refused at
    the gate, and the writer gets in once the reader inside leaves."""
    reader_in, reader_out = FORK.Event(), FORK.Event()
    reader = FORK.Process(target=_hold_shared, args=(str(table_dir), reader_in, reader_out))
    reader.start()
    assert reader_in.wait(30)
    writer_in, writer_out = FORK.Event(), FORK.Event()
    writer = FORK.Process(target=_hold_exclusive, args=(str(table_dir), writer_in, writer_out))
    writer.start()
    try:
        _wait_until_gate_closed(table_dir)
        with pytest.raises(LockTimeoutError):  # a fresh reader waits at the gate
            with layout_lock(table_dir, shared=True, timeout=0.3):
                pass
        assert not writer_in.is_set()
        reader_out.set()
        assert writer_in.wait(30), "the writer got the lock once the reader inside left"
    finally:
        reader_out.set()
        writer_out.set()
        for process in (reader, writer):
            process.join(30)
    assert writer.exitcode == 0 and reader.exitcode == 0


def test_a_new_reader_queues_behind_a_waiting_writer(table_dir):
    _assert_a_fresh_reader_queues_behind_a_waiting_writer(table_dir)


def test_a_process_reading_a_table_reads_it_again_past_a_waiting_writer(table_dir):
    writer_in, writer_out, go = FORK.Event(), FORK.Event(), FORK.Event()
    writer = FORK.Process(target=_hold_exclusive, args=(str(table_dir), writer_in, writer_out, go))
    writer.start()
    with layout_lock(table_dir, shared=True, timeout=5):
        go.set()
        try:
            _wait_until_gate_closed(table_dir)
            with layout_lock(table_dir, shared=True, timeout=0.3):  # nested: no wait at the gate
                with layout_lock(table_dir, shared=True, timeout=0.3):
                    assert not writer_in.is_set(), "the writer must not get in while readers hold the table"
        except BaseException:
            writer_out.set()
            writer.join(30)
            raise
    assert writer_in.wait(30), "the writer got the lock once every nested hold was released"
    writer_out.set()
    writer.join(30)
    assert writer.exitcode == 0
    # the holds were counted down: a fresh shared lock queues behind a waiting writer again
    _assert_a_fresh_reader_queues_behind_a_waiting_writer(table_dir)


def test_a_forked_child_does_not_inherit_its_parents_reads(table_dir):
    """A child forked while its parent reads the table is a new reader: it queues at the gate."""
    writer_in, writer_out, go = FORK.Event(), FORK.Event(), FORK.Event()
    writer = FORK.Process(target=_hold_exclusive, args=(str(table_dir), writer_in, writer_out, go))
    writer.start()
    with layout_lock(table_dir, shared=True, timeout=5):
        go.set()
        _wait_until_gate_closed(table_dir)
        child_in, child_out = FORK.Event(), FORK.Event()
        child = FORK.Process(target=_hold_shared, args=(str(table_dir), child_in, child_out))
        child.start()
        try:
            assert not child_in.wait(0.5), "the forked child passed the gate as if it were its parent"
        finally:
            child_out.set()
    assert writer_in.wait(30)
    writer_out.set()
    for process in (writer, child):
        process.join(30)
    assert writer.exitcode == 0 and child.exitcode == 0
