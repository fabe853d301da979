"""Contract 000 (the Python API) as written: names, parameters, defaults, result fields, real calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tws_server import FakeTws  # noqa: E402

import platform_api  # noqa: E402
from platform_api import (  # noqa: E402  - the contract: every name importable from the package itself
    BackfillJobHandle,
    BackfillJobStatus,
    BackfillOptions,
    DataQualityMetric,
    DataQualitySummary,
    DatasetHealthStatus,
    DatasetInfo,
    FeatureGroupInfo,
    HistoricalIngestionOptions,
    IngestionJobHandle,
    IngestionJobStatus,
    InferenceFeatures,
    TrainingDataset,
    get_backfill_job_status,
    get_curated_bars,
    get_data_quality_summary,
    get_dataset_health,
    get_features_for_inference,
    get_features_for_training,
    get_ingestion_job_status,
    list_datasets,
    list_feature_groups,
    trigger_backfill,
    trigger_daily_ingestion,
    trigger_historical_ingestion,
)
from platform_api.errors import InvalidOptionError, UnknownJobError  # noqa: E402
from platform_assets.universe import add_symbols  # noqa: E402
from resources.manifests import download_manifest_path, read_download_manifest  # noqa: E402

EMPTY = inspect.Parameter.empty
# contract parameters in order, with their defaults (EMPTY = required); our extras are keyword-only after them
SIGNATURES = {
    "trigger_historical_ingestion": [("source", EMPTY), ("symbols", EMPTY), ("start", EMPTY), ("end", EMPTY), ("options", None)],
    "trigger_daily_ingestion": [("as_of_date", None)],
    "get_ingestion_job_status": [("job_id", EMPTY)],
    "get_curated_bars": [("symbols", EMPTY), ("start", EMPTY), ("end", EMPTY), ("frequency", "1min")],
    "get_features_for_training": [("feature_groups", EMPTY), ("feature_versions", EMPTY), ("symbols", EMPTY), ("start", EMPTY), ("end", EMPTY),
                                  ("include_labels", ...), ("label_source", ...), ("label_def_version", ...)],
    "get_features_for_inference": [("feature_groups", EMPTY), ("feature_versions", EMPTY), ("symbols", EMPTY), ("ts", EMPTY), ("mode", ...)],
    "trigger_backfill": [("dataset_name", EMPTY), ("symbols", EMPTY), ("start", EMPTY), ("end", EMPTY), ("options", None)],
    "get_backfill_job_status": [("job_id", EMPTY)],
    "get_data_quality_summary": [("dataset_name", EMPTY), ("start_date", EMPTY), ("end_date", EMPTY), ("symbols", None)],
    "get_dataset_health": [("dataset_name", EMPTY), ("as_of_date", EMPTY)],
    "list_datasets": [],
    "list_feature_groups": [],
}
FIELDS = {
    IngestionJobStatus: ["job_id", "state", "start_ts", "end_ts", "source", "params", "summary"],
    BackfillJobStatus: ["job_id", "state", "start_ts", "end_ts", "source", "params", "summary"],
    DataQualitySummary: ["dataset_name", "date_range", "metrics"],
    DataQualityMetric: ["metric_name", "value", "status", "thresholds"],
    DatasetHealthStatus: ["dataset_name", "as_of_date", "status", "reasons"],
    DatasetInfo: ["name", "type", "available_date_range", "latest_pipeline_version"],
    FeatureGroupInfo: ["feature_group", "versions", "description"],
    TrainingDataset: ["features", "labels", "metadata"],
    InferenceFeatures: ["features", "metadata"],
}


def test_the_twelve_functions_have_the_contract_parameters_and_defaults():
    assert set(platform_api.CONTRACT_FUNCTIONS) == set(SIGNATURES)
    for name, expected in SIGNATURES.items():
        function = getattr(platform_api, name)
        parameters = list(inspect.signature(function).parameters.values())
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert [p.name for p in positional[: len(expected)]] == [n for n, _ in expected], name
        for parameter, (_, default) in zip(positional, expected):
            if default is not ...:  # ... = owned by the retrieval module's own contract test
                assert parameter.default == default, (name, parameter.name)
        extras = positional[len(expected):]
        assert all(p.default is not EMPTY for p in extras), name  # anything beyond the contract is optional
        assert function.__doc__ and len(function.__doc__) > 40, name


def test_result_objects_carry_the_contract_fields_first():
    for cls, names in FIELDS.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields[: len(names)] == names, cls.__name__
    assert list(HistoricalIngestionOptions.model_fields)[:4] == ["bar_size", "what_to_show", "use_rth", "max_parallel_requests"]
    assert list(BackfillOptions.model_fields)[:3] == ["overwrite_curated", "overwrite_features", "max_parallel_jobs"]
    assert HistoricalIngestionOptions().bar_size == "1 min" and HistoricalIngestionOptions().what_to_show == "TRADES"
    with pytest.raises(ValueError, match="bar_size"):
        HistoricalIngestionOptions(bar_size="7 min")
    for name in ("trigger_historical_ingestion", "trigger_backfill"):
        assert "[start, end)" in getattr(platform_api, name).__doc__  # the range convention, documented on each trigger


def test_the_contract_workflows_on_a_small_offline_backfill(platform):
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    settings = platform.settings
    add_symbols(platform.instance, ["AAPL", "MSFT"])
    utc = dt.timezone.utc
    start, end = dt.datetime(2024, 12, 2, tzinfo=utc), dt.datetime(2024, 12, 4, tzinfo=utc)  # [Dec 2, Dec 4): two sessions

    # 2.1 / 2.3: historical ingestion with an options object, then its status
    handle = trigger_historical_ingestion("sim", ["AAPL", "MSFT"], start, end, HistoricalIngestionOptions(max_parallel_requests=2), wait=True, **kw)
    assert isinstance(handle, IngestionJobHandle) and isinstance(handle.submitted_at, dt.datetime)
    status = get_ingestion_job_status(handle.job_id, instance=platform.instance)
    assert isinstance(status, IngestionJobStatus) and status.state == "SUCCEEDED" and status.source == "sim"
    assert isinstance(status.start_ts, dt.datetime) and status.start_ts.tzinfo is not None and status.end_ts >= status.start_ts
    assert status.params["start"] == "2024-12-02T00:00:00+00:00" and status.params["end"] == "2024-12-04T00:00:00+00:00"
    assert status.params["options"]["max_parallel_requests"] == 2 and status.params["trading_days"] == ["2024-12-02", "2024-12-03"]
    assert {"raw_bars_sim", "curated_bars", "bar_features", "labels"} <= set(status.summary["materializations"])  # the derived layers too
    with pytest.raises(UnknownJobError, match="ingestion job"):
        get_backfill_job_status(handle.job_id, instance=platform.instance)

    # 5.1 / 5.2: backfill with the options as a dict, then its status
    backfill = trigger_backfill("curated_bars", ["AAPL", "MSFT"], start, end, {"overwrite_curated": True, "overwrite_features": True, "max_parallel_jobs": 2}, wait=True, **kw)
    assert isinstance(backfill, BackfillJobHandle)
    done = get_backfill_job_status(backfill.job_id, instance=platform.instance)
    assert isinstance(done, BackfillJobStatus) and done.state == "SUCCEEDED" and done.dataset_name == "curated_bars"
    assert done.end_ts is not None and done.summary["runs_failed"] == 0 and done.summary["materializations"]["curated_bars"] >= 2

    # 3.1 curated bars: [Dec 2 14:30, Dec 2 15:00) UTC is 30 one-minute bars, with gap and dq fields
    bars = get_curated_bars(["AAPL"], dt.datetime(2024, 12, 2, 14, 30, tzinfo=utc), dt.datetime(2024, 12, 2, 15, 0, tzinfo=utc), settings=settings)
    assert len(bars) == 30 and {"dq_status", "gap_type"} <= set(bars.columns)

    # 4.1 / 4.2 features (arguments spelled out: the defaults are the retrieval module's contract test)
    training = get_features_for_training(["bar_features"], {"bar_features": "v1"}, ["AAPL", "MSFT"], start, end,
                                         include_labels=True, label_source="curated_bars", label_def_version="v1", settings=settings)
    assert isinstance(training, TrainingDataset) and len(training.features) == 2 * 2 * 390 and len(training.labels) == len(training.features)
    assert training.metadata["feature_versions"] == {"bar_features": "v1"}
    # label_source "labels" (the labels table's name in list_datasets) is the same labels, echoed in the metadata
    by_table = get_features_for_training(["bar_features"], {"bar_features": "v1"}, ["AAPL", "MSFT"], start, end,
                                         include_labels=True, label_source="labels", label_def_version="v1", settings=settings)
    assert by_table.labels.equals(training.labels) and by_table.metadata["label_source"] == "labels"
    with pytest.raises(InvalidOptionError, match="label_source 'aligned_bars'"):
        get_features_for_training(["bar_features"], {"bar_features": "v1"}, ["AAPL"], start, end, include_labels=True,
                                  label_source="aligned_bars", settings=settings)
    inference = get_features_for_inference(["bar_features"], {"bar_features": "v1"}, ["AAPL"], dt.datetime(2024, 12, 3, 20, 0, tzinfo=utc), mode="exact", settings=settings)
    assert isinstance(inference, InferenceFeatures) and list(inference.features.index.names) == ["symbol", "ts"]

    # 6.1 DQ summary: one DataQualityMetric per rule over [start_date, end_date)
    summary = get_data_quality_summary("curated_bars", dt.date(2024, 12, 2), dt.date(2024, 12, 4), settings=settings)
    assert isinstance(summary, DataQualitySummary) and summary.dataset_name == "curated_bars"
    assert summary.date_range == (dt.date(2024, 12, 2), dt.date(2024, 12, 4))
    assert summary.metrics and all(isinstance(m, DataQualityMetric) for m in summary.metrics)
    names = {m.metric_name for m in summary.metrics}
    assert {"gap_count", "null_rate_close"} <= names  # seed 000 section 6.1's example metric names
    for metric in summary.metrics:
        assert isinstance(metric.value, float) and metric.status in ("ok", "warn", "error") and isinstance(metric.thresholds, dict)
        assert metric.partitions == 4  # 2 symbols x 2 days
    gap_count = {m.metric_name: m for m in summary.metrics}["gap_count"]
    assert gap_count.thresholds == {"warn": 3.0, "error": 30.0}
    assert gap_count.value == summary.to_frame().query("metric == 'gap_count'")["value"].max()  # the worst partition
    only_aapl = get_data_quality_summary("curated_bars", dt.date(2024, 12, 2), dt.date(2024, 12, 3), symbols=["AAPL"], settings=settings)
    assert all(m.partitions == 1 for m in only_aapl.metrics)  # Dec 3 is outside [Dec 2, Dec 3)

    # 6.2 health
    health = get_dataset_health("curated_bars", dt.date(2024, 12, 3), settings=settings)
    assert isinstance(health, DatasetHealthStatus) and health.dataset_name == "curated_bars" and health.as_of_date == dt.date(2024, 12, 3)
    assert health.status in ("GREEN", "YELLOW", "RED") and health.reasons and all(isinstance(r, str) for r in health.reasons)

    # 7.1 / 7.2 catalog
    datasets = {d.name: d for d in list_datasets(settings)}
    assert all(isinstance(d, DatasetInfo) and d.type in ("raw", "curated", "features", "labels") for d in datasets.values())
    assert datasets["curated_bars"].available_date_range == (dt.date(2024, 12, 2), dt.date(2024, 12, 3))
    assert isinstance(datasets["curated_bars"].latest_pipeline_version, str)
    for name in datasets:  # every listed dataset is judged (aligned_bars and labels have their own DQ rules)
        judged = get_dataset_health(name, dt.date(2024, 12, 3), settings=settings)
        assert judged.status in ("GREEN", "YELLOW", "RED") and judged.reasons
        assert get_data_quality_summary(name, dt.date(2024, 12, 2), dt.date(2024, 12, 4), settings=settings).metrics, name
    assert {m.metric_name for m in get_data_quality_summary("labels", dt.date(2024, 12, 2), dt.date(2024, 12, 4), settings=settings).metrics} == {
        "unique_symbol_ts", "ts_increasing"}
    groups = {g.feature_group: g for g in list_feature_groups(settings)}
    assert isinstance(groups["bar_features"], FeatureGroupInfo) and groups["bar_features"].versions == ["v1", "v2"] and groups["bar_features"].description


def test_options_accept_an_object_or_a_dict_and_reject_anything_else(platform):
    kw = dict(instance=platform.instance, settings=platform.settings, defs=platform.defs)
    add_symbols(platform.instance, ["AAPL"])
    with pytest.raises(InvalidOptionError, match="overwrite_curatd"):
        trigger_backfill("curated_bars", ["AAPL"], "2024-12-02", "2024-12-03", {"overwrite_curatd": False}, **kw)
    with pytest.raises(InvalidOptionError, match="BackfillOptions or a dict"):
        trigger_backfill("curated_bars", ["AAPL"], "2024-12-02", "2024-12-03", ["overwrite_curated"], **kw)
    with pytest.raises(InvalidOptionError, match="HistoricalIngestionOptions or a dict"):
        trigger_historical_ingestion("sim", ["AAPL"], "2024-12-02", "2024-12-03", BackfillOptions(), **kw)
    with pytest.raises(InvalidOptionError, match="unknown source 'yahoo'.*tws"):
        trigger_historical_ingestion("yahoo", ["AAPL"], "2024-12-02", "2024-12-03", **kw)
    with pytest.raises(ValueError, match="not an XNYS trading day"):
        trigger_daily_ingestion(dt.date(2024, 12, 1), **kw)
    # bar options a source cannot honour are refused, not ignored under a SUCCEEDED job
    for asked in ({"bar_size": "1 hour"}, {"what_to_show": "MIDPOINT"}, {"use_rth": False}):
        with pytest.raises(InvalidOptionError, match=f"{next(iter(asked))}=.*needs source 'ib'"):
            trigger_historical_ingestion("sim", ["AAPL"], "2024-12-02", "2024-12-03", asked, **kw)
    done = trigger_historical_ingestion("sim", ["AAPL"], "2024-12-02", "2024-12-03", {"bar_size": "1 min", "max_parallel_requests": 2}, wait=True, **kw)
    assert get_ingestion_job_status(done.job_id, instance=platform.instance).state == "SUCCEEDED"  # its defaults are what it delivers


def test_source_tws_is_interactive_brokers(tmp_path):
    import dagster as dg

    from definitions import build_definitions
    from resources.settings import load_settings

    tws = FakeTws()
    try:
        settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", IB_PORT=str(tws.port))
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            handle = trigger_historical_ingestion(
                "tws", ["AAPL"], dt.datetime(2024, 12, 2), dt.datetime(2024, 12, 3), {"bar_size": "1 min", "what_to_show": "TRADES", "use_rth": True},
                add_missing_symbols=True, wait=True, instance=instance, settings=settings, defs=build_definitions(settings),
            )
            status = get_ingestion_job_status(handle.job_id, instance=instance)
            assert status.state == "SUCCEEDED", status.summary
            assert status.source == "ib" and status.params["source"] == "tws" and set(status.summary["materializations"]) == {"raw_bars_ib", "curated_bars", "aligned_bars", "bar_features", "labels"}
        assert [r.fields[16] for r in tws.historical_requests()] == ["1 min"]
        records = read_download_manifest(download_manifest_path(settings.base_path))
        assert [(r["vendor"], r["bar_size"], r["symbol"]) for r in records] == [("IBKR", "1 min", "AAPL")]  # the guide's spellings
        assert Path(records[0]["path"]).is_absolute() and Path(records[0]["path"]).exists()
        assert pd.Timestamp(records[0]["time_start"]).date() == dt.date(2024, 12, 2)
    finally:
        tws.close()


def test_every_error_class_is_importable_from_the_package():
    """The README: every error of ``platform_api.errors`` is also importable from ``platform_api``."""
    import inspect

    import platform_api
    from platform_api import errors

    classes = {name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == errors.__name__}
    assert {"StaleDataError", "IncompleteCoverageError", "NoDataError"} <= classes
    assert classes <= set(platform_api.__all__)
    assert all(getattr(platform_api, name) is getattr(errors, name) for name in classes)


def test_the_package_names_its_release_as_pyproject_does():
    """Seed 004 "Versioning and Compatibility": TF_1 pins a release; ``platform_api.__version__`` is it."""
    import tomllib

    import platform_api

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert platform_api.__version__ == project["version"]
    major, minor, patch = (int(part) for part in platform_api.__version__.split("."))  # semantic versioning
    assert (major, minor, patch) >= (0, 1, 0)


def test_building_the_definitions_prints_no_dagster_beta_or_preview_notices(tmp_path):
    """A training script or job calling the API builds the definitions: Dagster's Beta/Preview
    notices about features used on purpose (backfill_policy, partitioned checks) used to fill its
    stderr, every build."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = "from definitions import build_definitions\nfrom resources.settings import load_settings\nbuild_definitions(load_settings())\nprint('BUILT')\n"
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=180)
    assert "BUILT" in done.stdout, done.stderr[-2000:]
    assert "BetaWarning" not in done.stderr and "PreviewWarning" not in done.stderr, done.stderr[-2000:]
