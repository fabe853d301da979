"""The coverage manifest refreshed from the lines logged since its last build equals the full rebuild."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import resources.coverage_update as coverage_update
from resources.coverage_update import rebuild_coverage_file, state_path, update_coverage_file
from resources.manifests import (
    BARS_MANIFEST_VERSION,
    append_jsonl_healing,
    build_coverage,
    coverage_path,
    download_manifest_path,
    read_coverage,
    read_download_manifest,
)


def _record(base: Path, symbol: str, day: str, rows: int, written_at: str, name: str, bar_size: str = "1 min") -> dict:
    path = base / "lake" / symbol / day / name
    return {
        "schema_version": BARS_MANIFEST_VERSION, "written_at": written_at, "vendor": "sim", "file_format": "parquet",
        "symbol": symbol, "bar_size": bar_size, "path": str(path), "filename": path.name, "rows": rows, "columns": ["ts"],
        "time_start": f"{day}T14:30:00+00:00", "time_end": f"{day}T20:59:00+00:00",
    }


def _touch(record: dict) -> None:
    Path(record["path"]).parent.mkdir(parents=True, exist_ok=True)
    Path(record["path"]).touch()


def _entries(document: dict) -> list:
    return document["entries"]


def _full(base: Path) -> list:
    return build_coverage(read_download_manifest(download_manifest_path(base)), exists=os.path.exists)["entries"]


@pytest.fixture
def full_rebuilds(monkeypatch):
    """How many times the whole log was re-derived."""
    calls = []
    real = coverage_update.full_rebuild
    monkeypatch.setattr(coverage_update, "full_rebuild", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_merging_new_lines_equals_the_full_rebuild_on_random_logs(tmp_path, full_rebuilds):
    rng = random.Random(20)
    base = tmp_path / "data"
    log = download_manifest_path(base)
    symbols, days = ["AAPL", "MSFT", "BRK.B"], [f"2024-12-{d:02d}" for d in range(2, 20)]
    written, merged_runs = [], 0
    for run in range(40):
        batch = []
        for index in range(rng.randint(0, 6)):
            record = _record(base, rng.choice(symbols), rng.choice(days), rng.randint(385, 392),
                             f"2026-11-27T{run:02d}:{index:02d}:{rng.randint(0, 59):02d}+00:00", f"batch-{run}-{index}.parquet",
                             bar_size=rng.choice(["1 min", "1 min", "1 hour"]))
            if rng.random() > 0.1:  # some logged files never made it to disk
                _touch(record)
            batch.append(record)
        append_jsonl_healing(batch, log, fsync=False)
        written += batch
        if written and rng.random() < 0.15:  # a file the document may name is quarantined or deleted
            gone = Path(rng.choice(written)["path"])
            gone.unlink(missing_ok=True)
        before = len(full_rebuilds)
        document = update_coverage_file(base, fsync=False)
        merged_runs += len(full_rebuilds) == before
        assert _entries(document) == _full(base), run
        assert _entries(read_coverage(coverage_path(base))) == _entries(document)
    assert merged_runs >= 20  # most refreshes merged (ties on rows, vanished files and the first build rebuild in full)


def test_a_daily_refresh_reads_only_the_new_lines(tmp_path, full_rebuilds):
    base = tmp_path / "data"
    log = download_manifest_path(base)
    history = [_record(base, f"S{s}", f"2024-11-{d:02d}", 390, "2026-11-26T00:00:00+00:00", "a.parquet") for s in range(5) for d in range(1, 29)]
    for record in history:
        _touch(record)
    append_jsonl_healing(history, log, fsync=False)
    update_coverage_file(base, fsync=False)
    assert len(full_rebuilds) == 1  # the first build reads everything
    state = json.loads(state_path(base).read_text())
    assert state["log"]["offset"] == log.stat().st_size and state["log"]["lines"] == len(history)

    today = [_record(base, f"S{s}", "2024-11-29", 390, "2026-11-27T00:00:00+00:00", "a.parquet") for s in range(5)]
    for record in today:
        _touch(record)
    append_jsonl_healing(today, log, fsync=False)
    document = update_coverage_file(base, fsync=False)
    assert len(full_rebuilds) == 1
    assert [e["total"]["date_end"] for e in document["entries"]] == ["2024-11-29"] * 5
    assert _entries(document) == _full(base)
    assert json.loads(state_path(base).read_text())["log"]["lines"] == len(history) + len(today)


@pytest.mark.parametrize("change", ["document_rewritten", "log_replaced", "log_truncated", "state_corrupt", "torn_tail", "file_gone", "tie"])
def test_the_refresh_rebuilds_in_full_when_a_merge_could_differ(tmp_path, full_rebuilds, change):
    base = tmp_path / "data"
    log, document_path = download_manifest_path(base), coverage_path(base)
    first = [_record(base, "AAPL", f"2024-12-0{d}", 390, "2026-11-27T00:00:00+00:00", "a.parquet") for d in (2, 3, 4)]
    for record in first:
        _touch(record)
    append_jsonl_healing(first, log, fsync=False)
    rebuild_coverage_file(base, fsync=False)  # what `mdp build-bars-coverage` runs also records the position
    calls = len(full_rebuilds)
    extra = _record(base, "AAPL", "2024-12-05", 390, "2026-11-27T01:00:00+00:00", "b.parquet")
    _touch(extra)
    if change == "document_rewritten":  # another tool wrote the document: it is not the one the state describes
        document_path.write_text(json.dumps({**read_coverage(document_path), "entries": []}))
        append_jsonl_healing([extra], log, fsync=False)
    elif change == "log_replaced":  # a log restored from elsewhere (new file, same length)
        text = log.read_text().replace("2024-12-02", "2024-12-06")
        log.unlink()
        Path(first[0]["path"].replace("2024-12-02", "2024-12-06")).parent.mkdir(parents=True)
        Path(first[0]["path"].replace("2024-12-02", "2024-12-06")).touch()
        log.write_text(text)
    elif change == "log_truncated":
        log.write_text("".join(json.dumps(r) + "\n" for r in first[:1]))
    elif change == "state_corrupt":
        state_path(base).write_text("{not json")
        append_jsonl_healing([extra], log, fsync=False)
    elif change == "torn_tail":  # a complete record without its newline: the full rebuild reads it
        with open(log, "a") as handle:
            handle.write(json.dumps(extra))
    elif change == "file_gone":
        Path(first[1]["path"]).unlink()
    elif change == "tie":  # a corrected delivery with as many rows: written_at decides, which the document lacks
        twin = _record(base, "AAPL", "2024-12-03", 390, "2026-11-27T02:00:00+00:00", "c.parquet")
        _touch(twin)
        append_jsonl_healing([twin], log, fsync=False)
    document = update_coverage_file(base, fsync=False)
    assert len(full_rebuilds) == calls + 1
    assert _entries(document) == _full(base) and _entries(read_coverage(document_path)) == _entries(document)
    # the next refresh merges again (after a torn tail, once the next append has moved it aside)
    later = _record(base, "AAPL", "2024-12-09", 390, "2026-11-27T03:00:00+00:00", "d.parquet")
    _touch(later)
    append_jsonl_healing([later], log, fsync=False)
    assert _entries(update_coverage_file(base, fsync=False)) == _full(base)
    assert len(full_rebuilds) == calls + 1 + (change == "torn_tail")
    last = _record(base, "AAPL", "2024-12-10", 390, "2026-11-27T04:00:00+00:00", "e.parquet")
    _touch(last)
    append_jsonl_healing([last], log, fsync=False)
    assert _entries(update_coverage_file(base, fsync=False)) == _full(base)
    assert len(full_rebuilds) == calls + 1 + (change == "torn_tail")


def test_nothing_new_leaves_the_document_as_it_is(tmp_path, full_rebuilds):
    base = tmp_path / "data"
    record = _record(base, "AAPL", "2024-12-02", 390, "2026-11-27T00:00:00+00:00", "a.parquet")
    _touch(record)
    append_jsonl_healing([record], download_manifest_path(base), fsync=False)
    first = update_coverage_file(base, fsync=False)
    stamp = coverage_path(base).stat().st_mtime_ns
    assert update_coverage_file(base, fsync=False) == first and coverage_path(base).stat().st_mtime_ns == stamp
    assert len(full_rebuilds) == 1


def test_an_invalid_new_line_is_named_with_its_line_number(tmp_path):
    base = tmp_path / "data"
    log = download_manifest_path(base)
    record = _record(base, "AAPL", "2024-12-02", 390, "2026-11-27T00:00:00+00:00", "a.parquet")
    _touch(record)
    append_jsonl_healing([record, record], log, fsync=False)
    update_coverage_file(base, fsync=False)
    append_jsonl_healing([{**record, "schema_version": "bars_manifest.v9"}], log, fsync=False)
    with pytest.raises(ValueError, match=r"bars_download_manifest.jsonl:3: unknown schema_version"):
        update_coverage_file(base, fsync=False)


def _writer(base: str, name: str, rounds: int) -> None:
    """A process appending its own records and refreshing the coverage after each append."""
    base_path = Path(base)
    log = download_manifest_path(base_path)
    for run in range(rounds):
        batch = [_record(base_path, f"{name}{s}", f"2024-12-{d:02d}", 380 + run, f"2026-11-27T00:{run:02d}:00+00:00", f"{name}-{run}.parquet")
                 for s in range(3) for d in (2, 3, 4)]
        for record in batch:
            _touch(record)
        append_jsonl_healing(batch, log, fsync=False)
        update_coverage_file(base_path, fsync=False)


def test_concurrent_writers_and_a_writer_killed_mid_refresh_leave_the_full_rebuilds_document(tmp_path):
    """Two processes append and refresh at once while a third is SIGKILLed at a random point of its
    own loop (possibly inside a refresh): the next refresh gives exactly the full rebuild's document."""
    import multiprocessing
    import signal
    import time

    base = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(base), name, 25)) for name in ("A", "B")]
    victim = context.Process(target=_writer, args=(str(base), "K", 10_000))
    for process in (*writers, victim):
        process.start()
    time.sleep(random.Random(7).uniform(2.0, 3.0))
    os.kill(victim.pid, signal.SIGKILL)
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    document = update_coverage_file(base, fsync=False)
    assert _entries(document) == _full(base)
    symbols = {entry["symbol"] for entry in document["entries"]}
    assert {"A0", "A1", "A2", "B0", "B1", "B2"} <= symbols and "K0" in symbols  # the killed writer had refreshed before
    assert all(day["rows"] == 380 + 24 for entry in document["entries"] if entry["symbol"][0] in "AB" for day in entry["days"])
