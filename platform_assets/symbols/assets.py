"""``symbol_history``: one partition per tracked symbol, its history through every layer.

The time-series graph is partitioned by date (cheap bookkeeping, ranged runs; see
``platform_assets/partitions.py``). This asset is the per-symbol view of the same data: its
partitions are the ``symbols`` dynamic partitions, so the UI lists every tracked symbol, shows a
newly added one as *missing*, and its backfill dialog selects symbols from the tracked list (no
free-form typing). Materializing a symbol's partition fills every session of the configured
window that any derived layer lacks, through the whole graph in ranged runs of the pipeline job
(real Dagster runs, tagged with the symbol, visible in the Runs page), then records the symbol's
coverage per layer as this partition's metadata with a ``history_complete`` check. The default
automation sensor materializes a new symbol's partition on its own (``on_missing``), so
``mdp symbols add NVDA`` is enough to get NVDA's history.
"""


import datetime as dt

import dagster as dg

from platform_assets.automation.jobs import CRYPTO_PIPELINE_JOB, OFFLINE_PIPELINE_JOB, STOCK_PIPELINE_JOB
from platform_assets.ingestion.sources import configured_sources, pipeline_job_of, sources_selection
from platform_assets.calendars import CRYPTO
from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.partitions import (
    MAX_DATES_PER_RUN,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SYMBOLS_TAG,
    date_partitions_of,
    symbols_partitions,
)
from platform_assets.symbols.coverage import HISTORY_LAYERS, contiguous_blocks, history_window, measure_coverage
from platform_assets.universe import asset_types, market_of
from resources.lake import ALIGNED_BARS, CURATED_BARS, ParquetLake, feature_table, labels_table

HISTORY_CHECK = "history_complete"
LAUNCHED_BY_TAG = "platform/launched_by"
# Resources the pipeline jobs need; the fill runs reuse this run's configured instances.
PIPELINE_RESOURCE_KEYS = ("lake", "l2_store", "offline_source", "databento", "ib", "bars_manifest", "io_manager", "data_quality")
CRYPTO_LAYERS = ("curated_bars",)


class SymbolHistoryConfig(dg.Config):
    """The history window a symbol must hold, and which pipeline fills it."""

    history_sessions: int = 20
    end_date: str | None = None  # default: the last session before today
    stock_pipeline_job: str | None = None
    """None: the sources of ``INGESTION_SOURCES`` (``offline_pipeline`` for ``sim`` alone, else
    ``stock_pipeline`` over those sources' raw assets and what is derived from them)."""
    fill_missing: bool = True


def fill_new_symbols() -> dg.AutomationCondition:
    """A symbol partition that is missing (newly tracked) is requested once; a failed fill is not
    retried in a loop (re-materialize from the UI once the cause is fixed)."""
    ac = dg.AutomationCondition
    newly = ac.newly_missing()
    return (ac.missing() & (newly | newly.since_last_handled()) & ~ac.in_progress()).with_label("fill a newly tracked symbol once")


def layer_stored(lake: ParquetLake, layer: str, symbol: str, day: dt.date) -> bool:
    """Whether a derived layer holds a (symbol, date): every registered version of it, for versioned ones."""
    if layer == "curated_bars":
        return lake.has_partition(CURATED_BARS, symbol, day)
    if layer == "aligned_bars":
        return lake.has_partition(ALIGNED_BARS, symbol, day)
    if layer == "labels":
        return all(lake.has_partition(labels_table(v), symbol, day) for v in LABEL_DEFINITIONS)
    return all(lake.has_partition(feature_table(layer, v), symbol, day) for v in FEATURE_GROUPS[layer])


def _window_end(config: SymbolHistoryConfig) -> dt.date:
    if config.end_date:
        return dt.date.fromisoformat(config.end_date)
    return dt.date.today() - dt.timedelta(days=1)


def _fill_definitions(context: dg.AssetExecutionContext) -> dg.Definitions:
    # Imported here: the definitions parts include this module (the fill needs the whole graph).
    from platform_assets.definitions_parts import ASSETS, JOBS

    resources = {key: getattr(context.resources, key) for key in PIPELINE_RESOURCE_KEYS}
    return dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources, executor=dg.in_process_executor)


