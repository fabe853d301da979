"""`mdp`: command line of the market-data platform.

    mdp backfill --symbols AAPL,MSFT --start 2024-11-25 --end 2024-12-07   # the main job, days in [start, end)
    mdp symbols list | add AAPL MSFT | remove AAPL
    mdp audit-lookahead [--symbols AAPL,MSFT --days 2024-11-26 --cuts 3]     # exit 1 on look-ahead
    mdp audit-lake [--decode]                                             # exit 1 when judged-complete dates lost data
    mdp warrior-backfill --since 30 --max-workers 4 --strict             # TF_1: auto_backfill_from_warrior
    mdp build-bars-coverage                                               # TF_1: build_bars_coverage
    mdp dataset build --groups bar_features --versions v1 --symbols AAPL,MSFT --start 2024-11-25 --end 2024-11-27 --name mr
    mdp dataset list | show mr [--verify]                                 # immutable training datasets
    mdp score --date 2024-11-26 [--model example|pkg.mod:attr|file.py:attr|http://...]   # batch scoring
    mdp --describe [--json]                                               # every command and its arguments

Bad input ends with a one-line error and exit code 2, before anything is stored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings

from resources.settings import SettingsError, get_settings
from resources.validation import InvalidInputError, parse_half_open_dates

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a program stopped by a closed pipe


def _print(message: str = "") -> None:
    print(message, flush=True)


def _backfill(args: argparse.Namespace) -> int:
    from platform_api.backfill import configured_backfill, plan_backfill, run_backfill
    from platform_api.instance import get_instance
    from platform_api.summary import summarize
    from resources.build import build_resources
    from resources.settings import get_settings
    from resources.warehouse import LakeWarehouse

    plan = plan_backfill(args.symbols, *parse_half_open_dates(args.start, args.end), min_chunks=args.workers)
    settings = get_settings()
    instance = get_instance()
    plan, selection, sources = configured_backfill(plan, settings.ingestion_sources)
    _print(
        f"Backfill ({sources}): {len(plan.symbols)} symbols x {len(plan.dates)} trading days "
        f"({plan.dates[0]} .. {plan.dates[-1]}) = {plan.partitions} symbol-days in {len(plan.runs)} run(s), {args.workers} worker(s)"
    )
    _print(f"  symbols: {', '.join(plan.symbols)}")

    def progress(outcome, done, total):
        status = "ok" if outcome.success else f"FAILED: {outcome.error}"
        if outcome.failed_symbol_days:
            status = f"{status}, but " + "; ".join(f"{asset}: {line}" for asset, line in sorted(outcome.failed_symbol_days.items()))
        group = f" symbol group {outcome.symbol_group}" if outcome.symbol_group else ""
        _print(f"  [{done}/{total}] run {outcome.run_id[:8]} {outcome.start}..{outcome.end}{group}: {status} in {outcome.seconds:.1f}s")

    report = run_backfill(
        instance, plan, add_missing_symbols=not args.no_add_symbols, workers=args.workers, launched_by="cli",
        log_level=settings.log_level if args.verbose else "WARNING", on_run_done=progress, asset_selection=selection,
    )
    resources = build_resources(settings)
    warehouse = LakeWarehouse(base_path=resources["lake"].base_path, level2_path=resources["l2_store"].level2_path)
    try:
        summary, summary_error = summarize(warehouse, plan.symbols, plan.dates[0], plan.dates[-1]), None
    except Exception as error:  # the summary reads the whole lake (a damaged file elsewhere): it never hides the backfill's outcome
        summary, summary_error = None, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    materialized = report.materialized
    _print()
    _print(f"Summary ({'succeeded' if report.complete else 'FAILED'} in {report.seconds:.1f}s)")
    for line in report.failures():
        _print(f"  failed: {line}")
    _print(f"  asset partitions materialized: {sum(materialized.values())} ({len(plan.dates)} dates x {len(materialized)} assets, {len(report.runs)} run(s))")
    if summary is None:
        _print(f"  rows, gaps and DQ status unavailable: the lake's SQL views could not be read ({summary_error})")
    else:
        _print("  rows per asset (these symbols and dates):")
        for name, rows in summary.rows.items():
            _print(f"    {name:<20} {rows:>10,}")
        gaps = ", ".join(f"{k}={v}" for k, v in summary.gap_minutes.items()) or "none"
        _print(f"  gap minutes in curated bars: {gaps}")
        dq = ", ".join(f"{k}={v}" for k, v in summary.dq_status.items()) or "no metrics"
        _print(f"  DQ status per symbol-day (curated_bars): {dq}")
        for symbol, day, metric, value, status in summary.dq_problems:
            _print(f"    {status}: {symbol} {day} {metric}={value:g}")
    _print(f"  data:  {settings.base_path} (lake/, {settings.level2_folder}/)")
    _print(f"  instance: {os.environ['DAGSTER_HOME']}")
    _print("  UI:    make ui  (dagster dev on http://127.0.0.1:3000, same instance)")
    return 0 if report.complete else EXIT_FAILED


def _symbols(args: argparse.Namespace) -> int:
    from platform_api.instance import get_instance
    from platform_assets.universe import add_default_universe, add_symbols, remove_symbol, universe_table

    instance = get_instance()
    if args.action == "add":
        new = add_default_universe(instance) if args.defaults else []
        new += add_symbols(instance, args.names, args.asset_type) if args.names else []
        _print(f"added: {', '.join(new) or 'nothing new'}")
    elif args.action == "remove":
        for name in args.names:
            remove_symbol(instance, name)
        _print(f"removed: {', '.join(args.names)} (stored data kept)")
    for row in universe_table(instance).itertuples():
        _print(f"{row.symbol}\t{row.asset_type}\t{row.market}")
    return 0


def _l2_backfill(args: argparse.Namespace) -> int:
    from platform_api.l2_backfill import backfill_l2_batch

    symbols = args.symbols.split(",") if args.symbols else None
    from platform_assets.ingestion.l2_backfill import L2BackfillFailed

    try:
        summary = backfill_l2_batch(symbols, args.start, args.end, force=args.force, strict=args.strict, max_tasks=args.max_tasks, max_workers=args.workers,
                                    progress=_print_l2_progress, mode=args.mode, interval_ms=args.interval_ms)
    except L2BackfillFailed as stopped:  # --strict stopped at the first error: summary, SUMMARY line, one-line error, exit 1
        _print_l2_totals(stopped.summary)
        print(f"error: {stopped}", file=sys.stderr)
        return EXIT_FAILED
    _print_l2_totals(summary)
    return EXIT_FAILED if summary["errors"] else 0


def _print_l2_totals(summary: dict) -> None:
    _print(f"L2 backfill: {summary['total_tasks']} tasks in {summary['duration_sec']:.1f}s: " + ", ".join(f"{k}={v}" for k, v in summary["counts"].items()))
    _print("SUMMARY " + json.dumps(summary, sort_keys=True, default=str))


def _print_l2_progress(result: dict, done: int, total: int) -> None:
    _print(f"  [{done}/{total}] {result['symbol']} {result['date']}: {result['status']}{' (no records)' if result['zero_rows'] else ''}"
           f"{' ' + str(result['rows']) + ' snapshots' if result['status'] == 'written' else ''}{' - ' + result['error'] if result['error'] else ''}")


def _warrior_backfill(args: argparse.Namespace) -> int:
    from platform_api.l2_backfill import find_warrior_tasks, run_warrior_backfill

    tasks = find_warrior_tasks(since_days=args.since, last=args.last, symbols=args.symbols.split(",") if args.symbols else None)
    if not tasks:
        _print("nothing to do: no tracked stock symbols (mdp symbols add ...)")
        return 0
    _print(f"L2 backfill of {len(tasks)} (symbol, day) tasks: {tasks[0][1]} .. {tasks[-1][1]}")
    if args.dry_run:
        for symbol, day in tasks[: args.max_tasks or len(tasks)]:
            _print(f"  {symbol} {day}")
        return 0
    from platform_assets.ingestion.l2_backfill import L2BackfillFailed

    try:
        summary = run_warrior_backfill(tasks, force=args.force, strict=args.strict, max_tasks=args.max_tasks, max_workers=args.max_workers, progress=_print_l2_progress,
                                       mode=args.mode, interval_ms=args.interval_ms)
    except L2BackfillFailed as stopped:  # --strict stopped at the first error: SUMMARY line, one-line error, exit 1
        _print("SUMMARY " + json.dumps(stopped.summary, sort_keys=True, default=str))
        print(f"error: {stopped}", file=sys.stderr)
        return EXIT_FAILED
    _print("SUMMARY " + json.dumps(summary, sort_keys=True))
    return EXIT_FAILED if summary["errors"] else 0


def _build_bars_coverage(args: argparse.Namespace) -> int:
    from resources.coverage_update import rebuild_coverage_file
    from resources.manifests import coverage_path

    settings = get_settings()
    document = rebuild_coverage_file(settings.base_path, fsync=settings.lake_fsync, backup_path=str(settings.backup_path) if settings.backup_path else None)
    days = sum(len(e["days"]) for e in document["entries"])
    _print(f"{coverage_path(settings.base_path)}: {len(document['entries'])} (symbol, bar_size) entries, {days} days")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from platform_assets.automation.compaction import compact_closed_months, refresh_read_copies
    from resources.lake import ParquetLake

    settings = get_settings()
    if args.before and not __import__("re").fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.before):
        raise InvalidInputError(f"invalid --before {args.before!r}: expected YYYY-MM")
    lake = ParquetLake(base_path=str(settings.base_path), fsync=settings.lake_fsync, read_copies=settings.lake_read_copies)
    merged = compact_closed_months(lake, args.before or None, _print)
    _print(f"compaction: {sum(merged.values())} day files merged in {len(merged)} tables")
    copies = refresh_read_copies(lake, args.before or None, _print)
    _print(f"read copies: {sum(copies.values())} rebuilt in {len(copies)} tables")
    return _report_lost(lake)


def _report_lost(lake, mine_only: bool = True) -> int:
    """Dates lost to corrupt files quarantined by this command (``mine_only=False``: by anyone, not
    re-computed yet) fail their asset's completeness check (``platform_assets.lake_status``); exit
    1 when there were any."""
    from platform_api.instance import get_instance
    from platform_assets.lake_status import report_lost_dates
    from resources.lost_dates import unreadable

    losses = report_lost_dates(get_instance(), lake, lambda line: _print(f"LOST: {line}"), mine_only=mine_only)
    bad = unreadable(lake.root) if not mine_only else []
    for path in bad:
        _print(f"LOST: unreadable lost-dates record {path}: the dates it named are unknown; run `mdp audit-lake --decode` and re-run what it names, then remove the file")
    return EXIT_FAILED if losses or bad else 0


def _audit_lake(args: argparse.Namespace) -> int:
    from platform_api.instance import get_instance
    from platform_assets.lake_status import audit_stored_partitions
    from resources.l2_store import L2SnapshotStore
    from resources.lake import ParquetLake

    settings = get_settings()
    lake = ParquetLake(base_path=str(settings.base_path), fsync=settings.lake_fsync)
    l2_store = L2SnapshotStore(level2_path=str(settings.level2_path), fsync=settings.lake_fsync)
    failed = audit_stored_partitions(get_instance(), lake, decode=args.decode, l2_store=l2_store)
    for asset, days in failed.items():
        for day, symbols in days.items():
            _print(f"NOT STORED: {asset} {day}: {', '.join(symbols)}")
    dates = sum(len(days) for days in failed.values())
    _print(f"lake status audit: {dates} date(s) judged complete no longer fully stored" + ("; their symbols_complete check now fails: re-run them" if dates else ""))
    return max(EXIT_FAILED if failed else 0, _report_lost(lake, mine_only=False))


def _run_recording(label: str, main):
    """``asyncio.run(main())`` of a live recorder, its stats; a gateway that cannot be reached, a
    symbol already being recorded, a write error (a full disk) or a session that ended failed
    (``failed_end``) ends with one FAILED line and None, not chained tracebacks (what was flushed
    before it is kept)."""
    import asyncio

    from platform_assets.ingestion.depth_capture import RecorderBusyError

    from platform_assets.ingestion.depth_capture import failed_end

    try:
        stats = asyncio.run(main())
    except (RecorderBusyError, ConnectionError) as error:
        _print(f"{label} FAILED: {error}")
        return None
    except OSError as error:
        _print(f"{label} FAILED: cannot write the recording ({type(error).__name__}: {error}); what was flushed before it is kept")
        return None
    if failed_end(stats.end_reason):  # the connection was lost for good, or IB refused the subscription(s)
        _print(f"{label} FAILED: {stats.end_reason}")
        return None
    return stats


def _record_depth(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from platform_assets.ingestion.depth_capture import record_depth
    from resources.build import build_resources
    from resources.validation import normalize_symbol

    settings = get_settings()
    resources = build_resources(settings)
    symbol = normalize_symbol(args.symbol)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await record_depth(resources["ib"], resources["l2_store"], symbol, levels=args.levels, interval_s=args.interval,
                                   rotate_s=args.rotate_minutes * 60, flush_s=args.flush_seconds, duration_s=args.duration, stop=stop,
                                   **({} if args.stale_seconds is None else {"stale_s": args.stale_seconds}))
        _print(f"recorded {stats.snapshots} snapshots, {stats.messages} messages, {len(stats.gaps)} gap(s) ({stats.end_reason}); files: {', '.join(stats.files)}")
        return stats

    _print(f"recording {symbol} depth from {settings.ib_host}:{settings.ib_port} (Ctrl-C to stop: everything recorded is flushed; a kill -9 loses at most the last --flush-seconds)")
    return 0 if _run_recording(f"record-depth {symbol}", main) is not None else EXIT_FAILED


def _audit_lookahead(args: argparse.Namespace) -> int:
    import json

    from platform_assets.audit.lookahead import parse_sample, run_audit

    symbols, days = parse_sample(args.symbols.split(",") if args.symbols else None, args.days.split(",") if args.days else None)
    report = run_audit(symbols, days, cuts_per_session=args.cuts, seed=args.seed)
    summary = report.as_dict()
    if args.json:
        _print(json.dumps(summary, default=str))
    else:
        _print(f"look-ahead audit: {summary['samples']} perturbed samples, {len(summary['tables'])} tables, "
               f"{summary['rows_compared']:,} rows compared in {summary['seconds']}s: {'PASSED' if report.passed else 'FAILED'}")
        _print(f"  tables: {', '.join(f'{t} ({n} columns)' for t, n in summary['tables'].items())}")
        declared = sorted({c for columns in summary["declared_lookahead"].values() for c in columns})
        _print(f"  declared look-ahead (not compared): {', '.join(declared) or 'none'}")
        for example in summary["examples"]:
            _print(f"  LOOK-AHEAD: {example}")
    return 0 if report.passed else EXIT_FAILED
def _record_bars(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from platform_assets.ingestion.live_bars import record_bars
    from resources.build import build_resources
    from resources.validation import normalize_symbol

    settings = get_settings()
    resources = build_resources(settings)
    symbols = [normalize_symbol(s) for s in args.symbols.split(",") if s.strip()]

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await record_bars(resources["ib"], resources["lake"], symbols, flush_s=args.flush_seconds, duration_s=args.duration,
                                  use_rth=not args.all_hours, stop=stop, bars_manifest=resources["bars_manifest"])
        _print(f"recorded {stats.minutes} live + {stats.backfilled} backfilled minutes in {stats.batches} batches ({stats.end_reason})"
               + (f"; missing: {'; '.join(stats.gaps)}" if stats.gaps else ""))
        return stats

    _print(f"recording 1-minute bars of {', '.join(symbols)} from {settings.ib_host}:{settings.ib_port} into raw_bars/source=ib_live (Ctrl-C to stop)")
    stats = _run_recording(f"record-bars {', '.join(symbols)}", main)
    if stats is None:
        return EXIT_FAILED
    if stats.refused:  # the others were recorded; these were not
        _print("record-bars FAILED for " + "; ".join(f"{s}: {why}" for s, why in stats.refused.items()))
        return EXIT_FAILED
    return 0


def _feature_versions(groups: list[str], text: str):
    """``v1`` (every group) or ``bar_features=v1,l2_features=v1``."""
    if "=" not in text:
        return text
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(p) != 2 for p in pairs):
        raise InvalidInputError(f"invalid --versions {text!r}: expected v1 or group=v1,group=v1")
    return {group.strip(): version.strip() for group, version in pairs}


def _print_handle(handle, as_json: bool) -> None:
    if as_json:
        _print(json.dumps({**handle.to_dict(), "manifest": handle.manifest}, default=str))
        return
    m = handle.manifest
    _print(f"dataset {handle.dataset_id}: {handle.rows:,} rows x {m['columns']} columns, content hash {handle.content_hash}")
    _print(f"  range [{m['config']['start']}, {m['config']['end']}), symbols {', '.join(m['config']['symbols'])}")
    _print(f"  features {m['config']['feature_versions']}, labels {m['config']['label_def_version'] if m['config']['include_labels'] else 'none'}")
    _print(f"  built {m['built_at']} (extraction {m['extraction_ts']}), file {handle.path}")
    for source in m["sources"]:
        _print(f"  source {source['asset']} {source['version']}: {source['partitions_materialized']}/{source['partitions_expected']} "
               f"session partitions materialized, {source['stored_files']['files']} files")


def _dataset(args: argparse.Namespace) -> int:
    from platform_api.training.dataset_builder import TrainingDatasetConfig, build_training_dataset, list_training_datasets, load_dataset

    settings = get_settings()
    if args.action == "build":
        missing = [flag for flag, value in (("--groups", args.groups), ("--symbols", args.symbols), ("--start", args.start), ("--end", args.end)) if not value]
        if missing:
            raise InvalidInputError(f"mdp dataset build needs {', '.join(missing)}")
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        cfg = TrainingDatasetConfig(
            feature_groups=groups, feature_versions=_feature_versions(groups, args.versions), label_source=args.label_source,
            start=args.start, end=args.end, symbols=args.symbols, name=args.name, label_def_version=args.label_def,
            include_labels=not args.no_labels, require_label=args.require_label, drop_imputed=not args.keep_imputed, strict=args.strict,
        )
        handle = build_training_dataset(cfg, settings=settings)
        if not args.json:
            state = (f"CHANGED since {handle.previous_dataset_id}: {json.dumps(handle.diff)}" if handle.changed
                     else ("new" if handle.created else "unchanged (same data as the previous build)"))
            _print(f"built {handle.dataset_id}: {state}")
        _print_handle(handle, args.json)
        return 0
    if args.action == "list":
        rows = list_training_datasets(settings=settings)
        if args.json:
            _print(json.dumps(rows, default=str))
        for row in [] if args.json else rows:
            _print(f"{row['dataset_id']}\t{'latest' if row['latest'] else '-'}\t{row['rows']} rows\t[{row['start']}, {row['end']})\t"
                   f"{row['symbols']} symbols\t{row['feature_versions']}\tbuilt {row['built_at']}")
        if not rows and not args.json:
            _print("no training datasets yet (mdp dataset build ...)")
        return 0
    if not args.target:
        raise InvalidInputError("mdp dataset show needs a dataset name or id")
    handle = load_dataset(args.target, settings=settings)
    _print_handle(handle, args.json)
    if args.verify:
        result = handle.verify()
        _print(f"verified: file sha256 {result['file_sha256'][:16]}..., content hash {result['content_hash']} match the manifest")
    if args.head and not args.json:
        _print(handle.to_pandas().head(args.head).to_string())
    return 0


def _score(args: argparse.Namespace) -> int:
    from platform_api.scoring.batch_scoring import BatchScoringConfig, ScoringRefusedError, get_predictions, run_batch_scoring

    settings = get_settings()
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    cfg = BatchScoringConfig(
        model=args.model, feature_groups=groups, feature_versions=_feature_versions(groups, args.versions), scoring_date=args.date,
        ts=args.ts.split(",") if args.ts else None, symbols=args.symbols.split(",") if args.symbols else None, mode=args.mode,
        model_name=args.model_name, model_version=args.model_version, allow_yellow=not args.refuse_yellow,
    )
    day = cfg.window()
    try:
        run_batch_scoring(cfg, settings=settings)
    except ScoringRefusedError as error:
        print(f"refused: {error}", file=sys.stderr)
        return EXIT_FAILED
    import dagster as dg

    from platform_api.instance import get_instance

    records = get_instance().fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("predictions"), asset_partitions=[day.isoformat()]), limit=1)
    meta = {k: v.value for k, v in records.records[0].asset_materialization.metadata.items()}
    name, version = meta["model_name"], meta["model_version"]
    frame = get_predictions(name, version, day, day + dt.timedelta(days=1), settings=settings)
    _print(f"scored {day} with {name} {version} ({meta['model_spec']}): {len(frame)} predictions for {frame['symbol'].nunique()} symbols")
    _print(frame[["symbol", "as_of", "ts", "prediction"]].to_string(index=False))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from platform_api.instance import ensure_dagster_home
    from platform_api.service.auth import check_bind

    settings = get_settings()
    host, port = args.host or settings.api_host, args.port or settings.api_port
    check_bind(host, settings)  # a non-loopback bind needs a non-empty PLATFORM_API_TOKEN
    ensure_dagster_home()
    _print(f"serving on http://{host}:{port} (docs: /docs), instance {os.environ['DAGSTER_HOME']}, data {settings.base_path}")
    uvicorn.run("platform_api.service.app:default_app", factory=True, host=host, port=port, log_level="warning")
    return 0


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mode`` / ``--interval-ms``: how historical mbp-10 events become snapshots (README "Historical L2 sampling")."""
    parser.add_argument("--mode", choices=["grid", "every_event"], default=None,
                        help="grid: one as-of snapshot every --interval-ms like live capture; every_event: one per book event (default L2_SAMPLING_MODE, grid)")
    parser.add_argument("--interval-ms", type=int, default=None, help="grid spacing in ms (default L2_INTERVAL_MS, 1000 = live capture's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdp", description="Market-data platform command line",
                                     epilog="mdp --describe [--json] lists every command with its arguments")
    sub = parser.add_subparsers(dest="command", required=True)
    backfill = sub.add_parser("backfill", help="materialize the whole offline graph for symbols x trading days")
    backfill.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. AAPL,MSFT")
    backfill.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    backfill.add_argument("--end", required=True, help="first date NOT included, YYYY-MM-DD (the range is [start, end), as everywhere)")
    backfill.add_argument("--workers", type=int, default=1, choices=range(1, 9), metavar="N", help="parallel runs (1-8)")
    backfill.add_argument("--no-add-symbols", action="store_true", help="fail on symbols that are not tracked yet")
    backfill.add_argument("--verbose", action="store_true", help="show Dagster's run logs")
    backfill.set_defaults(handler=_backfill)
    symbols = sub.add_parser("symbols", help="list, add or remove tracked symbols")
    symbols.add_argument("action", choices=["list", "add", "remove"])
    symbols.add_argument("names", nargs="*", help="symbols to add or remove, e.g. AAPL BTC-USD")
    symbols.add_argument("--asset-type", default="auto", choices=["auto", "stock", "crypto"], help="for add (default: auto-detect, BTC-USD = crypto)")
    symbols.add_argument("--defaults", action="store_true", help="for add: the repo's default universe (platform_assets/default_universe.yaml)")
    symbols.set_defaults(handler=_symbols)
    l2 = sub.add_parser("l2-backfill", help="historical L2 snapshots from Databento mbp-10 (days that already have a file are recorded as SKIP)")
    l2.add_argument("--start", required=True, help="first trading day, YYYY-MM-DD")
    l2.add_argument("--end", required=True, help="first day NOT included, YYYY-MM-DD (the range is [start, end))")
    l2.add_argument("--symbols", default=None, help="comma-separated (default: every tracked stock symbol)")
    l2.add_argument("--force", action="store_true", help="rewrite days that already have a Databento L2 file")
    l2.add_argument("--strict", action="store_true", help="stop at the first error")
    l2.add_argument("--max-tasks", type=int, default=None, help="at most this many (symbol, day) tasks")
    l2.add_argument("--workers", type=int, default=None, help="parallel downloads (default L2_MAX_WORKERS)")
    _sampling_arguments(l2)
    l2.set_defaults(handler=_l2_backfill)
    warrior = sub.add_parser("warrior-backfill", help="TF_1 batch L2 backfill: tracked stock symbols x recent sessions (auto_backfill_from_warrior)")
    warrior.add_argument("--since", type=int, default=None, metavar="DAYS", help="sessions of the last DAYS calendar days")
    warrior.add_argument("--last", type=int, default=None, metavar="N", help="the N most recent sessions (default 1 when --since is not given)")
    warrior.add_argument("--symbols", default=None, help="comma-separated (default: every tracked stock symbol)")
    warrior.add_argument("--max-workers", type=int, default=None, help="parallel downloads (default L2_MAX_WORKERS / L2_BACKFILL_CONCURRENCY)")
    warrior.add_argument("--max-tasks", type=int, default=None, help="at most this many (symbol, day) tasks")
    warrior.add_argument("--force", action="store_true", help="rewrite days that already have a Databento L2 file")
    warrior.add_argument("--strict", action="store_true", help="stop at the first error")
    warrior.add_argument("--dry-run", action="store_true", help="list the tasks, fetch nothing")
    _sampling_arguments(warrior)
    warrior.set_defaults(handler=_warrior_backfill)
    coverage = sub.add_parser("build-bars-coverage", help="rebuild {base}/bars_coverage_manifest.json from bars_download_manifest.jsonl")
    coverage.set_defaults(handler=_build_bars_coverage)
    compact = sub.add_parser("compact", help="merge closed months of the derived tables into one file per (symbol, month); rebuild read copies")
    compact.add_argument("--before", default="", help="compact months before YYYY-MM (default: the current month)")
    compact.set_defaults(handler=_compact)
    depth = sub.add_parser("record-depth", help="live L2 capture from TWS/IB Gateway into level2/{SYMBOL}/ snapshot files")
    depth.add_argument("--symbol", required=True)
    depth.add_argument("--levels", type=int, default=10)
    depth.add_argument("--interval", type=float, default=1.0, help="seconds between snapshots")
    depth.add_argument("--rotate-minutes", type=float, default=30.0, help="start new files every N minutes")
    depth.add_argument("--flush-seconds", type=float, default=30.0, help="re-write the current files every N seconds")
    depth.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: until Ctrl-C)")
    depth.add_argument("--stale-seconds", type=float, default=None,
                       help="no depth update for N seconds: the data counts as down, no snapshots until the next one (default 0: off; a quiet book is still valid)")
    depth.set_defaults(handler=_record_depth)
    audit = sub.add_parser("audit-lookahead", help="prove no derived column uses data from after its row's availability time")
    audit.add_argument("--symbols", default="", help="comma-separated (default AAPL,MSFT)")
    audit.add_argument("--days", default="", help="comma-separated XNYS sessions, YYYY-MM-DD (default 2024-11-26,2024-11-29)")
    audit.add_argument("--cuts", type=int, default=3, help="random cut times per session (plus one inside each of as many gaps)")
    audit.add_argument("--seed", type=int, default=7)
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.set_defaults(handler=_audit_lookahead)
    audit_lake = sub.add_parser("audit-lake", help="fail the completeness check of dates judged complete whose data is no longer stored (exit 1 if any)")
    audit_lake.add_argument("--decode", action="store_true", help="also decode every stored file whole (finds pages rotted behind a readable footer; reads all the data)")
    audit_lake.set_defaults(handler=_audit_lake)
    bars = sub.add_parser("record-bars", help="live 1-minute bars from TWS/IB Gateway into the raw layer (source ib_live)")
    bars.add_argument("--symbols", required=True, help="comma-separated, e.g. AAPL,MSFT")
    bars.add_argument("--flush-seconds", type=float, default=60.0, help="write the day's bars so far every N seconds")
    bars.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: until Ctrl-C)")
    bars.add_argument("--all-hours", action="store_true", help="include bars outside regular trading hours")
    bars.set_defaults(handler=_record_bars)
    dataset = sub.add_parser("dataset", help="training datasets: build (immutable, content-addressed), list, show")
    dataset.add_argument("action", choices=["build", "list", "show"])
    dataset.add_argument("target", nargs="?", default=None, help="for show: a dataset name (its latest build) or id")
    dataset.add_argument("--groups", default="", help="build: comma-separated feature groups, e.g. bar_features,l2_features")
    dataset.add_argument("--versions", default="v1", help="build: v1 (every group) or bar_features=v1,l2_features=v1")
    dataset.add_argument("--symbols", default="", help="build: comma-separated symbols")
    dataset.add_argument("--start", default="", help="build: first date/time (UTC)")
    dataset.add_argument("--end", default="", help="build: end, excluded (the range is [start, end), as everywhere)")
    dataset.add_argument("--name", default=None, help="build: dataset name (default ds-<config hash>)")
    dataset.add_argument("--label-source", default="curated_bars", help="build: label source")
    dataset.add_argument("--label-def", default="v1", help="build: label definition version")
    dataset.add_argument("--no-labels", action="store_true", help="build: features only")
    dataset.add_argument("--require-label", default=None, help="build: keep rows whose label is valid, e.g. fwd_ret_5")
    dataset.add_argument("--keep-imputed", action="store_true", help="build: keep rows of imputed bars")
    dataset.add_argument("--strict", action="store_true", help="build: refuse a range with missing sessions")
    dataset.add_argument("--verify", action="store_true", help="show: re-check checksum and content hash")
    dataset.add_argument("--head", type=int, default=0, help="show: print the first N rows")
    dataset.add_argument("--json", action="store_true", help="print JSON")
    dataset.set_defaults(handler=_dataset)
    score = sub.add_parser("score", help="batch scoring: health gate, inference features, model, predictions (asset `predictions`)")
    score.add_argument("--date", default=None, help="XNYS session to score (default: the latest)")
    score.add_argument("--model", default="example", help="example | package.module:attr | /path/model.py:attr | http(s)://service/url")
    score.add_argument("--symbols", default="", help="comma-separated (default: every tracked stock symbol)")
    score.add_argument("--groups", default="bar_features", help="feature groups")
    score.add_argument("--versions", default="v1", help="v1 or group=v1,group=v1")
    score.add_argument("--ts", default="", help="comma-separated decision times in the session (UTC; default the close)")
    score.add_argument("--mode", default="exact", choices=["exact", "latest"])
    score.add_argument("--model-name", default=None)
    score.add_argument("--model-version", default=None)
    score.add_argument("--refuse-yellow", action="store_true", help="refuse a YELLOW window too (RED is always refused)")
    score.set_defaults(handler=_score)
    serve = sub.add_parser("serve", help="start the HTTP data service (FastAPI + uvicorn)")
    serve.add_argument("--host", default=None, help="bind address (default API_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default API_PORT, 8000)")
    serve.set_defaults(handler=_serve)
    return parser


