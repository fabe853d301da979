"""Consumer retrieval API on data materialized through the real graph on a temp instance."""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from definitions import build_definitions
from platform_api import errors
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.catalog import get_dataset, list_datasets, list_feature_groups
from platform_api.retrieval import get_curated_bars, get_features_for_inference, get_features_for_training
from platform_api.splits import purged_time_splits
from platform_assets.quality.metrics import dq_blocked_table
from resources.lake import ParquetLake, raw_bars_table
from resources.settings import load_settings

SYMBOLS = ["AAPL", "MSFT", "SPY"]
DATES = [dt.date(2024, 11, 26), dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 12, 2)]
GROUPS = ["bar_features", "l2_features"]


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    settings = load_settings(DATA_PATH_OVERRIDE=str(root / "data"), LAKE_FSYNC="false")
    defs = build_definitions(settings)
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        report = run_backfill(instance, plan_backfill(SYMBOLS, DATES[0], DATES[-1]), defs=defs, add_missing_symbols=True)
        assert report.success
        yield settings, defs, instance


def test_curated_bars_half_open_range_and_columns(lake_env):
    settings, *_ = lake_env
    bars = get_curated_bars(["aapl", "SPY"], "2024-11-26", "2024-11-28", settings=settings)
    assert set(bars["symbol"]) == {"AAPL", "SPY"}
    assert sorted(bars["date"].unique()) == DATES[:2]
    assert len(bars) == 2 * 2 * 390
    assert {"is_imputed", "gap_type", "dq_status"} <= set(bars.columns)
    assert bars.groupby("symbol")["ts"].is_monotonic_increasing.all()
    cut = pd.Timestamp("2024-11-26 15:00", tz="UTC")
    part = get_curated_bars("AAPL", "2024-11-26", cut, settings=settings)
    assert part["ts"].max() < cut and len(part) == 30  # 14:30..14:59 UTC
    assert bars.attrs["missing_sessions"] == {} and part.attrs["missing_sessions"] == {}
    beyond = get_curated_bars(["AAPL", "SPY"], "2024-11-26", "2024-12-04", settings=settings)  # Dec 3 was never ingested
    assert beyond.attrs["missing_sessions"] == {"AAPL": ["2024-12-03"], "SPY": ["2024-12-03"]}  # a partial answer says so
    assert get_curated_bars("AAPL", "2024-11-26", "2024-12-04", frequency="1h", settings=settings).attrs["missing_sessions"] == {"AAPL": ["2024-12-03"]}


@pytest.mark.parametrize("spelling, frequency", [("5T", "5min"), ("5 minutes", "5min"), ("1H", "1h"), ("60min", "1h"), ("1D", "1d"), ("15Min", "15min")])
def test_pandas_spellings_of_a_frequency_give_its_bars(lake_env, spelling, frequency):
    settings, *_ = lake_env
    want = get_curated_bars("MSFT", "2024-11-26", "2024-11-28", frequency=frequency, settings=settings)
    got = get_curated_bars("MSFT", "2024-11-26", "2024-11-28", frequency=spelling, settings=settings)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) < 2 * 390  # resampled, not the minutes


