"""Dagster status for lake data that went missing outside the runs that judged it.

A date's ``symbols_complete`` evaluation is made when a run writes it. Data can leave the lake
later, and Dagster would go on showing the date complete:

* **A quarantined file no step re-computed.** The step that owns a table re-computes the dates it
  loses (``SymbolDayStep(heals=...)``). A loss found by anyone else (a downstream step reading its
  input, the compaction job merging a corrupt day file) is reported by ``report_lost_dates``: each
  lost (asset, date) gets a failing evaluation (ERROR) naming the symbol and the quarantined file.
* **Files removed by hand (or by a disk fault).** ``audit_stored_partitions`` (the
  ``lake_status_audit_job``, scheduled daily) looks at every date whose latest evaluation passed
  and fails it again, naming the tracked symbols whose data is no longer stored: the derived
  symbol-day tables, every source's raw batches and the offline source's L2 day files (which no
  run can re-compute: a re-ingest of the date stores them again).

Either way the date stays red until a re-run stores it again (its next evaluation passes).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import dagster as dg

from platform_assets.check_targets import targeting
from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.partitions import market_of_asset, materialized_dates
from platform_assets.quality.checks import is_blocked
from platform_assets.symbol_days import COMPLETE_CHECK, listing
from platform_assets.universe import detect_asset_type, tracked_symbols
from resources.l2_store import L2SnapshotStore
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake, Table, decodable_rows, feature_table, labels_table, parquet_file_ok, raw_bars_table
from resources.adapters import AdapterRegistry
from resources.lost_dates import LostDates

LAKE_STATUS_RUN_PREFIX = "lake-status-"  # the run id our evaluations made outside a run are filed under
SYMBOL_DAY_ASSETS = ("curated_bars", "crypto_curated_bars", "aligned_bars", *FEATURE_GROUPS, "labels")
RAW_BARS_ASSETS = {  # raw-bars asset -> its raw table (a generated asset's key is free: its source names the table)
    "raw_bars_sim": raw_bars_table("sim"), "crypto_raw_bars_sim": raw_bars_table("sim"), "raw_bars_ib": raw_bars_table("ib"),
    **{spec.asset_key: raw_bars_table(spec.source) for spec in AdapterRegistry.specs() if spec.generate_asset},
}
INGESTION_ASSETS = (*RAW_BARS_ASSETS, "l2_snapshots_sim")  # raw batches of every source, and the offline source's TF_1 L2 day files
AUDITED_ASSETS = (*INGESTION_ASSETS, *SYMBOL_DAY_ASSETS)


def tables_of(asset: str) -> list[Table]:
    """The lake tables symbol-day asset ``asset`` writes (a date is stored when all of them hold it)."""
    if asset in ("curated_bars", "crypto_curated_bars"):
        return [CURATED_BARS]
    if asset == "aligned_bars":
        return [ALIGNED_BARS]
    if asset in FEATURE_GROUPS:
        return [feature_table(asset, version) for version in FEATURE_GROUPS[asset]]
    if asset == "labels":
        return [labels_table(version) for version in LABEL_DEFINITIONS]
    raise ValueError(f"{asset!r} is not a symbol-day asset")


def asset_of(table: str, symbol: str) -> str | None:
    """The asset whose data lake table ``table`` holds (one of its ``tables_of``) for ``symbol``
    (None: none); the curated table by the symbol's market. DQ tables have none here: a lost DQ
    file stays in the journal for its owner to re-evaluate (the DQ gate keeps its dates blocked
    meanwhile, ``quality.checks.is_blocked``); reported as lost data, the audit would pass the
    date again as soon as the data table holds it."""
    crypto = detect_asset_type(symbol) == "crypto"
    for asset in SYMBOL_DAY_ASSETS:
        if asset in ("curated_bars", "crypto_curated_bars") and (asset == "crypto_curated_bars") != crypto:
            continue
        if table in {str(t) for t in tables_of(asset)}:
            return asset
    return None


def reportable(lost: LostDates) -> bool:
    """Whether ``report_lost_dates`` takes ``lost`` (a data table of a symbol-day asset); others
    (DQ tables, ingestion tables) stay in the journal for the step that re-computes them."""
    return asset_of(lost.table, lost.symbol) is not None


def report_lost_dates(
    instance: dg.DagsterInstance, lake: ParquetLake, log: Callable[[str], None] | None = None, *, mine_only: bool = True
) -> list[LostDates]:
    """Take every loss this process recorded under ``lake`` (``mine_only=False``: every loss in the
    lake's journal, whoever found it: the audit) and fail the completeness check of each lost
    (asset, date) in Dagster. A loss whose file's footer did not say which dates it held is
    reported on the month's dates Dagster has materialized. Returns the losses reported. Losses
    found by other processes are left to the next run of the owning asset, which re-computes them."""
    with lake.taking_lost_dates(None, mine_only=mine_only, where=reportable) as losses:
        return report_losses(instance, losses, log)


def report_losses(instance: dg.DagsterInstance, losses: list[LostDates], log: Callable[[str], None] | None = None) -> list[LostDates]:
    """``report_lost_dates`` for losses already taken from the lake."""
    lost_days: dict[str, set[str]] = {}
    evaluations: list[dg.AssetCheckEvaluation] = []
    for lost in losses:
        asset = asset_of(lost.table, lost.symbol)
        if asset is None:
            continue
        key = dg.AssetKey(asset)
        days = lost.dates if lost.dates is not None else materialized_dates(instance, key, lost.month)
        if log:
            log(f"{lost.table} {lost.symbol}: {len(days)} date(s) of {lost.month} lost with the corrupt file moved to {lost.moved_to}; "
                f"{asset}'s completeness check now fails on them until they are re-run")
        for day in sorted(days):
            evaluations.append(dg.AssetCheckEvaluation(
                asset_key=key, check_name=COMPLETE_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR, partition=day.isoformat(),
                metadata={
                    "date": day.isoformat(), "missing_symbols": 1,
                    "missing": f"{lost.symbol} (lost with the corrupt file moved to {lost.moved_to}; re-run this date)",
                },
            ))
        lost_days.setdefault(asset, set()).update(day.isoformat() for day in days)
    evaluations += [_summary(asset, sorted(days), None, "lost with corrupt files quarantined outside a run of this asset") for asset, days in lost_days.items()]
    record_evaluations(instance, evaluations)
    return losses


def record_evaluations(instance: dg.DagsterInstance, evaluations: list[dg.AssetCheckEvaluation]) -> None:
    """Store check evaluations made outside a run, one per (check, partition) (the last given wins).

    Not ``report_runless_asset_event``: Dagster files those under run id "", and its check-execution
    table holds one row per (check, run id, partition), so a second runless evaluation of a date
    (the same date lost twice, or found by the audit and then as lost) failed with a UNIQUE
    constraint error and left the date green. Each call here files its evaluations under its own
    id, ``lake-status-<uuid>``."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.instance.utils import RUNLESS_JOB_NAME

    latest = {(e.asset_key, e.check_name, e.partition): e for e in evaluations}
    if not latest:
        return
    latest = {key: e for key, e in zip(latest, targeting(instance, list(latest.values())))}  # shown on the date, not stale
    run_id = f"{LAKE_STATUS_RUN_PREFIX}{uuid.uuid4().hex}"
    for evaluation in latest.values():
        instance.report_dagster_event(
            DagsterEvent(event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value, event_specific_data=evaluation, job_name=RUNLESS_JOB_NAME),
            run_id=run_id,
        )


def quarantine_undecodable(lake: ParquetLake, table: Table, symbol: str) -> list:
    """Decode every stored file of (table, symbol) whole; quarantine those that do not decode
    (their loss is recorded, ``resources.lost_dates``). Returns where they went."""
    moved = []
    for path in sorted(set(lake.stored_files(table, symbol))):
        if decodable_rows(path) is None:
            target = lake.quarantine_file(table, path)
            if target is not None:
                moved.append(target)
    return moved


def _summary(asset: str, failing: list[str], checked: int | None, why: str) -> dg.AssetCheckEvaluation:
    """One failing evaluation without a partition beside the per-date ones: Dagster's check list
    and the check's overview show an asset check's latest evaluation, which for a partitioned check
    is the latest of any partition or none; this one makes them red until the next run judges."""
    shown = listing(failing)
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset), check_name=COMPLETE_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            **({"dates_checked": checked} if checked is not None else {}),
            "dates_incomplete": len(failing), "incomplete": shown, "symbol_days_failed": 0,
            "summary": f"{len(failing)} date(s) no longer fully stored ({why}); each date's own evaluation names the symbols",
        },
        description=f"lake status: {len(failing)} date(s) no longer fully stored; re-run them",
    )


