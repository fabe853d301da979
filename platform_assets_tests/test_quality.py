"""Data quality: rule file validation, GX vs vectorised engines, fault -> rule mapping, asset checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from platform_api.backfill import plan_backfill, run_backfill
from platform_assets.calendars import STOCKS, session_minutes, sessions_in_range
from platform_assets.curation.assets import book_activity
from platform_assets.curation.gap_engine import curate_bars
from platform_assets.ingestion.assets import l2_quality_input
from platform_assets.ingestion.raw_batches import as_delivered
from platform_assets.quality.checks import dq_quarantine_table, is_blocked
from platform_assets.quality.config import RuleConfigError, default_rule_sets, load_rule_sets
from platform_assets.quality.engine import batch_from_frames, evaluate
from platform_assets.quality.metrics import dq_metrics_table
from resources.offline_source import OfflineSource
from resources.lake import ALIGNED_BARS, CURATED_BARS, feature_table, labels_table, raw_bars_table
from resources.sim_market import FaultRates, corrupt_day, simulate_day

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
DAYS = sessions_in_range(STOCKS, "2024-03-04", "2024-03-22")


def _batches(rates: FaultRates = FaultRates(), corruption: dict | None = None):
    raw, l2_frames, l2_arrays, curated, stats, keys, faults = [], [], [], [], [], [], []
    for symbol in SYMBOLS:
        for day in DAYS:
            sim = simulate_day(7, symbol, day, rates=rates)
            if corruption and (symbol, day) in corruption:
                sim = corrupt_day(sim, corruption[(symbol, day)])
            delivered = as_delivered(sim.bars, source="sim", symbol=symbol, day=day)
            frame, arrays = l2_quality_input(symbol, sim.book)
            timeline = session_minutes(STOCKS, day)
            bars, gap_stats, _ = curate_bars(pd.DataFrame(delivered), timeline, symbol=symbol, day=day, source="sim", activity=book_activity(sim.book, timeline))
            raw.append(delivered), l2_frames.append(frame), l2_arrays.append(arrays), curated.append(bars)
            stats.append(gap_stats.as_dict()), keys.append((symbol, day))
            faults.append(sim.faults.assign(symbol=symbol, date=day))
    return {
        "raw_bars": batch_from_frames(raw, keys),
        "l2_snapshots": batch_from_frames(l2_frames, keys, l2_arrays),
        "curated_bars": batch_from_frames(curated, keys, None, stats),
    }, pd.concat(faults, ignore_index=True)


def _status(results: pd.DataFrame, metric: str) -> dict:
    rows = results[results["metric"] == metric]
    return {(s, d): status for s, d, status in zip(rows["symbol"], rows["date"], rows["status"])}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: x, rule: no_such_rule, severity: error}", "'x'.*does not match any of the expected tags"),
        ("{name: x, rule: range, field: closing_price, min: 0, severity: error}", "'x'.*unknown column.*closing_price"),
        ("{name: x, rule: range, field: close, min: 0}", "'x'.*needs a threshold"),
        ("{name: x, rule: gap_ratio, warn: 0.5, error: 0.1}", "'x'.*warn threshold 0.5 is above error threshold 0.1"),
        ("{name: x, rule: stat, stat: nonsense, warn: 1}", "'x'.*unknown statistic 'nonsense'"),
        ("{name: x, rule: l2_crossed_book, severity: error}", "'x'.*applies to l2_snapshots only"),
    ],
)
def test_bad_rule_file_fails_at_load_naming_file_and_rule(tmp_path, entry, message):
    path = _write(tmp_path, f"version: 1\ndatasets:\n  curated_bars:\n    - {entry}\n")
    with pytest.raises(RuleConfigError, match=message) as caught:
        load_rule_sets(path)
    assert str(path) in str(caught.value)


def test_bad_rule_file_structure(tmp_path):
    with pytest.raises(RuleConfigError, match="unknown dataset 'bars'"):
        load_rule_sets(_write(tmp_path, "version: 1\ndatasets:\n  bars: []\n"))
    with pytest.raises(RuleConfigError, match="unsupported rule file version 2"):
        load_rule_sets(_write(tmp_path, "version: 2\ndatasets: {}\n"))


def test_repo_rule_file_loads_every_dataset():
    rule_sets = default_rule_sets()
    assert set(rule_sets) == {"raw_bars", "curated_bars", "crypto_curated_bars", "l2_snapshots", "aligned_bars", "bar_features", "l2_features", "labels"}
    assert all(rule_sets[name].rules for name in rule_sets)
    stock, crypto = rule_sets["curated_bars"], rule_sets["crypto_curated_bars"]
    assert [r.name for r in stock.rules] == [r.name for r in crypto.rules]  # the same rules, sized for 1,440-minute days
    assert {r.name: r.error_threshold for r in crypto.rules}["gap_count"] > {r.name: r.error_threshold for r in stock.rules}["gap_count"]


def test_gx_and_vectorised_engines_agree():
    batches, _ = _batches()
    for dataset, batch in batches.items():
        gx = evaluate(default_rule_sets()[dataset], batch, "gx").results.drop(columns="evaluated_at")
        vec = evaluate(default_rule_sets()[dataset], batch, "vectorised").results.drop(columns="evaluated_at")
        pd.testing.assert_frame_equal(gx, vec)
        assert (gx["status"] != "ok").any(), dataset  # faults were there to be found


def test_partitions_given_as_columns_are_judged_as_their_frames():
    """The ingestion hands the DQ batch each symbol-day's columns (framed once per batch): the batch
    frame, the results and the failing rows are those of the per-partition frames."""
    raw, l2_rows, l2_arrays, keys = [], [], [], []
    for symbol in SYMBOLS:
        for day in DAYS[:4]:
            sim = simulate_day(7, symbol, day)
            raw.append(as_delivered(sim.bars, source="sim", symbol=symbol, day=day))
            rows, arrays = l2_quality_input(symbol, sim.book)
            l2_rows.append(rows), l2_arrays.append(arrays), keys.append((symbol, day))
    raw[1] = {**raw[1], "ts": raw[1]["ts"][:0], **{c: raw[1][c][:0] for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count", "date")}}  # a day without bars
    for dataset, columns, arrays in (("raw_bars", raw, None), ("l2_snapshots", l2_rows, l2_arrays)):
        frames = [pd.DataFrame(dict(c), index=pd.RangeIndex(len(next(v for v in c.values() if np.ndim(v))))) for c in columns]
        by_columns, by_frames = batch_from_frames(columns, keys, arrays), batch_from_frames(frames, keys, arrays)
        pd.testing.assert_frame_equal(by_columns.frame, by_frames.frame)
        assert (by_columns.part == by_frames.part).all() and by_columns.keys == by_frames.keys
        mixed = batch_from_frames([frames[0], *columns[1:]], keys, arrays)  # a frame among column dicts
        pd.testing.assert_frame_equal(mixed.frame, by_frames.frame)
        evaluated = [evaluate(default_rule_sets()[dataset], batch, "vectorised") for batch in (by_columns, by_frames)]
        pd.testing.assert_frame_equal(*(e.results.drop(columns="evaluated_at") for e in evaluated))
        assert evaluated[0].failing.keys() == evaluated[1].failing.keys()
        assert all((evaluated[0].failing[name] == evaluated[1].failing[name]).all() for name in evaluated[0].failing)
        assert (evaluated[0].results["status"] != "ok").any(), dataset  # faults were there to be found


FAULT_RULES = {
    # fault kind -> [(dataset, rules of which at least one must report, severity)]
    "feed_gap": [("curated_bars", ["feed_gap_minutes"], "warn")],
    "halt": [("curated_bars", ["halt_minutes"], "warn")],
    "bad_tick": [("raw_bars", ["close_positive", "prices_positive", "ohlc_consistent"], "warn"), ("curated_bars", ["invalid_rows"], "warn")],
    "duplicate": [("raw_bars", ["unique_symbol_ts"], "warn"), ("curated_bars", ["duplicate_rows"], "warn")],
    "crossed_book": [("l2_snapshots", ["book_not_crossed"], "warn")],
}


def test_each_injected_fault_is_caught_by_the_right_rule_with_the_right_severity():
    batches, faults = _batches()
    results = {dataset: evaluate(default_rule_sets()[dataset], batch, "vectorised").results for dataset, batch in batches.items()}
    for kind, expectations in FAULT_RULES.items():
        partitions = set(zip(faults.loc[faults["kind"] == kind, "symbol"], faults.loc[faults["kind"] == kind, "date"]))
        assert partitions, f"the simulator injected no {kind} in the sample"
        for dataset, rules, severity in expectations:
            statuses = [_status(results[dataset], rule) for rule in rules]
            for key in partitions:
                assert severity in {s[key] for s in statuses}, (kind, dataset, key)
    # and the rules that catch a fault stay quiet where it was not injected
    for kind, rule in (("feed_gap", "feed_gap_minutes"), ("halt", "halt_minutes"), ("crossed_book", "book_not_crossed")):
        dataset = FAULT_RULES[kind][0][0]
        injected = set(zip(faults.loc[faults["kind"] == kind, "symbol"], faults.loc[faults["kind"] == kind, "date"]))
        flagged = {key for key, status in _status(results[dataset], rule).items() if status != "ok"}
        assert flagged == injected, kind


def test_clean_partitions_pass_every_rule():
    batches, faults = _batches(FaultRates.none())
    assert faults.empty
    for dataset, batch in batches.items():
        results = evaluate(default_rule_sets()[dataset], batch, "gx").results
        assert (results["status"] == "ok").all(), results[results["status"] != "ok"]


def test_whole_day_corruptions_are_errors():
    day = DAYS[3]
    corruption = {("AAPL", day): "bad_ticks", ("MSFT", day): "outage", ("NVDA", day): "crossed_book"}
    batches, _ = _batches(FaultRates.none(), corruption)
    results = {dataset: evaluate(default_rule_sets()[dataset], batch, "vectorised").results for dataset, batch in batches.items()}
    assert _status(results["raw_bars"], "close_positive")[("AAPL", day)] == "error"
    assert _status(results["curated_bars"], "gap_ratio")[("MSFT", day)] == "error"
    assert _status(results["curated_bars"], "feed_gap_minutes")[("MSFT", day)] == "error"
    assert _status(results["l2_snapshots"], "book_not_crossed")[("NVDA", day)] == "error"
    others = [key for key in batches["raw_bars"].keys if key not in corruption]
    for dataset in results:
        bad = results[dataset][results[dataset]["status"] == "error"]
        assert not set(zip(bad["symbol"], bad["date"])) & set(others), dataset


def test_l2_rules_read_per_partition_levels_as_the_stacked_levels():
    """The L2 level arrays stay one block per partition (no stacked copy of every book): results,
    failing rows and the failing rows' levels equal those of the same batch given stacked arrays."""
    from platform_assets.quality.checks import _rows_of
    from platform_assets.quality.rules import QualityBatch

    day = DAYS[3]
    batches, _ = _batches(corruption={("NVDA", day): "crossed_book"})
    blocks = batches["l2_snapshots"]
    assert len(blocks.array_blocks) == blocks.n_parts > 1
    stacked = QualityBatch(blocks.frame, blocks.part, blocks.keys, {name: np.concatenate([b[name] for b in blocks.array_blocks]) for name in blocks.array_blocks[0]})
    by_block, by_stack = (evaluate(default_rule_sets()["l2_snapshots"], batch, "vectorised") for batch in (blocks, stacked))
    pd.testing.assert_frame_equal(by_block.results.drop(columns="evaluated_at"), by_stack.results.drop(columns="evaluated_at"))
    assert by_block.failing.keys() == by_stack.failing.keys() and all((by_block.failing[k] == by_stack.failing[k]).all() for k in by_block.failing)
    crossed = by_block.failing["book_not_crossed"]
    assert crossed.sum() > 0
    rows_block, rows_stack = _rows_of(blocks, crossed, None), _rows_of(stacked, crossed, None)
    assert rows_block.drop(columns=["bid_prices", "ask_prices", "bid_sizes", "ask_sizes"]).equals(rows_stack.drop(columns=["bid_prices", "ask_prices", "bid_sizes", "ask_sizes"]))
    for name in ("bid_prices", "ask_prices", "bid_sizes", "ask_sizes"):
        assert all(np.array_equal(a, b) for a, b in zip(rows_block[name], rows_stack[name]))
    narrow = [{**b, "bid_prices": b["bid_prices"][:, :9]} if i == 2 else b for i, b in enumerate(blocks.array_blocks)]  # one partition with 9 levels
    depth = evaluate(default_rule_sets()["l2_snapshots"], QualityBatch(blocks.frame, blocks.part, blocks.keys, narrow), "vectorised")
    failing_parts = set(blocks.part[depth.failing["ten_levels"]])
    assert failing_parts == {2}  # only that partition fails the depth rule


