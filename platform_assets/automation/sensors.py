"""Sensors: new L2 snapshot files (live capture) -> the L2-derived partitions of that day.

``l2_snapshot_files_sensor`` watches ``{base}/{LEVEL2_DIRNAME}/{SYMBOL}/`` for
``{YYYY-MM-DD}_snapshots_{HHMMSS}.parquet`` files newer than its cursor and requests
``l2_features`` for that (date, symbol), and ``aligned_bars`` once the day's curated bars exist. The sensor follows files that no
asset owns (live capture); a file an asset run wrote is the automation condition's business, so
the two never request the same work: a file is skipped when

* the day's L2 features are already newer than the file (the same run computed them), or
* an L2 snapshot asset (``l2_snapshots_sim``, ``l2_snapshots_databento``) recorded a
  materialization of that date at or after the file's time (the asset wrote it; its downstream
  follows through automation), or a run that planned that date of such an asset is still going.

Run keys are per (symbol, date, file mtime): a re-evaluated tick never launches the same work twice.
The cursor looks ``CURSOR_LAG_NS`` back from the newest file it saw (remembering the files of that
window), so a file that appears with an older mtime than one already seen is not skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from platform_assets.calendars import STOCKS, is_session
from platform_assets.features.assets import l2_features
from platform_assets.alignment.assets import aligned_bars
from platform_assets.partitions import SYMBOLS_TAG, stock_date_partitions
from platform_assets.universe import tracked_symbols
from resources.lake import CURATED_BARS, ParquetLake, feature_table
from resources.settings import get_settings

CURSOR_LAG_NS = 120 * 1_000_000_000
"""How far before the newest file seen a tick looks again: a file renamed into place after a later
one was seen keeps its older mtime (two recorders flushing at once); the cursor remembers the files
of that window (path -> mtime), so each is requested once per version, and none is skipped for good."""
SNAPSHOT_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})_snapshots_[0-9A-Za-z]+\.parquet$")
L2_DERIVED_JOB = "l2_derived"

l2_derived_job = dg.define_asset_job(
    name=L2_DERIVED_JOB,
    selection=dg.AssetSelection.assets(l2_features, aligned_bars),
    partitions_def=stock_date_partitions,
    description="L2-derived partitions (L2 features, aligned bars) of one day, requested by the L2 file sensor.",
)


@dataclass(frozen=True)
class NewSnapshotFile:
    symbol: str
    day: dt.date
    path: Path
    mtime_ns: int


def find_new_snapshot_files(level2: Path, since_ns: int, symbols: set[str]) -> list[NewSnapshotFile]:
    """Snapshot files of tracked symbols modified or moved into place (the later of mtime and ctime)
    after ``since_ns``, oldest first."""
    found = []
    try:
        symbol_dirs = [e for e in os.scandir(level2) if e.is_dir() and e.name in symbols]
    except FileNotFoundError:
        return []
    for symbol_dir in symbol_dirs:
        for entry in os.scandir(symbol_dir.path):
            match = SNAPSHOT_FILE.match(entry.name)
            if not match:
                continue
            status = entry.stat()
            mtime = max(status.st_mtime_ns, status.st_ctime_ns)  # a rename sets ctime: a file moved into place is new
            if mtime > since_ns:
                found.append(NewSnapshotFile(symbol_dir.name, dt.date.fromisoformat(match.group(1)), Path(entry.path), mtime))
    return sorted(found, key=lambda f: (f.mtime_ns, f.symbol))


def _features_newer_than(lake: ParquetLake, file: NewSnapshotFile) -> bool:
    written = lake.written_ns(feature_table("l2_features", "v1"), file.symbol, file.day)  # per date, even in a month file
    return written is not None and written >= file.mtime_ns


def _derived_assets_for(lake: ParquetLake, file: NewSnapshotFile) -> list[dg.AssetKey]:
    """``l2_features`` always; ``aligned_bars`` only once the day's curated bars exist (during live
    capture they do not: the run would fail for lack of input every minute of the session, and the
    automation condition builds the aligned bars when the curated ones land)."""
    with_bars = lake.has_partition(CURATED_BARS, file.symbol, file.day)
    return [l2_features.key, *([aligned_bars.key] if with_bars else [])]


L2_SNAPSHOT_ASSETS = (dg.AssetKey("l2_snapshots_sim"), dg.AssetKey("l2_snapshots_databento"))


def _written_by_asset_run(instance: dg.DagsterInstance, file: NewSnapshotFile) -> bool:
    """Whether an L2 snapshot asset wrote (or is writing) this file's date."""
    partition = file.day.isoformat()
    file_time = file.mtime_ns / 1e9
    for key in L2_SNAPSHOT_ASSETS:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
        if records and records[0].timestamp >= file_time - 1.0:
            return True
        attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
        if partition in attempts:
            run = instance.get_run_by_id(attempts[partition][0])
            if run is not None and not run.is_finished:
                return True
    return False