def dq_datasets_of(asset: str) -> list[str]:
    """The DQ datasets whose block markers make ``asset``'s steps skip a symbol-day on purpose
    (the names its recorders store results under); none for the ingestion assets (raw data is kept
    as delivered, blocked or not)."""
    if asset in ("curated_bars", "crypto_curated_bars"):
        return ["curated_bars"]
    if asset == "aligned_bars":
        return ["aligned_bars"]
    if asset in FEATURE_GROUPS:
        return [f"{asset}_{version}" for version in FEATURE_GROUPS[asset]]
    if asset == "labels":
        return [f"labels_{version}" for version in LABEL_DEFINITIONS]
    return []


def dq_blocked(asset: str, lake: ParquetLake, symbol: str, day: dt.date) -> bool:
    """Whether (symbol, day) of ``asset`` is DQ-blocked now (its absence is the DQ gate at work)."""
    return any(is_blocked(lake, dataset, symbol, day) for dataset in dq_datasets_of(asset))


def latest_severities(instance: dg.DagsterInstance, key: dg.AssetCheckKey, partitions: set[str]) -> dict[str, dg.AssetCheckSeverity]:
    """Severity of the latest (failed) evaluation of ``key`` on each of ``partitions``."""
    return {partition: evaluation.severity for partition, evaluation in latest_evaluations(instance, key, partitions).items()}