def describe(parser: argparse.ArgumentParser) -> list[dict]:
    """Every command of ``mdp`` with its arguments (name, flags, required, default, choices, help)."""
    commands = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            arguments = [
                {
                    "name": a.dest, "flags": list(a.option_strings), "required": bool(a.required) if a.option_strings else a.nargs not in ("*", "?"),
                    "default": a.default if a.default is not argparse.SUPPRESS else None,
                    "choices": list(a.choices) if a.choices is not None and not isinstance(a.choices, range) else (f"{a.choices.start}-{a.choices.stop - 1}" if isinstance(a.choices, range) else None),
                    "help": a.help or "",
                }
                for a in sub._actions if not isinstance(a, argparse._HelpAction)
            ]
            commands.append({"tool": f"mdp {name}", "help": helps.get(name, ""), "arguments": arguments})
    commands.append({
        "tool": "python -m platform_api.job_worker", "help": "internal: executes one recorded API job (started detached by the job API)",
        "arguments": [
            {"name": "jobs_dir", "flags": [], "required": True, "default": None, "choices": None, "help": "the instance's platform_jobs folder"},
            {"name": "job_id", "flags": [], "required": True, "default": None, "choices": None, "help": "e.g. backfill-0123456789ab"},
        ],
    })
    return commands


