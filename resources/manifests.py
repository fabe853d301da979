"""The bars manifests of the TF_1 contract: an append-only download log and the coverage it implies.

* ``{base}/manifests/bars_download_manifest.jsonl``: one line per bars file written
  (``schema_version: bars_manifest.v1``, written_at, vendor, file_format, symbol, bar_size, path,
  filename, rows, columns, time_start, time_end). ``path`` is absolute; ``bar_size`` is spelled the
  IB way (``1 min``, ``1 hour``, ``1 sec``); ``vendor`` is ``IBKR`` for Interactive Brokers and our
  source name otherwise (``sim``, ``databento``). Appended under a file lock, never rewritten.
* ``{base}/bars_coverage_manifest.json`` (``bars_coverage.v1``): derived from the log, per
  (symbol, bar_size) ``total: {date_start, date_end}`` and ``days``: the best file per day
  ``{date, time_start, time_end, path, filename, rows}`` (most rows, then newest ``written_at``;
  files that no longer exist are left out). Written atomically; can always be regenerated
  (``resources.coverage_update`` keeps it current after every ingestion run).

Torn tails: a crash or a full disk in the middle of an append leaves a last line without its
newline. Readers ignore such a line; the next writer moves it to ``<file>.torn`` and truncates the
file to its last complete line before appending, so an append never glues onto a fragment.
Lines or documents with an unknown ``schema_version`` are rejected with the file and line named.
With ``ML_BACKUP_PATH`` set, both files are mirrored there after every write (``resources.mirror``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from resources.mirror import mirror_file

BARS_MANIFEST_VERSION = "bars_manifest.v1"
COVERAGE_VERSION = "bars_coverage.v1"
DOWNLOAD_MANIFEST = "bars_download_manifest.jsonl"
COVERAGE_MANIFEST = "bars_coverage_manifest.json"
MANIFEST_FIELDS = ("schema_version", "written_at", "vendor", "file_format", "symbol", "bar_size", "path", "filename", "rows", "columns", "time_start", "time_end")
DAY_FIELDS = ("date", "time_start", "time_end", "path", "filename", "rows")
TORN_SUFFIX = ".torn"
VENDOR_NAMES = {"ib": "IBKR", "ibkr": "IBKR", "tws": "IBKR"}  # other sources keep their names (sim, databento)
_BAR_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_UNITS = {
    "s": "sec", "sec": "sec", "secs": "sec", "second": "sec", "seconds": "sec",
    "m": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "h": "hour", "hour": "hour", "hours": "hour",
    "d": "day", "day": "day", "days": "day",
}


class ManifestError(ValueError):
    """A manifest line or document does not follow a known schema version."""


def manifest_dir(base_path: str | Path) -> Path:
    return Path(base_path) / "manifests"


def download_manifest_path(base_path: str | Path) -> Path:
    return manifest_dir(base_path) / DOWNLOAD_MANIFEST


def coverage_path(base_path: str | Path) -> Path:
    """``${DATA_PATH_OVERRIDE or ML_BASE_PATH}/bars_coverage_manifest.json`` (the guide's location)."""
    return Path(base_path) / COVERAGE_MANIFEST


@functools.lru_cache(maxsize=256)
def bar_size_label(bar_size: str) -> str:
    """The guide's spelling: ``1m`` / ``1min`` -> ``1 min``, ``1h`` -> ``1 hour``, ``5 mins`` -> ``5 mins``."""
    match = _BAR_SIZE.match(str(bar_size).lower())
    if not match or match.group(2) not in _UNITS:
        raise ManifestError(f"unknown bar size {bar_size!r}: expected e.g. '1 min', '1 hour', '1 sec'")
    count, unit = int(match.group(1)), _UNITS[match.group(2)]
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


@functools.lru_cache(maxsize=256)
def vendor_label(vendor: str) -> str:
    return VENDOR_NAMES.get(str(vendor).lower(), str(vendor))


# ------------------------------------------------------------------------------ JSON lines
def heal_torn_tail(path: Path) -> bytes:
    """Cut a torn last line (no trailing newline) off ``path``; keep it in ``<path>.torn``.

    Returns the fragment removed (empty when the file was whole). Call with the file's lock held.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return b""
    if size == 0:
        return b""
    with open(path, "rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return b""
        keep, chunk = 0, 65536
        position = size
        while position > 0:  # find the last newline, reading backwards
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            index = block.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            position = start
        handle.seek(keep)
        fragment = handle.read()
        with open(path.with_name(path.name + TORN_SUFFIX), "ab") as torn:
            torn.write(fragment + b"\n")
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return fragment


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock for ``path`` (a ``.<name>.lock`` file next to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def append_jsonl_healing(
    records: list[dict], target: Path, *, fsync: bool = True, base: Path | None = None, backup_path: str | Path | None = None
) -> None:
    """Append records as JSON lines in one write, under the file's lock, after healing a torn tail;
    then mirror the file to ``backup_path`` (relative to ``base``) before the lock is released."""
    if not records:
        return
    data = "".join(json.dumps(record, sort_keys=True, default=str) + "\n" for record in records).encode()
    with locked(target):
        heal_torn_tail(target)
        with open(target, "ab") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        if backup_path:
            mirror_file(target, base or target.parent, backup_path, fsync=fsync)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of a JSON-lines file; a torn last line is skipped, other bad lines raise."""
    if not path.exists():
        return
    yield from parse_jsonl_lines(path.read_text(encoding="utf-8").split("\n"), path)


def parse_jsonl_lines(lines: list[str], path: Path, first_line: int = 1) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of ``text.split("\\n")`` of a JSON-lines file (or of its part from
    line ``first_line``): an invalid last element is a line torn by a crash (no newline) and skipped."""
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        number = first_line + index
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if index == last:
                continue  # an append interrupted by a crash; the next writer moves it aside
            raise ManifestError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(record, dict):
            raise ManifestError(f"{path}:{number}: expected a JSON object")
        yield number, record


# ------------------------------------------------------------------------------ download log
def download_record(path: Path, frame: pd.DataFrame | pa.Table, *, vendor: str, symbol: str, bar_size: str, time_column: str = "ts") -> dict:
    """The ``bars_manifest.v1`` line of one bars file (pure); ``frame``: its rows, as pandas or Arrow."""
    if isinstance(frame, pa.Table):
        columns = frame.column_names
        span = _utc_span_of_arrow(frame.column(time_column))
        if span is None:
            span = _utc_span(frame.column(time_column).to_pandas())
    else:
        columns = frame.columns
        span = _utc_span(frame[time_column])
    path = Path(path).absolute()
    return {
        "schema_version": BARS_MANIFEST_VERSION,
        "written_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "vendor": vendor_label(vendor),
        "file_format": path.suffix.lstrip(".") or "parquet",
        "symbol": symbol,
        "bar_size": bar_size_label(bar_size),
        "path": str(path),
        "filename": path.name,
        "rows": int(len(frame)),
        "columns": list(map(str, columns)),
        "time_start": span[0].isoformat() if span else None,
        "time_end": span[1].isoformat() if span else None,
    }


def _utc_span(column: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(first, last) time of a column of times as UTC; None when it has no rows."""
    if not len(column):
        return None
    times = _utc_times(column)
    return times.min(), times.max()


def _utc_span_of_arrow(column: pa.ChunkedArray) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(first, last) time of a UTC timestamp column with rows and no nulls, from Arrow (what our raw
    batches are; no pandas conversion); None for anything else (the caller converts)."""
    kind = column.type
    if not (pa.types.is_timestamp(kind) and kind.tz in ("UTC", "+00:00")) or len(column) == 0 or column.null_count:
        return None
    bounds = pa.compute.min_max(column)
    return tuple(pd.Timestamp(bounds[end].cast(pa.int64()).as_py(), unit=kind.unit, tz="UTC") for end in ("min", "max"))


def _utc_times(column: pd.Series) -> pd.Series:
    """``column`` as UTC times: already UTC (our raw batches) as is, anything else converted."""
    if isinstance(column.dtype, pd.DatetimeTZDtype) and str(column.dtype.tz) == "UTC":
        return column
    return pd.to_datetime(column, utc=True)


def _is_clean_absolute(path: str) -> bool:
    """Whether ``str(Path(path)) == path`` for an absolute POSIX path (no repeated slash, no ``.``
    part, no trailing slash), so the path needs no parsing."""
    return path.startswith("/") and "//" not in path and "/./" not in path and not path.endswith(("/", "/."))


def _normalized(record: dict, base: Path) -> dict:
    """Lines written before the contract spellings (relative path, ``1m``, ``ib``) read as today's."""
    raw = record["path"]
    if _is_clean_absolute(raw):
        path = raw  # what Path would give back (the common case: we write absolute paths)
    else:
        parsed = Path(raw)
        path = str(parsed if parsed.is_absolute() else (base / parsed).absolute())
    return {
        **record,
        "path": path,
        "bar_size": bar_size_label(record["bar_size"]),
        "vendor": vendor_label(record["vendor"]),
    }


def read_download_manifest(path: Path) -> list[dict]:
    """Every record of the log; a torn last line (crash mid-append) is ignored, anything else invalid raises."""
    path = Path(path)
    if not path.exists():
        return []
    base = path.absolute().parent.parent  # {base}/manifests/bars_download_manifest.jsonl
    return parse_download_lines(path.read_text(encoding="utf-8").split("\n"), path, first_line=1, base=base)


def parse_download_lines(lines: list[str], path: Path, *, first_line: int, base: Path) -> list[dict]:
    """The download records of the log's lines from ``first_line`` on (``text.split("\\n")``), in
    today's spellings; an unknown ``schema_version`` or a missing field raises, naming the line."""
    records = []
    for number, record in parse_jsonl_lines(lines, path, first_line):
        version = record.get("schema_version")
        if version != BARS_MANIFEST_VERSION:
            raise ManifestError(f"{path}:{number}: unknown schema_version {version!r} (supported: {BARS_MANIFEST_VERSION})")
        missing = [f for f in MANIFEST_FIELDS if f not in record]
        if missing:
            raise ManifestError(f"{path}:{number}: missing fields {missing}")
        try:
            records.append(_normalized(record, base))
        except ManifestError as error:
            raise ManifestError(f"{path}:{number}: {error}") from None
    return records


# ------------------------------------------------------------------------------ coverage
_UTC_SUFFIXES = ("+00:00", "Z")


def utc_date(stamp: str) -> str:
    if stamp.endswith(_UTC_SUFFIXES) and len(stamp) > 10 and stamp[10] == "T":
        return dt.date.fromisoformat(stamp[:10]).isoformat()  # already UTC (what we write): its own date
    ts = pd.Timestamp(stamp)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts).date().isoformat()