def _fill(context: dg.AssetExecutionContext, symbol: str, job_name: str, blocks: list[list[dt.date]]) -> list[str]:
    """One ranged run of ``job_name`` per block of sessions; returns one line per run. A stock fill
    by ``stock_pipeline`` runs the configured sources' assets only (``INGESTION_SOURCES``)."""
    definitions = _fill_definitions(context)
    job = definitions.resolve_job_def(job_name)
    selection = None
    if job_name == STOCK_PIPELINE_JOB:
        selection = [dg.AssetKey(name) for name in sources_selection(definitions.resolve_asset_graph(), configured_sources())]
    lines = []
    for block in blocks:
        result = job.execute_in_process(
            instance=context.instance,
            tags={RANGE_START_TAG: block[0].isoformat(), RANGE_END_TAG: block[-1].isoformat(), SYMBOLS_TAG: symbol, LAUNCHED_BY_TAG: f"symbol_history/{symbol}"},
            raise_on_error=False,
            asset_selection=selection,
        )
        state = "succeeded" if result.success else "FAILED"
        lines.append(f"{block[0]}..{block[-1]} ({len(block)} sessions): run {result.run_id} {state}")
        context.log.info(f"{symbol}: fill run {lines[-1]}")
    return lines


@dg.asset(
    partitions_def=symbols_partitions,
    group_name="symbols",
    kinds={"parquet"},
    required_resource_keys=set(PIPELINE_RESOURCE_KEYS),
    automation_condition=fill_new_symbols(),
    check_specs=[
        dg.AssetCheckSpec(
            HISTORY_CHECK,
            asset="symbol_history",
            description="every session of the window is held by every derived layer (curated, aligned, features, labels)",
            # one result per symbol (its partition): unpartitioned, the last symbol judged overwrote every other's status
            partitions_def=symbols_partitions,
        )
    ],
)
def symbol_history(context: dg.AssetExecutionContext, config: SymbolHistoryConfig) -> dg.MaterializeResult:
    """A tracked symbol's history over the last ``history_sessions`` sessions, one partition per symbol.

    Holds no table of its own: its materialization records, for this symbol, the sessions each
    derived layer holds (curated_bars, aligned_bars, bar_features, l2_features, labels; curated
    only for crypto pairs), after filling the missing sessions through the whole graph in ranged
    runs (``fill_missing``). Partitioned by the ``symbols`` dynamic partitions (the tracked
    universe); a newly added symbol is missing here until its history is filled (automatically,
    ``on_missing``). The ``history_complete`` check names the sessions still missing per layer.
    The partition fails when no session of the window could be curated (no data for the symbol).
    """
    symbol = context.partition_key
    lake: ParquetLake = context.resources.lake
    market = market_of(symbol, asset_types(context.instance))
    layers = CRYPTO_LAYERS if market == CRYPTO else HISTORY_LAYERS
    first = dt.date.fromisoformat(date_partitions_of(market).get_first_partition_key())
    sessions = history_window(market, _window_end(config), config.history_sessions, first)

    def has(layer: str, sym: str, day: dt.date) -> bool:
        return layer_stored(lake, layer, sym, day)

    before = measure_coverage(symbol, sessions, has, layers)
    runs: list[str] = []
    if config.fill_missing and not before.complete:
        job_name = CRYPTO_PIPELINE_JOB if market == CRYPTO else (config.stock_pipeline_job or pipeline_job_of(configured_sources()))
        if job_name not in (OFFLINE_PIPELINE_JOB, STOCK_PIPELINE_JOB, CRYPTO_PIPELINE_JOB):
            raise dg.Failure(f"unknown pipeline job {job_name!r}: expected {OFFLINE_PIPELINE_JOB} or {STOCK_PIPELINE_JOB}")
        runs = _fill(context, symbol, job_name, contiguous_blocks(before.sessions_to_fill, sessions, MAX_DATES_PER_RUN))
    after = measure_coverage(symbol, sessions, has, layers)
    if after.present("curated_bars") == 0:
        raise dg.Failure(
            f"{symbol}: no session of {sessions[0]}..{sessions[-1]} could be curated (no raw data from any source); "
            + ("; ".join(runs) if runs else "nothing was run")
        )
    missing_lines = {layer: ", ".join(d.isoformat() for d in days[:30]) for layer, days in after.missing.items() if days}
    metadata = {
        "symbol": symbol,
        "market": market.calendar_name,
        "window": f"{sessions[0]} .. {sessions[-1]}",
        "sessions_expected": len(sessions),
        **{f"sessions_{layer}": after.present(layer) for layer in layers},
        "sessions_filled_now": len(before.sessions_to_fill) - len(after.sessions_to_fill),
        "fill_runs": "\n".join(runs),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=HISTORY_CHECK,
                passed=after.complete,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"symbol": symbol, "missing_sessions": len(after.sessions_to_fill), **{f"missing_{k}": v for k, v in missing_lines.items()}},
            )
        ],
    )
