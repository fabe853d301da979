"""``corporate_actions``: per-symbol reference records, and the reprocessing they trigger.

The asset is partitioned by the ``symbols`` dynamic partitions (a reference asset per symbol, see
``platform_assets/partitions.py``). Materializing a symbol fetches its corporate actions from the
configured sources (``sim``: the offline source's deterministic schedule; ``databento``: the
reference API through ``databento.Reference``) and stores them in
``lake/reference/corporate_actions/symbol={SYMBOL}/actions.parquet`` (atomic replace, only when
the content changed). Its metadata lists the dates a new or corrected action touched.

``corporate_action_reprocess_sensor`` watches those materializations and requests, for the
symbol alone, a ranged run of ``corporate_action_reprocess`` (curated bars, aligned bars, bar
features, labels) over exactly its stored curated sessions from the first touched date on: the
adjustment factor of every later bar may have changed, nothing of another symbol did. The runs
carry ``platform/trigger=corporate_action`` and the symbol tag, so the UI's Runs page shows them.
The asset's automation condition fetches a newly tracked symbol's actions once and refreshes every
symbol each weekday at 06:00 New York time (the automation sensor runs it under ``make ui``).
"""


import datetime as dt
import json

import dagster as dg
import pandas as pd

from platform_assets.alignment.assets import aligned_bars
from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.curation.assets import curated_bars
from platform_assets.features.assets import bar_features, labels
from platform_assets.reference.actions import normalize
from platform_assets.partitions import MAX_DATES_PER_RUN, RANGE_END_TAG, RANGE_START_TAG, SYMBOLS_TAG, symbols_partitions
from platform_assets.symbols.assets import fill_new_symbols
from platform_assets.symbols.coverage import contiguous_blocks
from resources.adapters.databento_reference import DatabentoReferenceFetcher
from resources.databento_source import DatabentoSource
from resources.lake import CURATED_BARS, ParquetLake, symbol_layout
from resources.offline_source import OfflineSource
from resources.reference_store import unannounced_changes, write_actions
from resources.settings import get_settings
from resources.sim_corporate_actions import sim_corporate_actions

REPROCESS_JOB = "corporate_action_reprocess"
TRIGGER_TAG = "platform/trigger"
REFERENCE_SOURCES = ("sim", "databento")
REFRESH_CRON = "0 6 * * 1-5"  # before the US open: actions announced yesterday are in before today's bars


def refresh_reference() -> dg.AutomationCondition:
    """A newly tracked symbol gets its corporate actions once; every symbol is refreshed each
    weekday morning (New York time); never twice at once."""
    ac = dg.AutomationCondition
    daily = (ac.cron_tick_passed(REFRESH_CRON, "America/New_York") & ~ac.in_progress()).with_label("weekday morning refresh")
    return (fill_new_symbols() | daily).with_label("new symbol, or the weekday morning refresh")

corporate_action_reprocess_job = dg.define_asset_job(
    name=REPROCESS_JOB,
    selection=dg.AssetSelection.assets(curated_bars, aligned_bars, bar_features, labels),
    description="Re-derive one symbol's curated bars, aligned bars, features and labels after a new or corrected corporate action.",
)


class CorporateActionsConfig(dg.Config):
    """Where the records come from and which ex dates to ask for."""

    sources: list[str] | None = None  # default: the reference-capable ingestion sources (sim, databento)
    start_date: str | None = None  # default: the partitions' start date
    end_date: str | None = None  # default: one year after today (announced future actions included)
    chunk_days: int = 365


def _sources(config: CorporateActionsConfig) -> list[str]:
    chosen = config.sources if config.sources is not None else [s for s in get_settings().ingestion_sources if s in REFERENCE_SOURCES]
    unknown = sorted(set(chosen) - set(REFERENCE_SOURCES))
    if unknown:
        raise dg.Failure(f"corporate actions: unknown source(s) {unknown}; expected some of {list(REFERENCE_SOURCES)}")
    return list(chosen)


def fetch_actions(source: str, symbol: str, start: dt.date, end: dt.date, *, offline: OfflineSource, databento: DatabentoSource,
                  chunk_days: int) -> pd.DataFrame:
    """Normalized records of one symbol from one source."""
    if source == "sim":
        records = sim_corporate_actions(offline.seed, [symbol])
        return records[(records["ex_date"] >= start) & (records["ex_date"] < end)]
    fetcher = DatabentoReferenceFetcher(
        key_env=databento.api_key_env, gateway=databento.gateway, timeout_s=databento.timeout_s, max_retries=databento.max_retries,
        base_delay=databento.base_delay, max_delay=databento.max_delay, backoff_multiplier=databento.backoff_multiplier,
        chunk_days=chunk_days,
    )
    return fetcher.fetch(databento.vendor_symbols([symbol]), start, end)