@pytest.mark.parametrize("frequency,minutes", [("5min", 5), ("1h", 60)])
def test_resampled_bars_match_the_minutes(lake_env, frequency, minutes):
    settings, *_ = lake_env
    one = get_curated_bars("MSFT", "2024-11-29", "2024-11-30", settings=settings)  # half day: 210 minutes
    coarse = get_curated_bars("MSFT", "2024-11-29", "2024-11-30", frequency=frequency, settings=settings)
    assert len(one) == 210 and len(coarse) == -(-210 // minutes)
    assert coarse["ts"].iloc[0] == pd.Timestamp("2024-11-29 14:30", tz="UTC")  # anchored at the open
    first = one.iloc[:minutes]
    row = coarse.iloc[0]
    assert row["open"] == first["open"].dropna().iloc[0] and row["close"] == first["close"].dropna().iloc[-1]
    assert row["high"] == first["high"].max() and row["low"] == first["low"].min()
    assert row["volume"] == first["volume"].sum()
    assert coarse["minutes"].sum() == 210
    assert coarse["imputed_minutes"].sum() == one["is_imputed"].sum()
    assert (coarse["has_gap"] == (coarse["imputed_minutes"] > 0)).all()


def test_daily_bars_are_one_per_session(lake_env):
    settings, *_ = lake_env
    daily = get_curated_bars(SYMBOLS, DATES[0], DATES[-1] + dt.timedelta(days=1), frequency="1d", settings=settings)
    assert len(daily) == len(SYMBOLS) * len(DATES)
    assert daily.set_index(["symbol", "date"])["minutes"].loc[("SPY", DATES[2])] == 210


def test_bad_requests_raise_one_clear_error_type_each(lake_env):
    settings, *_ = lake_env
    with pytest.raises(errors.InvalidSymbolError):
        get_curated_bars(["../x"], "2024-11-26", "2024-11-27", settings=settings)
    with pytest.raises(errors.InvalidDateRangeError, match="before end"):
        get_curated_bars("AAPL", "2024-11-27", "2024-11-27", settings=settings)
    with pytest.raises(errors.InvalidDateRangeError):
        get_curated_bars("AAPL", "2024-13-01", "2024-11-27", settings=settings)
    with pytest.raises(errors.InvalidOptionError, match="frequency"):
        get_curated_bars("AAPL", "2024-11-26", "2024-11-27", frequency="7min", settings=settings)
    with pytest.raises(errors.InvalidOptionError, match="frequency"):  # pandas' month, never minutes
        get_curated_bars("AAPL", "2024-11-26", "2024-11-27", frequency="1M", settings=settings)
    with pytest.raises(errors.NoDataError, match="AAPX"):  # a typo never comes back as an empty frame
        get_curated_bars(["AAPL", "AAPX"], "2024-11-26", "2024-11-27", settings=settings)
    with pytest.raises(errors.NoDataError):
        get_curated_bars("AAPL", "2024-07-01", "2024-07-02", settings=settings)
    with pytest.raises(errors.UnknownFeatureGroupError):
        get_features_for_training(["bar_featurez"], "v1", "AAPL", "2024-11-26", "2024-11-27", settings=settings)
    with pytest.raises(errors.UnknownFeatureVersionError):
        get_features_for_training(["bar_features"], "v9", "AAPL", "2024-11-26", "2024-11-27", settings=settings)
    with pytest.raises(errors.UnknownLabelDefinitionError):
        get_features_for_training(["bar_features"], "v1", "AAPL", "2024-11-26", "2024-11-27", label_def_version="v7", settings=settings)
    for versions in (None, 1):  # a clear error naming the argument, not a bare TypeError
        with pytest.raises(errors.InvalidOptionError, match="feature_versions"):
            get_features_for_training(["bar_features"], versions, "AAPL", "2024-11-26", "2024-11-27", settings=settings)
    with pytest.raises(errors.InvalidOptionError):
        get_features_for_inference(["bar_features"], "v1", "AAPL", "2024-11-26T15:00Z", mode="closest", settings=settings)
    with pytest.raises(errors.UnknownDatasetError):
        get_dataset("curated_barz", settings=settings)
    assert issubclass(errors.NoDataError, ValueError) and issubclass(errors.UnknownFeatureGroupError, ValueError)


def test_training_set_joins_groups_and_aligns_labels(lake_env):
    settings, *_ = lake_env
    data = get_features_for_training(GROUPS, {"bar_features": "v1", "l2_features": "v1"}, SYMBOLS, "2024-11-26", "2024-11-28", include_labels=True, settings=settings)
    features, labels = data.features, data.labels
    assert len(features) == len(SYMBOLS) * 2 * 390 == len(labels)
    assert (features[["symbol", "ts"]].to_numpy() == labels[["symbol", "ts"]].to_numpy()).all()
    assert {"ret_1", "ret_vol_20", "spread_bps", "imbalance_1"} <= set(features.columns)
    assert (features["available_ts"] == features["ts"] + pd.Timedelta(minutes=1)).all()
    assert (labels["available_ts"] > features["available_ts"]).all()
    assert not set(labels.columns) & {"ret_1", "spread_bps"} and not any(c.startswith("fwd_ret") for c in features.columns)
    assert data.metadata["feature_versions"] == {"bar_features": "v1", "l2_features": "v1"}
    assert data.metadata["label_def_version"] == "v1" and data.metadata["extraction_ts"]
    assert data.metadata["extraction_timestamp"] == data.metadata["extraction_ts"]  # seed 000 4.1 "extraction timestamp"
    assert pd.Timestamp(data.metadata["extraction_timestamp"]) <= pd.Timestamp.now(tz="UTC")
    bars = get_curated_bars("AAPL", "2024-11-26", "2024-11-27", settings=settings).set_index("ts")
    lab = labels[(labels["symbol"] == "AAPL") & (labels["ts"] < pd.Timestamp("2024-11-27", tz="UTC"))].set_index("ts")
    expected = np.log(bars["close"].shift(-5) / bars["close"]).where(lab["valid_5"])  # NaN where not valid
    pd.testing.assert_series_equal(lab["fwd_ret_5"], expected, check_names=False)
    assert lab.loc[~lab["valid_5"], "fwd_ret_5"].isna().all() and (~lab["valid_5"]).any()


def test_training_rows_never_use_data_after_their_ts(lake_env):
    """Append a vendor correction of every bar after T, re-run the graph: rows at or before T are unchanged."""
    settings, defs, instance = lake_env
    day, symbol = DATES[1], "MSFT"
    cut = pd.Timestamp("2024-11-27 16:00", tz="UTC")
    before = get_features_for_training(GROUPS, "v1", [symbol], day, day + dt.timedelta(days=1), include_labels=False, settings=settings).features
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    raw = lake.read_latest_batch(raw_bars_table("sim"), symbol, day)
    later = raw["ts"] > cut
    raw.loc[later, ["open", "high", "low", "close"]] *= 1.07
    raw.loc[later, "volume"] += 1000
    raw["batch_id"] = "perturbed000000a"
    lake.append_batch(raw_bars_table("sim"), symbol, day, raw, "perturbed000000a", pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1))
    report = run_backfill(instance, plan_backfill([symbol], day, day), defs=defs)
    assert report.success
    after = get_features_for_training(GROUPS, "v1", [symbol], day, day + dt.timedelta(days=1), include_labels=False, settings=settings).features
    value_columns = [c for c in before.columns if c not in ("symbol", "ts", "available_ts")]
    early_before, early_after = before[before["ts"] <= cut], after[after["ts"] <= cut]
    pd.testing.assert_frame_equal(early_before.reset_index(drop=True), early_after.reset_index(drop=True))
    late_changed = (before[before["ts"] > cut + pd.Timedelta(minutes=60)][value_columns].fillna(0).to_numpy()
                    != after[after["ts"] > cut + pd.Timedelta(minutes=60)][value_columns].fillna(0).to_numpy())
    assert late_changed.any()  # the perturbation did reach the later rows