def _offline_with(platform, corrupt: dict[str, str]) -> dg.Definitions:
    resources = dict(platform.defs.resources)
    resources["offline_source"] = OfflineSource(seed=platform.settings.sim_seed, corrupt_days=corrupt)
    from definitions import build_definitions

    base = build_definitions(platform.settings)
    return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs, resources=resources, executor=dg.in_process_executor)


def test_blocking_failure_stops_downstream_of_that_partition_only(platform):
    days = ["2024-12-02", "2024-12-03"]
    bad_ticks, outage = ("AAPL", dt.date(2024, 12, 3)), ("MSFT", dt.date(2024, 12, 2))
    defs = _offline_with(platform, {"AAPL@2024-12-03": "bad_ticks", "MSFT@2024-12-02": "outage"})
    report = run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], *days), defs=defs, add_missing_symbols=True)
    assert report.success, [r.error for r in report.runs]
    lake = defs.resources["lake"]

    # raw error (AAPL 12-03): raw kept as delivered, bad rows quarantined, nothing curated downstream
    assert is_blocked(lake, "raw_bars_sim", *bad_ticks)
    assert not lake.has_partition(CURATED_BARS, *bad_ticks)
    quarantined = lake.read(dq_quarantine_table("raw_bars_sim"), [bad_ticks[0]], [bad_ticks[1]])
    assert len(quarantined) >= 20 and (quarantined["close"] == 0).all() and set(quarantined["dq_rule"]) == {"close_positive,ohlc_consistent"}
    # curated error (MSFT 12-02, a long outage): curated written and blocked; no aligned/features/labels
    assert lake.has_partition(CURATED_BARS, *outage) and is_blocked(lake, "curated_bars", *outage)
    blocked = {bad_ticks, outage}
    for table in (ALIGNED_BARS, feature_table("bar_features", "v1"), labels_table("v1")):
        for symbol in ("AAPL", "MSFT"):
            for day in days:
                key = (symbol, dt.date.fromisoformat(day))
                assert lake.has_partition(table, *key) == (key not in blocked), (table, key)
    # results persisted per (dataset, symbol, date, metric)
    metrics = lake.read(dq_metrics_table("curated_bars"), ["MSFT"], [outage[1]])
    gap_ratio = metrics.set_index("metric").loc["gap_ratio"]
    assert gap_ratio["status"] == "error" and gap_ratio["value"] >= 0.25 and gap_ratio["error_threshold"] == 0.25

    # the run's check results: failed, WARN (not every partition is blocked), blocked partitions named
    checks = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in _check_evaluations(platform.instance, report.runs[0].run_id)
    }
    completeness = checks[("curated_bars", "dq_completeness")]
    assert not completeness.passed and completeness.severity == dg.AssetCheckSeverity.WARN
    assert "MSFT@2024-12-02" in completeness.metadata["blocked_partitions"].value
    assert checks[("curated_bars", "dq_validity")].metadata["partitions_error"].value == 0
    assert checks[("raw_bars_sim", "dq_validity")].metadata["partitions_error"].value == 1