@dg.asset(
    partitions_def=symbols_partitions,
    group_name="reference",
    automation_condition=refresh_reference(),
    kinds={"parquet", "pandas"},
    metadata={"lake_table": "reference/corporate_actions"},
)
def corporate_actions(
    context: dg.AssetExecutionContext, config: CorporateActionsConfig, lake: ParquetLake, offline_source: OfflineSource,
    databento: DatabentoSource,
) -> dg.MaterializeResult:
    """Splits, reverse splits and cash dividends of one symbol, with factor, ex and announcement dates.

    Fetched from every configured source and stored per symbol; a source's records replace its
    previous ones (a correction or cancellation included). ``changed_dates`` (metadata) are the
    first sessions records added, removed or changed affect (``max(ex_date, announced_date)``):
    ``corporate_action_reprocess_sensor`` re-derives the symbol's partitions from the first of them on.
    """
    symbol = context.partition_key
    settings = get_settings()
    start = dt.date.fromisoformat(config.start_date) if config.start_date else settings.partitions_start_date
    end = dt.date.fromisoformat(config.end_date) if config.end_date else dt.date.today() + dt.timedelta(days=366)
    sources = _sources(config)
    frames = [fetch_actions(s, symbol, start, end, offline=offline_source, databento=databento, chunk_days=config.chunk_days) for s in sources]
    if not frames:  # e.g. an IB-only deployment: nothing to fetch, nothing to change (no failing daily run)
        context.log.warning(f"{symbol}: no corporate-action source configured (INGESTION_SOURCES has neither sim nor databento)")
        return dg.MaterializeResult(metadata={"records": 0, "sources": "", "changed_dates": "[]", "changed_from": ""})
    filled = [f for f in frames if len(f)]
    records = normalize(pd.concat(filled, ignore_index=True)) if filled else frames[0]
    unannounced = unannounced_changes(lake.root, symbol, lambda run_id: run_id != context.run_id and _run_succeeded(context.instance, run_id),
                                      owner=context.run_id, fsync=lake.fsync)
    changed = write_actions(lake.root, symbol, records, sources=sources, fsync=lake.fsync, run_id=context.run_id)
    if unannounced:  # found by an earlier run that failed before its materialization was recorded
        context.log.warning(f"{symbol}: announcing changed dates an earlier run found but never announced: {', '.join(d.isoformat() for d in unannounced)}")
        changed = sorted(set(changed) | set(unannounced))
    context.log.info(f"{symbol}: {len(records)} corporate action(s) from {', '.join(sources)}; changed dates: {changed or 'none'}")
    return dg.MaterializeResult(metadata={
        "records": len(records),
        "sources": ", ".join(sources),
        "splits": int((records["kind"] == "split").sum()) if len(records) else 0,
        "dividends": int((records["kind"] == "dividend").sum()) if len(records) else 0,
        "changed_dates": json.dumps([d.isoformat() for d in changed]),
        "changed_from": changed[0].isoformat() if changed else "",
    })


def _run_succeeded(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run finished successfully (its materializations, metadata included, are recorded)."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status == dg.DagsterRunStatus.SUCCESS


def reprocess_requests(lake: ParquetLake, symbol: str, changed_from: dt.date, run_key_prefix: str) -> list[dg.RunRequest]:
    """Ranged runs over the symbol's stored curated sessions on or after ``changed_from``."""
    stored = sorted(d for d in symbol_layout(lake.symbol_dir(CURATED_BARS, symbol)) if d >= changed_from)
    if not stored:
        return []
    sessions = sessions_in_range(STOCKS, stored[0], stored[-1])
    blocks = contiguous_blocks([d for d in stored if d in set(sessions)], sessions, MAX_DATES_PER_RUN)
    return [
        dg.RunRequest(
            run_key=f"{run_key_prefix}-{block[0].isoformat()}",
            job_name=REPROCESS_JOB,
            tags={RANGE_START_TAG: block[0].isoformat(), RANGE_END_TAG: block[-1].isoformat(), SYMBOLS_TAG: symbol,
                  TRIGGER_TAG: "corporate_action"},
        )
        for block in blocks
    ]


def sensor_requests(instance: dg.DagsterInstance, lake: ParquetLake, cursor: str | None) -> tuple[list[dg.RunRequest], str, list[str]]:
    """(run requests, new cursor, skip reasons) for every ``corporate_actions`` materialization
    recorded after ``cursor`` (a storage id), oldest first; one symbol's changes in one batch
    are merged from their earliest changed date."""
    after = int(json.loads(cursor)["storage_id"]) if cursor else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("corporate_actions"), after_storage_id=after), limit=1000, ascending=True
    ).records
    earliest: dict[str, tuple[dt.date, int]] = {}
    skipped = []
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        symbol = materialization.partition if materialization else None
        entry = materialization.metadata.get("changed_from") if materialization else None
        value = getattr(entry, "value", entry)
        if not symbol or not value:
            skipped.append(f"{symbol or '?'}: no corporate action changed")
            continue
        day = dt.date.fromisoformat(value)
        if symbol not in earliest or day < earliest[symbol][0]:
            earliest[symbol] = (day, record.storage_id)
    requests = []
    for symbol, (day, storage_id) in sorted(earliest.items()):
        found = reprocess_requests(lake, symbol, day, f"ca-{symbol}-{storage_id}")
        if not found:
            skipped.append(f"{symbol}: no stored curated bars on or after {day}")
        requests += found
    new_cursor = json.dumps({"storage_id": records[-1].storage_id}) if records else (cursor or json.dumps({"storage_id": 0}))
    return requests, new_cursor, skipped


@dg.sensor(
    job=corporate_action_reprocess_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new or corrected corporate action -> re-derive exactly that symbol's partitions from the first affected date.",
)
def corporate_action_reprocess_sensor(context: dg.SensorEvaluationContext, lake: ParquetLake):
    requests, cursor, skipped = sensor_requests(context.instance, lake, context.cursor)
    for reason in skipped[:20]:
        context.log.info(f"skipped {reason}")
    context.update_cursor(cursor)
    if not requests:
        return dg.SkipReason(f"no corporate-action change to reprocess ({len(skipped)} skipped)")
    return requests