def test_inference_latest_inside_a_gap_returns_last_real_row(lake_env):
    settings, *_ = lake_env
    bars = get_curated_bars(SYMBOLS, "2024-11-26", "2024-12-03", settings=settings)
    gaps = bars[bars["is_imputed"] & bars["close"].notna() & (bars["gap_run_minutes"] >= 3)]
    assert len(gaps), "the offline source injects multi-minute gaps"
    gap_row = gaps.iloc[len(gaps) // 2]
    at = gap_row["ts"] + pd.Timedelta(seconds=30)
    symbol = gap_row["symbol"]
    day_bars = bars[(bars["symbol"] == symbol) & (bars["ts"] + pd.Timedelta(minutes=1) <= at) & ~bars["is_imputed"]]
    expected_ts = day_bars["ts"].max()
    result = get_features_for_inference(GROUPS, "v1", [symbol, "SPY"], at, mode="latest", settings=settings)
    row = result.features.loc[symbol]
    assert list(row.index) == [expected_ts]
    fresh = result.metadata["freshness"][symbol]
    assert fresh["staleness_seconds"] == (at - expected_ts).total_seconds() > 60
    assert pd.Timestamp(fresh["available_ts"]) <= at
    assert "spread_bps" in result.features.columns and result.metadata["missing_symbols"] == []
    for sym, info in result.metadata["freshness"].items():
        assert pd.Timestamp(info["available_ts"]) <= at, sym


def test_inference_latest_before_the_open_uses_the_previous_session(lake_env):
    settings, *_ = lake_env
    at = pd.Timestamp("2024-11-27 14:00", tz="UTC")  # before the 11-27 open
    result = get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, mode="latest", settings=settings)
    (symbol, ts), = result.features.index
    assert result.metadata["freshness"]["AAPL"]["market_staleness_seconds"] == 0  # the market was closed since
    assert ts.date() == DATES[0] and ts < at