def latest_evaluations(instance: dg.DagsterInstance, key: dg.AssetCheckKey, partitions: set[str]) -> dict[str, dg.AssetCheckEvaluation]:
    """The latest (failed) evaluation of ``key`` on each of ``partitions``: one query for the recent
    failed evaluations, then one per partition not among them."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    if not partitions:
        return {}
    storage, out = instance.event_log_storage, {}
    recent = storage.get_asset_check_execution_history(key, limit=4 * len(partitions) + 100, status={AssetCheckExecutionRecordStatus.FAILED})
    for record in recent:  # newest first: the first one of a partition is its latest (its latest status is FAILED)
        if record.partition in partitions and record.partition not in out and record.evaluation is not None:
            out[record.partition] = record.evaluation
    for partition in sorted(partitions - set(out)):
        records = storage.get_asset_check_execution_history(key, limit=1, partition_filter=PartitionKeyFilter(key=partition))
        if records and records[0].evaluation is not None:
            out[partition] = records[0].evaluation
    return out


def stored_dates_of(asset: str, lake: ParquetLake, l2_store: L2SnapshotStore | None, symbol: str, decode: bool = False) -> set[dt.date] | None:
    """The dates ``asset`` holds for ``symbol`` now: a symbol-day asset's dates held by every table
    it writes (``decode``: undecodable files quarantined first); a raw-bars asset's dates with a batch;
    the L2 snapshots' dates with a day file (None without an ``l2_store``: not audited)."""
    readable = decodable if decode else parquet_file_ok
    if asset in RAW_BARS_ASSETS:  # the newest batch is what curation reads: torn, the date's data is not there
        table = RAW_BARS_ASSETS[asset]
        return {day for day in lake.raw_dates(table, symbol) if readable(lake.batch_files(table, symbol, day)[-1])}
    if asset == "l2_snapshots_sim":  # a reader of the day reads every file of it: one torn file fails the day
        return None if l2_store is None else {dt.date.fromisoformat(day) for day, files in l2_store.day_index(symbol).items() if all(map(readable, files))}
    for table in tables_of(asset):
        if decode:
            quarantine_undecodable(lake, table, symbol)
        else:
            quarantine_torn_day_files(lake, table, symbol)
    return held_by_every_version([lake.stored_dates(table, symbol) for table in tables_of(asset)])


def held_by_every_version(per_table: list[set[dt.date]]) -> set[dt.date]:
    """The dates the first table holds that every later table (a feature version, a label
    definition registered later) holds too, where a later one counts only from its first stored
    date on: a version registered after history was built has never been computed for the earlier
    dates, which is not data lost (a keep-existing backfill computes it), and one with no date at
    all for the symbol is not computed yet. The first version always counts in full."""
    first, later = per_table[0], [dates for dates in per_table[1:] if dates]
    return {day for day in first if all(day in dates or day < min(dates) for dates in later)}


def decodable(path) -> bool:
    return decodable_rows(path) is not None


def quarantine_torn_day_files(lake: ParquetLake, table: Table, symbol: str) -> list:
    """Quarantine the day files (``date=D/part.parquet``) of (table, symbol) whose footer does not
    read (their loss is recorded, ``resources.lost_dates``: the owning step re-computes them).
    Month files need no such pass: ``stored_dates`` reads their footers (and quarantines) already;
    a day file was counted as stored from the listing alone, so a torn one stayed green."""
    moved = []
    for path in sorted(set(lake.stored_files(table, symbol))):
        if path.parent.name.startswith("date=") and not parquet_file_ok(path):
            target = lake.quarantine_file(table, path)
            if target is not None:
                moved.append(target)
    return moved