def test_single_partition_error_blocks_downstream_steps_in_dagster(platform):
    defs = _offline_with(platform, {"MSFT@2024-12-02": "outage"})
    report = run_backfill(platform.instance, plan_backfill(["MSFT"], "2024-12-02", "2024-12-02"), defs=defs, add_missing_symbols=True)
    run_id = report.runs[0].run_id
    materialized = {
        record.asset_key.to_user_string()
        for record in platform.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        for record in [record.event_log_entry.dagster_event]
    }
    assert {"raw_bars_sim", "l2_snapshots_sim", "curated_bars"} <= materialized
    assert not {"aligned_bars", "bar_features", "labels"} & materialized  # blocked by the ERROR check
    assert "l2_features" in materialized  # its own upstream (L2) passed
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in _check_evaluations(platform.instance, run_id)}
    assert checks[("curated_bars", "dq_completeness")].severity == dg.AssetCheckSeverity.ERROR


def test_checks_show_on_each_asset_in_the_definitions(platform):
    repo = platform.defs.get_repository_def()
    keys = {(key.asset_key.to_user_string(), key.name) for key in repo.asset_graph.asset_check_keys}
    for asset in ("raw_bars_sim", "l2_snapshots_sim", "curated_bars", "bar_features", "l2_features"):
        assert any(a == asset and name.startswith("dq_") for a, name in keys), asset
    assert ("curated_bars", "dq_completeness") in keys and ("l2_snapshots_sim", "dq_book") in keys


