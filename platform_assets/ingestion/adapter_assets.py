"""Raw-bars assets generated from the adapter registry: one per registered source.

For every ``SourceSpec`` with ``generate_asset`` (``resources.adapters.registry``), ``raw_bars_asset``
builds ``raw_bars_{source}``: partitioned by XNYS trading date (ranged runs), in the source's group
and concurrency pool, with the ``raw_bars`` DQ checks. A run asks the adapter for the run's
symbols over ``[first day, last day + 1)`` New York time (``adapter.fetch_bars``), splits
malformed bars off (quarantined, counted), groups the rest by (symbol, New York date) as soon as a
day is complete, and appends one content-hashed raw batch per (symbol, date) under
``lake/raw_bars/source={source}`` (repeated timestamps quarantined as ``duplicate_key``), logged in
the bars download manifest; the ``raw_bars`` DQ rules run on every batch (enum rules on ``source``
accept every registered source). The adapter's counters (records_fetched, api_calls_made,
retry_attempts, validation_errors, processing_time_ms, data_volume_mb) go in the metadata.
``curated_bars`` lists every registered raw-bars asset upstream and takes its default
``source_priority`` from the registry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator

import dagster as dg
import pandas as pd

from platform_assets.ingestion.bar_validation import split_malformed_bars
from platform_assets.ingestion.databento_transforms import split_by_et_date
from platform_assets.ingestion.raw_batch_store import store_raw_batch
from platform_assets.ingestion.raw_batches import build_raw_batch
from platform_assets.partitions import partition_dates, ranged_backfill_policy, stock_date_partitions
from platform_assets.progress import Progress
from platform_assets.quality.checks import check_groups, dq_check_specs, raw_dq_dataset
from platform_assets.quality.heal import heal_lost_results, raw_batches_input
from platform_assets.calendars import STOCKS
from platform_assets.run_options import ingestion_options
from platform_assets.symbol_days import FAILED, Outcome, StepEvents, SymbolDayStep, complete_check_spec, no_input, stored_batch
from platform_assets.universe import run_symbols, tracked_symbols
from resources.adapters import AdapterRegistry
from resources.adapters.base_adapter import FrameBatch
from resources.adapters.ranges import days_range, et_day_bounds
from resources.adapters.registry import SourceSpec
from resources.lake import content_hash, quarantine_table, raw_bars_table

DayFrames = tuple[tuple[str, dt.date], pd.DataFrame, pd.DataFrame | None]
ADAPTER_STATS = ("batches_written", "malformed_rows_quarantined", "duplicate_key_rows_quarantined")


def with_registered_sources(rule_set, registry: type[AdapterRegistry] = AdapterRegistry):
    """The rule set with every registered source accepted by enum rules on ``source`` (the rule
    file lists the built-in ones; a source registered in the adapters file is known too)."""
    sources = registry.source_priority()
    rules = tuple(
        rule.model_copy(update={"allowed": [*rule.allowed, *(s for s in sources if s not in rule.allowed)]})
        if getattr(rule, "rule", None) == "enum" and getattr(rule, "field", None) == "source" else rule
        for rule in rule_set.rules
    )
    return dataclasses.replace(rule_set, rules=rules)


def frames_by_day(
    batches: Iterable[FrameBatch], symbols: list[str], dates: list[dt.date], split: Callable | None = None
) -> Iterator[DayFrames]:
    """((symbol, day), rows, rejected rows or None) per requested (symbol, New York date).

    ``split(frame) -> (good, bad)`` separates malformed rows. A day is yielded once the batches
    mark everything up to its end complete (``complete_until``; chunk edges fall on UTC instants,
    which DST can move off New York midnight), so a day is never split into two batches; the rest
    at the end. Rows of other symbols or days are ignored.
    """
    wanted, known = set(dates), set(symbols)
    pending: dict[tuple[str, dt.date], list[pd.DataFrame]] = {}
    rejected: dict[tuple[str, dt.date], list[pd.DataFrame]] = {}

    def flush(until: pd.Timestamp | None):
        ready = sorted(k for k in pending if until is None or et_day_bounds(k[1])[1] <= until)
        for key in ready:
            frames, bad = pending.pop(key), rejected.pop(key, [])
            good = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            yield key, good, (pd.concat(bad, ignore_index=True) if bad else None)

    for batch in batches:
        if not batch.frame.empty:
            good, bad = split(batch.frame) if split else (batch.frame, None)
            for target, frame in ((pending, good), (rejected, bad)):
                if frame is None or frame.empty:
                    continue
                for (symbol, day), rows in split_by_et_date(frame).items():
                    if day in wanted and symbol in known:
                        target.setdefault((symbol, day), []).append(rows)
                        if target is rejected:
                            pending.setdefault((symbol, day), [])
        if batch.complete_until is not None:
            yield from flush(batch.complete_until)
    yield from flush(None)


def materialize_raw_bars(context: dg.AssetExecutionContext, spec: SourceSpec, checks: list[dg.AssetCheckSpec]) -> StepEvents:
    """One run of a generated raw-bars asset (see the module docstring)."""
    resources = context.resources
    lake, manifest = resources.lake, resources.bars_manifest
    table = raw_bars_table(spec.source)
    symbols, dates = run_symbols(context), partition_dates(context)
    start, end = days_range(dates)
    ingestion_ts = pd.Timestamp.now(tz="UTC")
    quality = resources.data_quality.recorder(lake, "raw_bars", stored_as=raw_dq_dataset(spec.source), asset_key=spec.asset_key)
    quality.rule_set = with_registered_sources(quality.rule_set)
    step = SymbolDayStep(context, spec.asset_key, symbols, dates, tracked=tracked_symbols(context.instance, STOCKS),
                         is_stored=functools.partial(lake.has_batch, table), stats_keys=ADAPTER_STATS, quality=[quality])
    rejected_rows = 0
    missing = {(s, d) for s in symbols for d in dates}
    progress = Progress(context, spec.asset_key, len(missing))
    adapter = spec.build_adapter(resources)
    try:
        with adapter:
            for (symbol, day), bars, bad in frames_by_day(adapter.fetch_bars(symbols, start, end, ingestion_options(context)), symbols, dates, split_malformed_bars):
                rejected = len(bad) if bad is not None else 0
                if rejected:
                    rejected_rows += rejected
                    lake.append_batch(quarantine_table(table), symbol, day, bad, content_hash(bad, spec.source, symbol, str(day)), ingestion_ts)
                if bars.empty:
                    step.record(symbol, day, no_input(f"{spec.provider} delivered only malformed bars ({rejected}, quarantined)"))
                    missing.discard((symbol, day))
                    continue
                batch_id, batch, repeated = build_raw_batch(bars.sort_values("ts", kind="stable"), source=spec.source, symbol=symbol, day=day, ingestion_ts=ingestion_ts)
                path, new = store_raw_batch(lake, table, symbol, day, batch, batch_id, repeated, ingestion_ts)
                quality.add(symbol, day, batch)  # judged once stored, whatever fails after
                manifest.record(path, batch, vendor=spec.source, symbol=symbol, bar_size=spec.bar_size, new=new)  # a found batch: logged if its line is missing
                stats = {"batches_written": int(new), "malformed_rows_quarantined": rejected, "duplicate_key_rows_quarantined": len(repeated)}
                step.record(symbol, day, stored_batch(new, len(batch), **stats))
                missing.discard((symbol, day))  # recorded: a failure after this leaves the day as stored
                progress.step()
    except Exception as error:  # noqa: BLE001 - the vendor failed: every symbol-day it left unfetched failed with its error
        # recorded, not raised past the step: the dates that landed are materialized, and every date gets its
        # symbols_complete verdict (ERROR, naming the error) before the step fails, so the daily tick retries it
        detail = f"{spec.provider}: {type(error).__name__}: {error}".splitlines()[0][:300]
        context.log.error(f"{spec.asset_key}: fetch failed, {len(missing)} symbol-day(s) not fetched: {detail}")
        for symbol, day in sorted(missing):
            step.record(symbol, day, Outcome(FAILED, detail=detail))
        missing.clear()
    for symbol, day in missing:
        step.record(symbol, day, no_input(f"{spec.provider} returned no bars"))
    adapter.metrics.validation_errors += rejected_rows
    heal_lost_results(quality, raw_batches_input(lake, table), context.log)
    manifest.rebuild_coverage()
    context.add_asset_metadata({"source": spec.source, "provider": spec.provider, **adapter.run_metadata(), "symbols": len(symbols), "dates": len(dates),
                                 **adapter.metrics.as_dict()})  # the fetch's counters (one fetch serves every date); each date's own symbols without data: symbols_without_input
    yield from step.finish(quality.finish(check_groups(checks)))


def raw_bars_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    """The Dagster raw-bars asset of a registered source."""
    checks = dq_check_specs(spec.asset_key, "raw_bars")
    adapter = spec.adapter_class

    @dg.asset(
        name=spec.asset_key,
        partitions_def=stock_date_partitions,
        backfill_policy=ranged_backfill_policy,
        group_name=spec.group,
        kinds={"parquet"},
        pool=spec.pool,
        metadata={"lake_table": str(raw_bars_table(spec.source)), "source": spec.source, "schema": "ohlcv-1m",
                  "adapter": f"{adapter.__module__}.{adapter.__qualname__}", "provider": spec.provider},
        check_specs=[*checks, complete_check_spec(spec.asset_key, stock_date_partitions)],
        required_resource_keys={"lake", "bars_manifest", "data_quality", *([spec.resource] if spec.resource else [])},
        description=spec.description,
    )
    def _raw_bars(context) -> StepEvents:  # (no annotation: this module defers annotations)
        yield from materialize_raw_bars(context, spec, checks)

    return _raw_bars


def generated_raw_bars_assets(registry: type[AdapterRegistry] = AdapterRegistry) -> dict[str, dg.AssetsDefinition]:
    """provider -> generated raw-bars asset, for every registered source that wants one."""
    return {spec.provider: raw_bars_asset(spec) for spec in registry.specs() if spec.generate_asset}


GENERATED_RAW_BARS_ASSETS = generated_raw_bars_assets()