def _print_description(as_json: bool, command: str | None = None) -> int:
    commands = describe(build_parser())
    if command is not None:
        commands = [c for c in commands if c["tool"] == f"mdp {command}"]
        if not commands:
            print(f"error: no command {command!r} (mdp --describe lists them)", file=sys.stderr)
            return EXIT_BAD_INPUT
    if as_json:
        _print(json.dumps(commands, indent=2, default=str))
        return 0
    for command in commands:
        _print(f"{command['tool']}: {command['help']}")
        for a in command["arguments"]:
            flags = ", ".join(a["flags"]) or a["name"]
            extra = []
            if a["required"]:
                extra.append("required")
            elif a["default"] not in (None, False, ""):
                extra.append(f"default {a['default']}")
            if a["choices"]:
                extra.append(f"choices {a['choices']}")
            _print(f"    {flags:<22} {a['help']}{' (' + '; '.join(extra) + ')' if extra else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--describe":  # the guide's "Describe All Tools": keeps CLIs and docs in sync
        return _print_description("--json" in argv[1:])
    if len(argv) > 1 and "--describe" in argv[1:] and not argv[0].startswith("-"):  # one command (the guide's scripts: record_depth.py --describe)
        return _print_description("--json" in argv[1:], argv[0])
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (InvalidInputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader of our output left (`mdp symbols list | head`): stop quietly, as `yes | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    started = time.monotonic()
    sys.exit(main())