def _check_evaluations(instance: dg.DagsterInstance, run_id: str):
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [record.event_log_entry.dagster_event.event_specific_data for record in records]


def _run(platform, symbols, start, end, **offline) -> dg.Definitions:
    defs = _offline_with(platform, offline.pop("corrupt", {}))
    if offline:
        defs.resources["offline_source"] = OfflineSource(seed=platform.settings.sim_seed, **offline)
        defs = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=defs.resources, executor=dg.in_process_executor)
    report = run_backfill(platform.instance, plan_backfill(symbols, start, end), defs=defs, add_missing_symbols=True)
    assert report.success, [r.error for r in report.runs]
    return defs


def test_summary_and_health_answer_from_stored_results(platform):
    from platform_api.errors import NoDataError, UnknownDatasetError
    from platform_api.quality import get_data_quality_summary, get_dataset_health

    defs = _run(platform, ["AAPL", "MSFT", "NVDA"], "2024-12-02", "2024-12-03", corrupt={"MSFT@2024-12-03": "outage"})
    settings = platform.settings
    summary = get_data_quality_summary("curated_bars", "2024-12-02", "2024-12-04", settings=settings)  # [start, end)
    assert set(summary.partitions["symbol"]) == {"AAPL", "MSFT", "NVDA"} and summary.status_counts["error"] == 1
    failing = summary.partitions.set_index(["symbol", "date"]).loc[("MSFT", dt.date(2024, 12, 3))]
    assert failing["status"] == "error" and "gap_ratio" in failing["failing_rules"]
    assert {"value", "status", "warn_threshold", "error_threshold"} <= set(summary.to_frame().columns)
    gap_ratio = {m.metric_name: m for m in summary.metrics}["gap_ratio"]  # the contract's DataQualityMetric
    assert gap_ratio.status == "error" and gap_ratio.worst == "MSFT@2024-12-03" and gap_ratio.thresholds == {"warn": 0.05, "error": 0.25}
    only = get_data_quality_summary("curated_bars", "2024-12-02", "2024-12-04", symbols=["NVDA"], settings=settings)
    assert set(only.to_frame()["symbol"]) == {"NVDA"}
    raw = get_data_quality_summary("raw_bars", "2024-12-02", "2024-12-04", settings=settings)
    assert {m.dataset for m in raw.metrics} == {"raw_bars_sim"}
    features = get_data_quality_summary("bar_features", "2024-12-02", "2024-12-04", settings=settings)
    assert {m.dataset for m in features.metrics} == {"bar_features_v1", "bar_features_v2", "bar_features"}
    # MSFT's blocked day has no features: the summary says so (a metric and the list), never all-ok over it
    missing = {m.metric_name: m for m in features.metrics if m.dataset == "bar_features"}["partitions_missing"]
    assert missing.value == 1.0 and missing.status == "warn" and missing.partitions == 6 and features.missing_partitions == ["MSFT@2024-12-03"]
    assert features.status == "warn" and raw.missing_partitions == [] and "partitions_missing" not in {m.metric_name for m in raw.metrics}

    # the stored metrics agree with the curated dq_status column, partition by partition
    lake = defs.resources["lake"]
    curated = lake.read(CURATED_BARS)
    for (symbol, day), rows in curated.groupby(["symbol", "date"]):
        day = pd.Timestamp(day).date()
        if day >= dt.date(2024, 12, 4):  # the summary's range is half-open: [12-02, 12-04)
            continue
        details = summary.to_frame()
        stored = details[(details["symbol"] == symbol) & (details["date"] == day)].set_index("metric")["value"]
        # a day's DQ verdict uses the retrospective gap classification (a halt counts from its first minute)
        gaps = rows[(rows["dq_status"] != "ok") & (rows["gap_type_retrospective"] != "no_trade")]
        assert stored["gap_ratio"] == pytest.approx(len(gaps) / len(rows))
        assert stored["feed_gap_minutes"] == ((rows["gap_type_retrospective"] == "feed_gap") & (rows["dq_status"] != "ok")).sum()
        assert stored["halt_minutes"] == (rows["gap_type_retrospective"] == "halt").sum()

    red = get_dataset_health("curated_bars", "2024-12-03", settings=settings)
    assert red.status == "RED" and red.checked_date == dt.date(2024, 12, 3) and red.error_partitions == ["MSFT@2024-12-03"]
    assert any("gap_ratio" in reason and "MSFT" in reason for reason in red.reasons)
    stale = get_dataset_health("curated_bars", "2024-12-13", settings=settings)
    assert stale.status == "RED" and "8 session(s) before 2024-12-13" in stale.reasons[0]  # Dec 4-6, 9-13
    assert get_dataset_health("curated_bars", "2024-12-02", settings=settings).status in {"GREEN", "YELLOW"}

    with pytest.raises(UnknownDatasetError, match="curated_barz"):
        get_data_quality_summary("curated_barz", "2024-12-02", "2024-12-04", settings=settings)
    with pytest.raises(NoDataError, match="2024-11-04"):
        get_data_quality_summary("curated_bars", "2024-11-04", "2024-11-05", settings=settings)