def l2_sensor_requests(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.RunRequest], str, list[str]]:
    """(run requests, new cursor, skipped reasons) for the files that appeared since ``cursor``."""
    settings = get_settings()
    state = json.loads(cursor) if cursor else {}
    since, recent = int(state.get("mtime_ns", 0)), dict(state.get("recent", {}))
    found = find_new_snapshot_files(Path(settings.level2_path), max(0, since - CURSOR_LAG_NS), set(tracked_symbols(instance, STOCKS)))
    files = [f for f in found if recent.get(str(f.path)) != f.mtime_ns]  # within the lag: only files not seen as they are
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    requests, skipped, seen = [], [], set()
    for file in files:
        key = (file.symbol, file.day)
        if key in seen:
            continue
        if not is_session(STOCKS, file.day):
            skipped.append(f"{file.path.name}: {file.day} is not a session")
            continue
        if _features_newer_than(lake, file):
            skipped.append(f"{file.symbol}/{file.path.name}: L2 features already newer")
            continue
        if _written_by_asset_run(instance, file):
            skipped.append(f"{file.symbol}/{file.path.name}: written by an L2 snapshot asset run (automation follows it)")
            continue
        seen.add(key)
        requests.append(
            dg.RunRequest(
                run_key=f"l2-{file.symbol}-{file.day.isoformat()}-{file.mtime_ns}",
                partition_key=file.day.isoformat(),
                tags={SYMBOLS_TAG: file.symbol, "platform/trigger": "l2_snapshot_file"},
                asset_selection=_derived_assets_for(lake, file),
            )
        )
    newest = max([since] + [f.mtime_ns for f in files])
    recent.update({str(f.path): f.mtime_ns for f in files})
    recent = {path: mtime for path, mtime in recent.items() if mtime > newest - CURSOR_LAG_NS}
    return requests, json.dumps({"mtime_ns": newest, "recent": recent}), skipped


@dg.sensor(
    job=l2_derived_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New L2 snapshot files under level2/{SYMBOL}/ -> L2 features and aligned bars of that day and symbol.",
)
def l2_snapshot_files_sensor(context: dg.SensorEvaluationContext):
    requests, cursor, skipped = l2_sensor_requests(context.instance, context.cursor)
    for reason in skipped[:20]:
        context.log.info(f"skipped {reason}")
    context.update_cursor(cursor)
    if not requests:
        return dg.SkipReason(f"no new snapshot files ({len(skipped)} skipped)")
    return requests


# The automation conditions of every asset (derived date partitions follow their inputs; a newly
# tracked symbol's history is filled), evaluated by the daemon under `make ui` / `dagster dev`.
# Declared here, RUNNING by default, instead of relying on Dagster's implicit default sensor.
platform_automation_sensor = dg.AutomationConditionSensorDefinition(
    "platform_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags={"platform/trigger": "automation"},
    description="Runs every asset's automation condition: derived dates follow new inputs, new symbols get their history.",
)

SENSORS = [l2_snapshot_files_sensor, platform_automation_sensor]