def test_inference_exact_matches_training_row(lake_env):
    """exact at a decision time returns the row known then: the bar that closed at it (ts - 1 min)."""
    settings, *_ = lake_env
    at = pd.Timestamp("2024-11-26 16:10", tz="UTC")
    exact = get_features_for_inference(GROUPS, "v1", ["AAPL", "SPY"], at, mode="exact", settings=settings).features
    train = get_features_for_training(GROUPS, "v1", ["AAPL", "SPY"], at - pd.Timedelta(minutes=1), at, include_labels=False, settings=settings).features
    got = exact.reset_index().drop(columns="as_of")
    pd.testing.assert_frame_equal(got, train.reset_index(drop=True)[list(got.columns)], check_dtype=False)
    assert (exact["as_of"] == at).all()


def test_catalog_lists_datasets_and_feature_groups(lake_env):
    settings, *_ = lake_env
    datasets = {d.name: d for d in list_datasets(settings)}
    assert {"raw_bars", "l2_snapshots", "curated_bars", "aligned_bars", "bar_features", "l2_features", "labels"} <= set(datasets)
    assert datasets["curated_bars"].type == "curated" and datasets["labels"].type == "labels"
    assert datasets["curated_bars"].available_date_range == (DATES[0], DATES[-1])
    assert datasets["raw_bars"].sources == ("sim",) and datasets["raw_bars"].symbols == len(SYMBOLS)
    assert datasets["bar_features"].versions == ("v1", "v2") and datasets["bar_features"].latest_pipeline_version == "v2"
    assert datasets["l2_snapshots"].available_date_range == (DATES[0], DATES[-1])
    groups = {g.feature_group: g for g in list_feature_groups(settings)}
    assert groups["bar_features"].versions == ["v1", "v2"] and groups["bar_features"].stored_versions == ["v1", "v2"]  # contract: a list
    assert "volatility" in groups["bar_features"].description


TF1_SCRIPT = """
import json, warnings
warnings.simplefilter("ignore")
import dagster as dg
from definitions import defs

with dg.DagsterInstance.get() as instance:
    curated = defs.load_asset_value("curated_bars", partition_key="2024-11-29", instance=instance)
    features = defs.load_asset_value(
        "bar_features", instance=instance,
        metadata={"start": "2024-11-26", "end": "2024-12-03", "symbols": ["AAPL", "SPY"], "version": "v1"},  # [start, end)
    )
print(json.dumps({
    "curated_rows": len(curated), "curated_symbols": sorted(curated["symbol"].unique()),
    "feature_rows": len(features), "feature_symbols": sorted(features["symbol"].unique()),
    "feature_dates": sorted(str(d) for d in features["date"].unique()),
    "versions": sorted(features["feature_version"].unique()),
}))
"""


