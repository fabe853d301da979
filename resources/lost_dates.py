"""Dates a derived table lost when one of its files was quarantined, kept until a step re-computes them.

A corrupt month file holds up to ~23 dates of one (table, symbol). Whoever finds it (a writer
replacing some of its dates, a reader, the completeness check) moves it aside whole
(``ParquetLake.quarantine_file``), so every date it held leaves the lake, including dates the
current run was not asked to compute, which Dagster still shows as materialized. The lake records
each such loss here; the step that owns the table (``platform_assets.symbol_days.SymbolDayStep``
with ``heals=``, an ingestion asset's DQ recorder through ``platform_assets.quality.heal``) takes
the records of its tables and re-computes those dates; anyone else's run reports them as failing
their asset's completeness check (``platform_assets.lake_status``).

The records are a journal in the lake, ``lake/quarantine/lost_dates/``, one small JSON file per
quarantined file, written atomically: a loss found outside any run (the HTTP service answering a
request, ``get_curated_bars`` in a training script, the compaction command) is still there for
the next run of the owning asset to heal, or for the lake status audit to report, whichever
process that is. Taking a record claims its file (a rename to ``<name>.claimed-<pid>`` succeeds
for one taker only, so two runs never both re-compute it); the taker removes it once the dates are
re-computed or reported (``settle``) or puts it back when it failed (``release``; ``hand_back`` when the owner's re-computation failed:
then no reporting step of that process takes it, it waits for the owner's next run), and a claim whose
process is gone (SIGKILL mid-heal) is put back by the next reader: a crash never loses a record. A step reporting losses of tables it does not own takes only the
records its own process made (``mine_only``), leaving the others for their owner to heal.

``dates`` is what the file's footer listed; ``None`` when the footer itself did not read (a torn
file): the step then asks Dagster which of the month's dates were materialized.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from resources.atomic import TMP_PREFIX, _pid_alive, atomic_write

JOURNAL_DIR = Path("quarantine") / "lost_dates"  # under the lake root
_SUFFIX = ".json"
_BAD = ".bad"
_CLAIM = ".claimed-"
_CLAIMS: dict["LostDates", Path] = {}  # this process's claimed records -> their claim files
_LOG = logging.getLogger(__name__)
_PROCESS = uuid.uuid4().hex[:12]  # names this process's records (a pid can be reused)
OWNER_TOKEN = "ownerfailed0"  # a record its owner could not re-compute: no process's own (``hand_back``)


@dataclass(frozen=True)
class LostDates:
    """Dates of (table, symbol) that left the lake with the file moved to ``moved_to``."""

    table: str  # str(lake Table), e.g. "curated_bars" or "features/bar_features/version=v1"
    symbol: str
    month: str  # YYYY-MM of the file
    dates: frozenset[dt.date] | None  # None: the file's footer did not say
    moved_to: str

    def to_json(self) -> str:
        dates = None if self.dates is None else sorted(day.isoformat() for day in self.dates)
        return json.dumps({"table": self.table, "symbol": self.symbol, "month": self.month, "dates": dates, "moved_to": self.moved_to})

    @classmethod
    def from_json(cls, text: str) -> "LostDates":
        data = json.loads(text)
        dates = None if data["dates"] is None else frozenset(dt.date.fromisoformat(day) for day in data["dates"])
        return cls(str(data["table"]), str(data["symbol"]), str(data["month"]), dates, str(data["moved_to"]))


def journal_dir(root: str | Path) -> Path:
    return Path(root) / JOURNAL_DIR


def record(root: str | Path, lost: LostDates) -> Path:
    """Add ``lost`` to the journal of the lake at ``root`` (atomic: a reader never sees half a record)."""
    folder = journal_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{time.time_ns():020d}-{_PROCESS}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
    return atomic_write(target, lambda tmp: tmp.write_text(lost.to_json()), sweep=False)


def pending(root: str | Path) -> list[LostDates]:
    """The journal's records, oldest first, without taking them, also those a live taker is
    re-computing now (for status answers and the DQ gate)."""
    return [lost for _, lost in _records(journal_dir(root), claimed=True)]


def take(
    root: str | Path, tables: Iterable[str] | None = None, symbols: Iterable[str] | None = None, *, mine_only: bool = False,
    where: Callable[[LostDates], bool] | None = None,
) -> list[LostDates]:
    """Claim and return the records of ``tables`` and ``symbols`` (all when None) under ``root``,
    oldest first (``mine_only``: only those this process recorded; ``where``: only those it
    accepts); a record another process took first is not returned. ``settle`` them when done."""
    tables = None if tables is None else set(tables)
    symbols = None if symbols is None else set(symbols)
    taken = []
    for path, lost in _records(journal_dir(root)):
        if mine_only and path.name.split("-")[1] != _PROCESS:
            continue
        if (tables is None or lost.table in tables) and (symbols is None or lost.symbol in symbols) and (where is None or where(lost)):
            claim = path.with_name(f"{path.name}{_CLAIM}{os.getpid()}")
            try:
                os.rename(path, claim)
            except FileNotFoundError:
                continue  # another taker's
            _CLAIMS[lost] = claim
            taken.append(lost)
    return taken


@contextlib.contextmanager
def taking(root: str | Path, tables: Iterable[str] | None = None, symbols: Iterable[str] | None = None, **options) -> Iterator[list[LostDates]]:
    """``take`` for a block that re-computes or reports the records: settled when the block ends,
    released when it raises (and put back by the next reader if its process dies in it)."""
    losses = take(root, tables, symbols, **options)
    try:
        yield losses
    except BaseException:
        release(losses)
        raise
    settle(losses)


def settle(losses: Iterable[LostDates]) -> None:
    """The taker re-computed (or reported) ``losses``: their records leave the journal."""
    for lost in losses:
        claim = _CLAIMS.pop(lost, None)
        if claim is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)


def release(losses: Iterable[LostDates]) -> None:
    """The taker could not finish: ``losses`` go back to the journal for the next taker."""
    for lost in losses:
        claim = _CLAIMS.pop(lost, None)
        if claim is not None:
            with contextlib.suppress(FileNotFoundError):
                os.rename(claim, claim.with_name(claim.name.split(_CLAIM)[0]))


def hand_back(losses: Iterable[LostDates]) -> None:
    """The owning step failed to re-compute ``losses``: back to the journal as no process's record,
    so a reporting step of the same process (``mine_only``) leaves them to the owner's next run."""
    for lost in losses:
        claim = _CLAIMS.pop(lost, None)
        if claim is not None:
            stamp, _, rest = claim.name.split(_CLAIM)[0].split("-", 2)
            with contextlib.suppress(FileNotFoundError):
                os.rename(claim, claim.with_name(f"{stamp}-{OWNER_TOKEN}-{rest}"))