def build_coverage(records: list[dict], exists: Callable[[str], bool] | None = None) -> dict:
    """The ``bars_coverage.v1`` document from download records (pure unless ``exists`` looks at files).

    Per (symbol, bar_size): the best file per day (most rows, then newest ``written_at``) among the
    records whose file ``exists`` (all when ``exists`` is None); the day is ``time_start``'s UTC date.
    """
    best: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        if record["time_start"] is None or (exists is not None and not exists(record["path"])):
            continue
        day = utc_date(record["time_start"])
        days = best.setdefault((record["symbol"], record["bar_size"]), {})
        current = days.get(day)
        if current is None or (record["rows"], record["written_at"]) > (current["rows"], current["written_at"]):
            days[day] = record
    entries = [
        coverage_entry(symbol, bar_size, {day: day_entry(day, record) for day, record in days.items()})
        for (symbol, bar_size), days in sorted(best.items())
    ]
    return {"schema_version": COVERAGE_VERSION, "generated_at": pd.Timestamp.now(tz="UTC").isoformat(), "entries": entries}


def day_entry(day: str, record: dict) -> dict:
    """A coverage ``days`` item: the day and its best file's fields (from its download record)."""
    return {"date": day, **{k: record[k] for k in DAY_FIELDS[1:]}}


def coverage_entry(symbol: str, bar_size: str, days: dict[str, dict]) -> dict:
    """A coverage entry from its ``days`` items keyed by date (any order)."""
    ordered = sorted(days)
    return {
        "symbol": symbol,
        "bar_size": bar_size,
        "total": {"date_start": ordered[0], "date_end": ordered[-1]},
        "days": [days[day] for day in ordered],
    }


def read_coverage(path: Path) -> dict:
    """The coverage document; an unknown ``schema_version`` is rejected (the guide's gate)."""
    try:
        document = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != COVERAGE_VERSION:
        raise ManifestError(f"{path}: unknown schema_version {version!r} (supported: {COVERAGE_VERSION})")
    return document