def test_tf1_loads_through_the_io_manager_in_a_separate_process(lake_env, tmp_path):
    """A separate Python process (as TF_1 would) loads a partition and a feature range; no webserver."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    settings, _, instance = lake_env
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(settings.base_path), "DAGSTER_HOME": str(instance.root_directory)}
    done = subprocess.run([sys.executable, "-c", TF1_SCRIPT], env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["curated_rows"] == 210 * len(SYMBOLS) and out["curated_symbols"] == sorted(SYMBOLS)
    assert out["feature_symbols"] == ["AAPL", "SPY"] and out["versions"] == ["v1"]
    assert out["feature_dates"] == [str(d) for d in DATES] and out["feature_rows"] == 2 * (390 * 3 + 210)


# --------------------------------------------------------------------------- issue 19: safe data for models
def test_exact_at_a_decision_time_never_yields_a_row_not_yet_available(lake_env):
    settings, *_ = lake_env
    at = pd.Timestamp("2024-11-26 18:03:00", tz="UTC")
    one = get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, settings=settings)  # exact is the default
    (symbol, ts), = one.features.index
    assert ts == pd.Timestamp("2024-11-26 18:02", tz="UTC") and one.features["available_ts"].iloc[0] == at
    decisions = pd.date_range("2024-11-26 14:31:00", "2024-11-26 20:59:59", freq="397s", tz="UTC")  # on and off the minute
    batch = get_features_for_inference(GROUPS, "v1", SYMBOLS, decisions, mode="exact", settings=settings)
    frame = batch.features.reset_index()
    assert len(frame) == len(SYMBOLS) * len(decisions) and not batch.metadata["missing"]
    assert (frame["available_ts"] <= frame["as_of"]).all()
    assert (frame["ts"] == frame["as_of"].dt.floor("1min") - pd.Timedelta(minutes=1)).all()
    with pytest.raises(errors.NoDataError, match="latest"):  # before the open nothing closed at that minute
        get_features_for_inference(["bar_features"], "v1", ["AAPL"], "2024-11-26 14:00", settings=settings)


def test_latest_past_max_staleness_refuses_or_flags(lake_env):
    settings, *_ = lake_env
    at = pd.Timestamp("2024-12-03 17:00", tz="UTC")  # 12-03 was never ingested: 150 minutes into its session
    with pytest.raises(errors.StaleDataError, match="AAPL"):
        get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, mode="latest", settings=settings)
    flagged = get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, mode="latest", on_stale="flag", settings=settings)
    info = flagged.metadata["freshness"]["AAPL"]
    assert info["stale"] and info["market_staleness_seconds"] == 150 * 60 and flagged.metadata["stale"][0]["symbol"] == "AAPL"
    assert pd.Timestamp(info["ts"]).date() == DATES[-1]
    unlimited = get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, mode="latest", max_staleness=None, settings=settings)
    assert not unlimited.metadata["freshness"]["AAPL"]["stale"]
    early = get_features_for_inference(["bar_features"], "v1", ["AAPL"], "2024-12-03 14:25", mode="latest", settings=settings)
    assert early.metadata["freshness"]["AAPL"]["market_staleness_seconds"] == 0  # before the open: nothing newer could exist
    assert early.metadata["files_searched"] == 1  # one stored day read for one live decision
    assert early.metadata["extraction_timestamp"] == early.metadata["extraction_ts"]
    with pytest.raises(errors.InvalidOptionError, match="max_staleness"):
        get_features_for_inference(["bar_features"], "v1", ["AAPL"], at, mode="latest", max_staleness="-5min", settings=settings)


def test_latest_for_many_decision_times_in_one_call(lake_env):
    settings, *_ = lake_env
    decisions = [pd.Timestamp("2024-11-27 15:00", tz="UTC"), pd.Timestamp("2024-11-29 16:30", tz="UTC"), pd.Timestamp("2024-12-02 20:00:30", tz="UTC")]
    result = get_features_for_inference(GROUPS, "v1", ["AAPL", "SPY"], decisions, mode="latest", settings=settings)
    frame = result.features.reset_index()
    assert len(frame) == 6 and sorted(set(frame["as_of"])) == decisions
    assert (frame["available_ts"] <= frame["as_of"]).all() and not frame["is_imputed"].any()
    assert set(result.metadata["freshness"]["SPY"]) == {d.isoformat() for d in decisions}


def test_training_pull_over_partial_coverage_reports_it_and_strict_raises(lake_env):
    settings, *_ = lake_env
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    lake.write_partition(dq_blocked_table("curated_bars"), "MSFT", dt.date(2024, 11, 25), pd.DataFrame({"rule": ["gap_ratio"]}))
    data = get_features_for_training(["bar_features"], "v1", ["AAPL", "MSFT"], "2024-11-25", "2024-11-28", settings=settings)
    coverage = data.metadata["coverage"]
    assert coverage["AAPL"]["expected_sessions"] == 3 and coverage["AAPL"]["returned_sessions"] == 2
    assert coverage["AAPL"]["missing_sessions"] == ["2024-11-25"] and coverage["AAPL"]["dq_blocked_sessions"] == {}
    assert coverage["MSFT"]["dq_blocked_sessions"] == {"2024-11-25": ["curated_bars"]}
    assert data.metadata["complete"] is False
    with pytest.raises(errors.IncompleteCoverageError, match="AAPL: 1 of 3 sessions missing .*2024-11-25.*DQ-blocked"):
        get_features_for_training(["bar_features"], "v1", ["AAPL", "MSFT"], "2024-11-25", "2024-11-28", strict=True, settings=settings)
    full = get_features_for_training(["bar_features"], "v1", ["AAPL"], "2024-11-26", "2024-11-28", strict=True, settings=settings)
    assert full.metadata["complete"] and full.metadata["coverage"]["AAPL"]["missing_sessions"] == []


def test_model_frame_and_purged_splits(lake_env):
    settings, *_ = lake_env
    data = get_features_for_training(["bar_features"], "v2", SYMBOLS, "2024-11-26", "2024-12-03", include_labels=True, settings=settings)
    assert data.features["imputed_in_window_20"].any() and data.features["imputed_in_window_20"].dtype == bool
    frame = data.model_frame(require_label="fwd_ret_5")
    assert list(frame.columns[:3]) == ["symbol", "ts", "session_date"] and set(frame["session_date"]) == set(DATES)
    assert not frame["is_imputed"].any() and frame["fwd_ret_5"].notna().all() and frame["valid_5"].all()
    folds = list(purged_time_splits(frame, n_splits=4, embargo="30min"))
    assert len(folds) == 3
    for train, test in folds:
        test_start = frame["ts"].iloc[test].min()
        assert (frame["label_available_ts"].iloc[train] <= test_start).all()  # no training label reaches into the test period
        assert (frame["ts"].iloc[train] < test_start).all()


def test_numbers_are_refused_as_dates(lake_env):
    settings, *_ = lake_env
    with pytest.raises(errors.InvalidDateRangeError, match="numbers are not accepted"):
        get_curated_bars("AAPL", 20241126, 20241127, settings=settings)
    with pytest.raises(errors.InvalidDateRangeError):
        get_features_for_inference(["bar_features"], "v1", ["AAPL"], 1732633200, settings=settings)


def test_training_rows_come_ordered_by_symbol_then_time_whatever_the_request_order(lake_env):
    """One group streams out in file order (no sort); asked for in reverse symbol order, the rows must
    still come ordered by (symbol, ts), equal to the sorted request, with the same coverage."""
    settings, *_ = lake_env
    pull = {"include_labels": False, "settings": settings}
    forward = get_features_for_training(["bar_features"], "v1", SYMBOLS, "2024-11-26", "2024-12-03", **pull)
    backward = get_features_for_training(["bar_features"], "v1", SYMBOLS[::-1], "2024-11-26", "2024-12-03", **pull)
    pd.testing.assert_frame_equal(forward.features, backward.features)
    assert list(forward.features["symbol"].unique()) == sorted(SYMBOLS)
    assert forward.features.groupby("symbol")["ts"].is_monotonic_increasing.all()
    assert forward.metadata["coverage"] == backward.metadata["coverage"]
    assert all(c["returned_sessions"] == len(DATES) and c["rows"] == 3 * 390 + 210 for c in forward.metadata["coverage"].values())
    joined = get_features_for_training(GROUPS, "v1", SYMBOLS[::-1], "2024-11-26", "2024-12-03", include_labels=True, settings=settings)
    pd.testing.assert_frame_equal(joined.features[forward.features.columns.drop("available_ts")], forward.features.drop(columns="available_ts"))


def test_feature_files_are_stored_for_fast_reads_bars_compressed(lake_env):
    """Feature and label files: floats and time stamps plain and uncompressed (they do not compress,
    decoding them was half a training pull); bars and raw batches compressed: zstd, LZ4 for files
    below ``SMALL_FILE_ROWS`` rows (zstd's fixed cost per column chunk doubled their write time).
    In every table only the string, date and flag columns are dictionary-encoded (float
    dictionaries made files bigger and slower). DuckDB and pandas read every file as written."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from resources.atomic import write_parquet_atomic
    from resources.parquet_format import SMALL_FILE_ROWS

    settings, *_ = lake_env
    lake_root = settings.base_path / "lake"
    seen = set()
    for table, codec in [("features/bar_features", "UNCOMPRESSED"), ("labels", "UNCOMPRESSED"), ("curated_bars", None), ("raw_bars", None), ("aligned_bars", None)]:
        files = sorted((lake_root / table).rglob("*.parquet"))
        assert files, table
        for path in files:
            meta = pq.ParquetFile(path).metadata
            expected = codec or ("ZSTD" if meta.num_rows >= SMALL_FILE_ROWS else "LZ4")
            seen.add(expected)
            schema = meta.schema.to_arrow_schema()
            for index in range(meta.num_columns):
                column = meta.row_group(0).column(index)
                assert column.compression == expected, (table, path, column.path_in_schema)
                kind = str(schema.field(column.path_in_schema).type)
                if kind in ("double", "int64", "timestamp[ns, tz=UTC]"):
                    assert "RLE_DICTIONARY" not in column.encodings, (table, column.path_in_schema)
                elif kind in ("string", "date32[day]"):
                    assert "RLE_DICTIONARY" in column.encodings, (table, column.path_in_schema)
            rows = duckdb.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
            assert rows == meta.num_rows == len(pd.read_parquet(path)), path
    assert {"UNCOMPRESSED", "LZ4"} <= seen  # this lake's month files hold a few sessions: all small
    for rows, codec in [(SMALL_FILE_ROWS - 1, "LZ4"), (SMALL_FILE_ROWS, "ZSTD")]:  # a month of sessions is large: zstd
        path = write_parquet_atomic(pa.table({"symbol": ["AAPL"] * rows, "close": np.arange(rows, dtype=float)}), settings.base_path / f"codec-{rows}.parquet")
        assert {pq.ParquetFile(path).metadata.row_group(0).column(i).compression for i in range(2)} == {codec}


def test_design_document_argument_order_reads_the_same_rows(lake_env):
    """Seed 001 lists ``get_features_for_training(feature_group, version, start, end, symbols)`` and
    ``get_features_for_inference(feature_group, version, ts, symbols)``; contract 000 puts the symbols
    before the times. Both orders give the same rows (a symbol never parses as a time)."""
    settings, *_ = lake_env
    start, end = pd.Timestamp("2024-11-26 15:00", tz="UTC"), pd.Timestamp("2024-11-26 16:00", tz="UTC")
    contract = get_features_for_training("bar_features", "v1", ["AAPL"], start, end, settings=settings).features
    design = get_features_for_training("bar_features", "v1", start, end, ["AAPL"], settings=settings).features
    pd.testing.assert_frame_equal(design, contract)
    assert len(contract) == 60
    at = pd.Timestamp("2024-11-26 16:10", tz="UTC")
    pd.testing.assert_frame_equal(
        get_features_for_inference("bar_features", "v1", at, ["AAPL", "SPY"], settings=settings).features,
        get_features_for_inference("bar_features", "v1", ["AAPL", "SPY"], at, settings=settings).features,
    )
    with pytest.raises(Exception, match="symbol"):  # a time in both places is still refused
        get_features_for_training("bar_features", "v1", start, start, end, settings=settings)


def test_training_pull_without_labels_or_a_joined_group_is_incomplete(lake_env, tmp_path):
    """A session whose rows have no labels (or no row of a joined group) is not a complete pull: it
    is listed in ``sessions_without_group``, ``complete`` is False, ``strict=True`` raises, and the
    rows' ``valid_h`` is False (not NaN), so ``model_frame(require_label=...)`` leaves them out."""
    import shutil

    settings, *_ = lake_env
    copy = tmp_path / "data"
    shutil.copytree(settings.base_path, copy)
    damaged = load_settings(DATA_PATH_OVERRIDE=str(copy), LAKE_FSYNC="false")
    lake = copy / "lake"
    for folder in [lake / "labels/version=v1/symbol=AAPL", lake / "features/l2_features/version=v1/symbol=MSFT"]:
        month = "2024-12" if "labels" in str(folder) else "2024-11"
        removed = [p for p in folder.rglob("*.parquet") if f"month={month}" in str(p) or f"date={month}" in str(p)]
        assert removed, folder
        for path in removed:
            path.unlink()
    args = (["bar_features", "l2_features"], "v1", ["AAPL", "MSFT"], "2024-11-26", "2024-12-03")
    data = get_features_for_training(*args, include_labels=True, settings=damaged)
    coverage = data.metadata["coverage"]
    assert coverage["AAPL"]["sessions_without_group"] == {"labels": ["2024-12-02"]}
    assert coverage["MSFT"]["sessions_without_group"] == {"l2_features": ["2024-11-26", "2024-11-27", "2024-11-29"]}
    assert coverage["AAPL"]["missing_sessions"] == [] and data.metadata["complete"] is False
    no_label = (data.features["symbol"] == "AAPL") & (data.features["ts"] >= pd.Timestamp("2024-12-02", tz="UTC"))
    assert no_label.sum() == 390 and data.labels["valid_1"].dtype == bool
    assert not data.labels.loc[no_label, "valid_1"].any() and data.labels.loc[~no_label, "valid_1"].any()
    assert data.labels.loc[no_label, "fwd_ret_1"].isna().all()
    frame = data.model_frame(require_label="fwd_ret_1")
    assert not ((frame["symbol"] == "AAPL") & (frame["session_date"] == dt.date(2024, 12, 2))).any()
    with pytest.raises(errors.IncompleteCoverageError, match=r"AAPL: labels missing on 1 session\(s\) \(2024-12-02\); MSFT: l2_features missing on 3"):
        get_features_for_training(*args, include_labels=True, strict=True, settings=damaged)
    whole = get_features_for_training(*args, include_labels=True, strict=True, settings=settings)  # the undamaged lake
    assert whole.metadata["complete"] and all(c["sessions_without_group"] == {} for c in whole.metadata["coverage"].values())
    assert whole.labels["valid_1"].dtype == bool