def audit_stored_partitions(
    instance: dg.DagsterInstance, lake: ParquetLake, assets: tuple[str, ...] = AUDITED_ASSETS, log: Callable[[str], None] | None = None,
    decode: bool = False, l2_store: L2SnapshotStore | None = None,
) -> dict[str, dict[str, list[str]]]:
    """For every date whose latest ``symbols_complete`` evaluation of ``assets`` passed, check that
    each tracked symbol of the asset's market still has the date stored; a date where one no longer
    has fails that check again (runless evaluation, ERROR, naming the symbols). Dates an earlier
    audit or loss report failed (their latest evaluation is ours) are looked at again: still not
    stored, they count again (a repeat audit is not green while the data is still missing); stored
    again (restored by hand), they pass. Returns {asset: {date: [symbols not stored]}} for the
    dates failed. Reads one folder listing and
    the footers (cached for month files) per (table, symbol): a torn newest raw batch, L2 day file or
    derived day file is not stored (the day file is quarantined); with ``decode`` every file is also
    decoded whole (pages rotted behind a readable footer are found: the file is quarantined and its
    dates count as not stored), which reads all the data."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    failed: dict[str, dict[str, list[str]]] = {}
    for asset in assets:
        key = dg.AssetCheckKey(dg.AssetKey(asset), COMPLETE_CHECK)
        infos = [info for info in instance.event_log_storage.get_asset_check_partition_info([key]) if info.partition_key]
        passed = sorted(info.partition_key for info in infos if info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED)
        flagged = {  # failed by lake status (an earlier audit, a loss report), not by a run since
            info.partition_key for info in infos
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED and (info.latest_planned_run_id or "").startswith(LAKE_STATUS_RUN_PREFIX)
        }
        failed_by_runs = {
            info.partition_key for info in infos
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED and not (info.latest_planned_run_id or "").startswith(LAKE_STATUS_RUN_PREFIX)
        } if asset in SYMBOL_DAY_ASSETS else set()
        warned = {day for day, severity in latest_severities(instance, key, failed_by_runs).items() if severity == dg.AssetCheckSeverity.WARN}
        if not passed and not flagged and not warned:
            continue
        days = {day: dt.date.fromisoformat(day) for day in sorted({*passed, *flagged, *warned})}
        symbols = tracked_symbols(instance, market_of_asset(asset))
        stored = {symbol: stored_dates_of(asset, lake, l2_store, symbol, decode) for symbol in symbols}
        if any(held is None for held in stored.values()):
            continue
        missing = {day: sorted(s for s, held in stored.items() if date not in held) for day, date in days.items()}
        blocked = {day: [s for s in names if dq_blocked(asset, lake, s, days[day])] for day, names in missing.items()}  # gaps by design
        gone = {day: [s for s in names if s not in blocked[day]] for day, names in missing.items()}
        restored = sorted(day for day in flagged if not gone[day])
        rejudged = sorted(day for day in passed if blocked[day] and not gone[day])  # blocked since (a later delivery) but judged passed
        gone = {day: symbols for day, symbols in gone.items() if symbols}

        def why_blocked(day: str) -> list[str]:
            return [f"{s} (DQ-blocked)" for s in blocked[day]]

        evaluations = [
            dg.AssetCheckEvaluation(
                asset_key=key.asset_key, check_name=COMPLETE_CHECK, passed=not blocked[day], partition=day,
                **({"severity": dg.AssetCheckSeverity.WARN} if blocked[day] else {}),
                metadata={
                    "date": day, "tracked_symbols": len(stored), "missing_symbols": len(blocked[day]),
                    **({"missing": listing(why_blocked(day))} if blocked[day] else {}),
                    "found_by": "lake status audit: every tracked symbol stored again" + (" but the DQ-blocked ones" if blocked[day] else ""),
                },
            )
            for day in sorted({*restored, *rejudged})
        ]
        for day, symbols in gone.items():
            evaluations.append(dg.AssetCheckEvaluation(
                asset_key=key.asset_key, check_name=COMPLETE_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR, partition=day,
                metadata={
                    "date": day, "tracked_symbols": len(stored), "missing_symbols": len(symbols) + len(blocked[day]),
                    "missing": listing([
                        *(f"{s} (not stored now, though the date's last evaluation passed{' or missed only DQ-blocked symbols' if day in warned else ''}: "
                          "removed or lost since, or tracked since; re-run this date)" for s in symbols),
                        *why_blocked(day),
                    ]),
                    "found_by": "lake status audit",
                },
            ))
        if gone:
            record_evaluations(instance, [*evaluations, _summary(asset, sorted(gone), len(days), "judged complete, data removed or lost since")])
            failed[asset] = gone
            if log:
                log(f"{asset}: {len(gone)} date(s) judged complete no longer have every tracked symbol stored: "
                    + "; ".join(f"{day}: {', '.join(symbols[:10])}" for day, symbols in list(gone.items())[:10]))
        elif evaluations:
            record_evaluations(instance, evaluations)
        if restored and log:
            log(f"{asset}: {len(restored)} date(s) found gone by an earlier audit are stored again and pass: {', '.join(restored[:20])}")
    return failed