def test_health_green_on_clean_data_yellow_on_warnings(platform):
    from platform_api.quality import get_dataset_health

    _run(platform, ["AAPL", "MSFT"], "2024-12-02", "2024-12-03", inject_faults=False)
    green = get_dataset_health("curated_bars", "2024-12-03", settings=platform.settings)
    assert green.status == "GREEN" and green.symbols_checked == 2 and "passed all" in green.reasons[0]
    _run(platform, ["AAPL", "MSFT"], "2024-12-04", "2024-12-04", corrupt={"AAPL@2024-12-04": "crossed_book"})
    l2 = get_dataset_health("l2_snapshots", "2024-12-04", settings=platform.settings)
    assert l2.status == "RED" and l2.error_partitions == ["AAPL@2024-12-04"]
    behind = get_dataset_health("curated_bars", "2024-12-06", settings=platform.settings)
    assert behind.status == "YELLOW" and "2 session(s) before 2024-12-06" in behind.reasons[0]


def test_health_is_green_only_over_stored_data_of_every_expected_symbol_each_market_on_its_own_session(platform):
    """A DQ result alone never makes a dataset green: its data must still be stored, and every
    tracked symbol must have results; with crypto tracked, a weekend's crypto day never stands in
    for the stocks' last session (stocks were judged "missing" on a Sunday)."""
    from platform_api.quality import get_dataset_health
    from platform_assets.calendars import CRYPTO
    from platform_assets.universe import add_symbols

    _run(platform, ["AAPL", "MSFT"], "2024-12-05", "2024-12-06", inject_faults=False)
    settings = platform.settings
    assert get_dataset_health("curated_bars", "2024-12-06", settings=settings).status == "GREEN"
    folder = Path(settings.base_path) / "lake" / "curated_bars" / "symbol=AAPL"
    folder.rename(folder.with_name("moved-aside"))  # the data behind AAPL's results is gone
    gone = get_dataset_health("curated_bars", "2024-12-06", settings=settings)
    assert gone.status == "YELLOW" and any("results but no stored data on 2024-12-06: AAPL" in reason for reason in gone.reasons)
    assert get_dataset_health("bar_features", "2024-12-06", settings=settings).status == "GREEN"  # its own data is there
    folder.with_name("moved-aside").rename(folder)
    month = next(folder.glob("month=*/part.parquet"))
    intact = month.read_bytes()
    month.write_bytes(intact[: len(intact) // 3])  # torn: an answer (not an exception), naming it
    torn = get_dataset_health("curated_bars", "2024-12-06", settings=settings)
    assert torn.status == "YELLOW" and any("results but no stored data on 2024-12-06: AAPL" in reason for reason in torn.reasons)
    month.write_bytes(intact)
    other = folder / "month=2024-11" / "part.parquet"  # another month's file torn: the day's own file still reads
    other.parent.mkdir()
    other.write_bytes(intact[: len(intact) // 3])
    assert get_dataset_health("curated_bars", "2024-12-06", settings=settings).status == "GREEN"
    other.unlink()
    other.parent.rmdir()
    l2_file = next((Path(settings.level2_path) / "MSFT").glob("2024-12-06_snapshots_*.parquet"))
    l2_bytes = l2_file.read_bytes()
    l2_file.write_bytes(b"garbage" * 100)  # a file is there, its data is not
    garbage = get_dataset_health("l2_snapshots", "2024-12-06", settings=settings)
    assert garbage.status == "YELLOW" and any("results but no stored data on 2024-12-06: MSFT" in reason for reason in garbage.reasons)
    l2_file.write_bytes(l2_bytes)

    add_symbols(platform.instance, ["TSLA"])  # tracked, never ingested
    missing = get_dataset_health("curated_bars", "2024-12-06", settings=settings)
    assert missing.status == "YELLOW" and any("1 of 3 symbols have no results on 2024-12-06: TSLA" in reason for reason in missing.reasons)

    assert run_backfill(platform.instance, plan_backfill(["BTC-USD"], "2024-12-06", "2024-12-08", market=CRYPTO), defs=platform.defs, add_missing_symbols=True).success
    weekend = get_dataset_health("curated_bars", "2024-12-08", settings=settings)  # a Sunday
    assert weekend.checked_date == dt.date(2024, 12, 6) and weekend.symbols_checked == 3  # AAPL, MSFT on Friday; BTC-USD on Sunday
    assert any(reason.startswith("XNYS: 1 of 3 symbols have no results on 2024-12-06: TSLA") for reason in weekend.reasons)
    assert not any("AAPL" in reason and "2024-12-08" in reason for reason in weekend.reasons)
    assert all(reason.startswith(("XNYS: ", "24/7: ")) for reason in weekend.reasons)


def test_a_summary_of_every_symbol_lists_a_tracked_symbol_whose_results_are_all_gone(platform):
    """Asked for every symbol, the summary expected only the symbols with results in its range: a
    tracked symbol whose results were all gone (its DQ month file removed, or never checked) was left
    out, and the summary was all ``ok`` while health said YELLOW. It now expects the tracked symbols
    of the markets its results hold, as health does: their sessions are in ``missing_partitions``."""
    import shutil

    from platform_api.quality import get_data_quality_summary, get_dataset_health
    from platform_assets.universe import add_symbols

    _run(platform, ["AAPL", "MSFT"], "2024-12-05", "2024-12-06", inject_faults=False)
    settings = platform.settings
    clean = get_data_quality_summary("aligned_bars", "2024-12-05", "2024-12-07", settings=settings)
    assert clean.status == "ok" and clean.missing_partitions == []
    results = Path(settings.base_path) / "lake" / "dq_metrics" / "dataset=aligned_bars" / "symbol=MSFT"
    shutil.rmtree(results)  # by hand, or lost with the disk
    assert get_dataset_health("aligned_bars", "2024-12-06", settings=settings).status == "YELLOW"
    summary = get_data_quality_summary("aligned_bars", "2024-12-05", "2024-12-07", settings=settings)
    assert summary.status == "warn" and summary.missing_partitions == ["MSFT@2024-12-05", "MSFT@2024-12-06"]
    assert {m.metric_name: m.status for m in summary.metrics}["partitions_missing"] == "warn"
    add_symbols(platform.instance, ["BTC-USD"])  # another market's symbol: not expected in a stock dataset
    assert get_data_quality_summary("aligned_bars", "2024-12-05", "2024-12-07", settings=settings).missing_partitions == ["MSFT@2024-12-05", "MSFT@2024-12-06"]


def test_gx_runs_in_memory_without_files_or_analytics(tmp_path, monkeypatch):
    from platform_assets.quality.gx_engine import GXRunner

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    runner = GXRunner()
    batches, _ = _batches()
    rules = [r for r in default_rule_sets()["curated_bars"].rules if r.gx_expectation() is not None]
    masks = runner.failing_rows(rules, batches["curated_bars"].frame)
    assert set(masks) == {r.name for r in rules}
    assert list(tmp_path.iterdir()) == [] and runner._context.variables.analytics_enabled is False
    assert runner._context.variables.data_docs_sites == {}


def test_error_rows_come_only_from_partitions_where_the_rule_errs():
    """Rows failing a rule are quarantine candidates only in partitions whose status for that rule
    is error (warn-level partitions keep them), for every rule and partition order."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from platform_assets.quality.config import load_rule_sets
    from platform_assets.quality.engine import batch_from_frames, evaluate

    rules = load_rule_sets()["bar_features"]  # null_rate_ret_1: warn > 1 %, error > 50 %
    def part(day: int, nulls: int) -> pd.DataFrame:
        n = 100
        ret = np.where(np.arange(n) < nulls, np.nan, 0.001)
        ts = pd.date_range(f"2024-12-{day:02d} 14:30", periods=n, freq="min", tz="UTC")
        return pd.DataFrame({"symbol": "AAPL", "date": dt.date(2024, 12, day), "ts": ts, "ret_1": ret, "ret_vol_20": 0.01})
    frames = [part(2, 60), part(3, 5), part(4, 0), part(5, 70)]  # error, warn, ok, error
    keys = [("AAPL", frame["date"][0]) for frame in frames]
    for engine in ("gx", "vectorised"):
        batch = batch_from_frames(frames, keys)
        evaluation = evaluate(rules, batch, engine)
        rows = evaluation.error_rows(batch, rules)
        assert set(rows) == {"null_rate_ret_1"}
        selected = rows["null_rate_ret_1"]
        assert sorted(set(batch.part[selected])) == [0, 3] and selected.sum() == 60 + 70


def test_crypto_days_are_judged_by_rules_sized_for_1440_minutes(platform):
    """A 24/7 day of thin overnight trading holds ~4x the no-trade runs of a 390-minute session: the
    stock session's gap_count error (30) blocked ~43% of the simulator's crypto days; the crypto
    rule set blocks none of them, and its results are stored and read as curated_bars DQ."""
    report = run_backfill(platform.instance, plan_backfill(["BTC-USD"], "2024-11-01", "2024-11-20"), defs=platform.defs, add_missing_symbols=True)
    assert report.success, [r.error for r in report.runs]
    lake = platform.resources["lake"]
    metrics = lake.read(dq_metrics_table("curated_bars"), ["BTC-USD"])
    gap_counts = metrics.loc[metrics["metric"] == "gap_count", "value"]
    assert len(gap_counts) == 20 and (gap_counts >= 30).any()  # what the stock threshold blocked
    assert metrics.loc[metrics["metric"] == "gap_count", "status"].isin(["ok", "warn"]).all()
    assert not any(is_blocked(lake, "curated_bars", "BTC-USD", dt.date(2024, 11, d)) for d in range(1, 21))
    # rows repeating a key are kept in quarantine, as for stocks (they used to be dropped without a trace)
    import pyarrow.parquet as pq

    from platform_assets.calendars import CRYPTO
    from platform_assets.ingestion.raw_batches import raw_batch_table
    from resources.lake import quarantine_table, raw_bars_table

    source, days = platform.resources["offline_source"], [dt.date(2024, 11, d) for d in range(1, 21)]
    delivered = {day: len(raw_batch_table(source.day("BTC-USD", day, CRYPTO).bars, source="sim", symbol="BTC-USD", day=day,
                                          ingestion_ts=pd.Timestamp.now(tz="UTC"))[2]) for day in days}
    stored = {day: sum(pq.read_metadata(f).num_rows for f in lake.batch_files(quarantine_table(raw_bars_table("sim")), "BTC-USD", day)) for day in days}
    assert sum(delivered.values()) > 0 and stored == delivered


def test_a_corrupt_block_marker_file_never_opens_the_dq_gate(platform):
    """Two sessions whose raw bars failed an error rule share a marker month file. Torn, it keeps
    the gate closed (the dates' stored error results decide; nothing readable = blocked): curation
    alone still skips both, and blocked_dates answers the same as is_blocked."""
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.quality.checks import blocked_dates, raw_dq_dataset
    from platform_assets.quality.metrics import dq_blocked_table
    from resources.lake import month_file_dates

    blocked = [dt.date(2024, 11, 20), dt.date(2024, 11, 21)]
    defs = _run(platform, ["AAPL", "MSFT"], "2024-11-18", "2024-11-22", corrupt={f"AAPL@{d}": "bad_ticks" for d in blocked})
    lake, dataset = defs.resources["lake"], raw_dq_dataset("sim")
    markers = lake.month_file(dq_blocked_table(dataset), "AAPL", "2024-11")
    assert month_file_dates(markers) == frozenset(blocked)
    assert not any(lake.has_partition(CURATED_BARS, "AAPL", day) for day in blocked)
    markers.write_bytes(markers.read_bytes()[:40])  # torn
    assert all(is_blocked(lake, dataset, "AAPL", day) for day in blocked) and not is_blocked(lake, dataset, "AAPL", dt.date(2024, 11, 19))
    found = blocked_dates(lake, dataset, "AAPL")
    assert all(day in found for day in blocked) and dt.date(2024, 11, 19) not in found
    job = defs.resolve_job_def("offline_pipeline")
    lake.delete_partition(CURATED_BARS, "AAPL", dt.date(2024, 11, 19))
    job.execute_in_process(instance=platform.instance, asset_selection=[dg.AssetKey("curated_bars")], raise_on_error=False,
                           tags={RANGE_START_TAG: "2024-11-19", RANGE_END_TAG: "2024-11-21"})
    assert not any(lake.has_partition(CURATED_BARS, "AAPL", day) for day in blocked)  # the gate stayed closed
    assert lake.has_partition(CURATED_BARS, "AAPL", dt.date(2024, 11, 19))


def _dq_rows(lake, dataset: str, symbol: str) -> pd.DataFrame:
    rows = lake.read(dq_metrics_table(dataset), [symbol]).drop(columns=["evaluated_at"])
    return rows.sort_values(["date", "metric"], ignore_index=True)


def test_ingestion_dq_results_lost_with_a_corrupt_file_are_re_evaluated_from_the_stored_data(platform):
    """A one-date re-ingest writing into torn DQ month files (results and block markers) of a raw
    and the L2 dataset: the lake moves them aside whole, and the other dates' results and markers
    are re-evaluated from the stored raw batches (with their quarantined repeated rows, as
    delivered) and L2 files, equal to before. Without that, the
    two blocked sessions lose their markers and curation takes their bad ticks."""
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.quality.checks import raw_dq_dataset
    from platform_assets.quality.metrics import dq_blocked_table
    from resources.lake import month_file_dates

    blocked = [dt.date(2024, 11, 20), dt.date(2024, 11, 21)]
    defs = _run(platform, ["AAPL", "MSFT"], "2024-11-18", "2024-11-22", corrupt={f"AAPL@{d}": "bad_ticks" for d in blocked})
    lake, raw = defs.resources["lake"], raw_dq_dataset("sim")
    before = {dataset: _dq_rows(lake, dataset, "AAPL") for dataset in (raw, "l2_snapshots")}
    assert len(before[raw]["date"].unique()) == 5 and len(before["l2_snapshots"]["date"].unique()) == 5
    repeats = before[raw].query("metric == 'unique_symbol_ts'").set_index("date")["value"]
    assert repeats[dt.date(2024, 11, 18)] > 0  # the simulator sent a bar twice: the re-evaluation must see it as delivered
    for table in (dq_metrics_table(raw), dq_blocked_table(raw), dq_metrics_table("l2_snapshots")):
        path = lake.month_file(table, "AAPL", "2024-11")
        path.write_bytes(path.read_bytes()[:40])  # torn: not even the footer says which dates it held
    job = defs.resolve_job_def("offline_pipeline")
    one_date = {RANGE_START_TAG: "2024-11-19", RANGE_END_TAG: "2024-11-19"}
    result = job.execute_in_process(instance=platform.instance, asset_selection=[dg.AssetKey("raw_bars_sim"), dg.AssetKey("l2_snapshots_sim")], tags=one_date)
    assert result.success
    for dataset, rows in before.items():
        pd.testing.assert_frame_equal(_dq_rows(lake, dataset, "AAPL"), rows)
    assert month_file_dates(lake.month_file(dq_blocked_table(raw), "AAPL", "2024-11")) == frozenset(blocked)
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("raw_bars_sim") and e.check_name == "dq_validity"]
    assert "AAPL@2024-11-20" in evaluations[0].metadata["reevaluated_after_quarantine"].value
    lake.delete_partition(CURATED_BARS, "AAPL", blocked[0])
    job.execute_in_process(instance=platform.instance, asset_selection=[dg.AssetKey("curated_bars")], raise_on_error=False,
                           tags={RANGE_START_TAG: "2024-11-19", RANGE_END_TAG: "2024-11-21"})
    assert not any(lake.has_partition(CURATED_BARS, "AAPL", day) for day in blocked)  # the gate stayed closed


def test_a_marker_file_lost_outside_ingestion_keeps_its_dates_blocked_until_the_next_ingestion_re_evaluates_them(platform):
    """A torn raw block-marker month file quarantined outside an ingestion run (here by hand, as a
    reader would): the loss waits in the lake's journal, the audit's loss report leaves it there
    (it is not data it could report), and the DQ gate counts the month's dates as blocked until the
    next ingestion run of the source re-evaluates them; then exactly the two bad sessions stay blocked."""
    from platform_assets.lake_status import report_lost_dates
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.quality.checks import blocked_dates, raw_dq_dataset
    from platform_assets.quality.metrics import dq_blocked_table
    from resources import lost_dates

    blocked = [dt.date(2024, 11, 20), dt.date(2024, 11, 21)]
    defs = _run(platform, ["AAPL", "MSFT"], "2024-11-18", "2024-11-22", corrupt={f"AAPL@{d}": "bad_ticks" for d in blocked})
    lake, raw = defs.resources["lake"], raw_dq_dataset("sim")
    markers = lake.month_file(dq_blocked_table(raw), "AAPL", "2024-11")
    markers.write_bytes(markers.read_bytes()[:40])
    assert lake.quarantine_file(dq_blocked_table(raw), markers) is not None
    assert report_lost_dates(platform.instance, lake, mine_only=False) == [] and len(lost_dates.pending(lake.root)) == 1
    month = [dt.date(2024, 11, d) for d in range(18, 23)]
    assert all(is_blocked(lake, raw, "AAPL", day) for day in month)  # the torn file did not say which: the month waits
    assert all(day in blocked_dates(lake, raw, "AAPL") for day in month) and not is_blocked(lake, raw, "MSFT", month[0])
    job = defs.resolve_job_def("offline_pipeline")
    assert job.execute_in_process(instance=platform.instance, asset_selection=[dg.AssetKey("raw_bars_sim")],
                                  tags={RANGE_START_TAG: "2024-11-18", RANGE_END_TAG: "2024-11-18"}).success
    assert lost_dates.pending(lake.root) == []
    assert [day for day in month if is_blocked(lake, raw, "AAPL", day)] == blocked


def test_a_day_whose_input_turns_dq_blocked_loses_its_derived_data_and_is_not_judged_complete(platform):
    """A vendor re-delivery of a stored day that fails an error rule blocks the day: what the graph
    had derived from the earlier delivery (curated, aligned, features, labels) is removed, and the
    day's completeness says DQ-blocked (WARN) instead of passing because old files are still there."""
    day = dt.date(2024, 11, 20)
    tables = [CURATED_BARS, ALIGNED_BARS, feature_table("bar_features", "v1"), labels_table("v1")]
    _run(platform, ["AAPL", "MSFT"], "2024-11-18", "2024-11-22")
    lake = platform.defs.resources["lake"]
    assert all(lake.has_partition(t, "AAPL", day) for t in tables)
    defs = _offline_with(platform, {"AAPL@2024-11-20": "bad_ticks"})
    report = run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], day, dt.date(2024, 11, 21)), defs=defs)  # a refresh of two days
    assert report.success and is_blocked(lake, "raw_bars_sim", "AAPL", day)
    assert [str(t) for t in tables if lake.has_partition(t, "AAPL", day)] == []
    assert all(lake.has_partition(t, "AAPL", other) for t in tables for other in (dt.date(2024, 11, 19), dt.date(2024, 11, 21)))
    assert all(lake.has_partition(t, "MSFT", day) for t in tables)
    for asset in ("curated_bars", "aligned_bars", "bar_features", "labels"):
        evaluations = [e.dagster_event.event_specific_data for e in platform.instance.all_logs(report.runs[0].run_id)
                       if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
                       and e.dagster_event.event_specific_data.asset_key == dg.AssetKey(asset)
                       and e.dagster_event.event_specific_data.check_name == "symbols_complete"]
        of_day = [e for e in evaluations if e.partition == day.isoformat()]
        assert of_day and not any(e.passed for e in of_day) and "DQ-blocked" in str(of_day[0].metadata["missing"].value), asset


def test_health_outside_the_calendar_is_a_date_range_error_not_a_calendar_crash(tmp_path):
    """``exchange_calendars`` raised ``DateOutOfBounds`` for an as-of date past the calendar's end
    or before its start; it is the platform's ``InvalidDateRangeError`` (HTTP 400) now."""
    from platform_api.errors import InvalidDateRangeError
    from platform_api.quality import get_dataset_health
    from resources.settings import load_settings

    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false")
    last = STOCKS.calendar.last_session.date()
    for day in (last + dt.timedelta(days=3), dt.date(1990, 1, 3)):
        with pytest.raises(InvalidDateRangeError, match=f"dates must be between .* got {day}"):
            get_dataset_health("curated_bars", day, settings=settings)
    assert get_dataset_health("curated_bars", dt.date(2000, 1, 5), settings=settings).status == "RED"  # near the start: nothing stored


def test_a_raw_batch_stored_before_a_later_fault_is_still_judged_and_gates_curation(platform, monkeypatch):
    """A raw batch failing an error rule lands, then its download-log line fails (a full disk):
    the symbol-day is FAILED and named, and its DQ result (judged once the batch is stored) still
    blocks it, so curation does not take the unjudged batch (it did once ingestion isolated
    symbol-day failures: the result was added after the log line)."""
    from resources.bars_manifest import BarsManifest

    real = BarsManifest.record

    def record(self, path, *args, **kwargs):
        if "symbol=AAPL/date=2024-12-03" in str(path):
            raise OSError(28, "No space left on device (injected)")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(BarsManifest, "record", record)
    defs = _offline_with(platform, {"AAPL@2024-12-03": "bad_ticks"})
    report = run_backfill(platform.instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-03"), defs=defs, add_missing_symbols=True)
    lake, day = defs.resources["lake"], dt.date(2024, 12, 3)
    assert not report.complete and any("No space left" in failure for failure in report.failures())
    assert lake.batch_files(raw_bars_table("sim"), "AAPL", day)  # the batch landed
    assert is_blocked(lake, "raw_bars_sim", "AAPL", day)  # and was judged: an error rule blocks it
    assert not lake.has_partition(CURATED_BARS, "AAPL", day) and lake.has_partition(CURATED_BARS, "MSFT", day)