def _restore_dead_claims(folder: Path, names: list[str]) -> None:
    """Claims of processes that are gone (killed while re-computing) go back to the journal."""
    for name in names:
        if _CLAIM in name:
            pid = name.rsplit(_CLAIM, 1)[1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(folder / name, folder / name.split(_CLAIM)[0])


def _records(folder: Path, claimed: bool = False) -> list[tuple[Path, LostDates]]:
    try:
        listed = os.listdir(folder)
    except FileNotFoundError:
        return []
    if any(_CLAIM in name for name in listed):
        _restore_dead_claims(folder, listed)
        listed = os.listdir(folder)
    names = sorted(
        name for name in listed
        if (name.endswith(_SUFFIX) or (claimed and _CLAIM in name and name.split(_CLAIM)[0].endswith(_SUFFIX))) and not name.startswith(TMP_PREFIX)
    )
    out = []
    for name in names:
        path = folder / name
        try:
            out.append((path, LostDates.from_json(path.read_text())))
        except FileNotFoundError:
            continue  # taken meanwhile
        except (ValueError, KeyError, TypeError) as error:  # not ours to delete: set aside, keep going
            _LOG.error("lost-dates record %s does not read (%s); moved to %s%s (the lake status audit fails while it is there)", path, error, path, _BAD)
            try:
                os.replace(path, path.with_name(path.name + _BAD))
            except FileNotFoundError:
                continue  # another reader set it aside first
    return out


def unreadable(root: str | Path) -> list[Path]:
    """Records set aside because they did not read: their losses are unknown (the audit fails)."""
    try:
        return sorted(journal_dir(root) / name for name in os.listdir(journal_dir(root)) if name.endswith(_SUFFIX + _BAD))
    except FileNotFoundError:
        return []
