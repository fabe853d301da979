"""Training datasets (immutable, content-addressed) and batch scoring, on the real graph.

The lake is filled by real backfill runs of the offline source on a temp Dagster instance; the
datasets and predictions are materialized through their Dagster assets; the HTTP model runs
against a real HTTP server on loopback.
"""

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

import platform_api
from bench import dataset_build
from definitions import build_definitions
from platform_api import errors
from platform_api.backfill import plan_backfill, run_backfill
from platform_api.catalog import list_datasets
from platform_api.cli import main as mdp
from platform_api.lake_reader import frame as duck_frame
from platform_api.retrieval import get_features_for_inference
from platform_api.scoring.batch_scoring import BatchScoringConfig, ScoringRefusedError, get_predictions, run_batch_scoring
from platform_api.scoring.example_model import ExampleMeanReversionModel
from platform_api.scoring.models import load_model
from platform_api.training.dataset_builder import (
    TrainingDatasetConfig, build_dataset, build_training_dataset, diff_frames, list_training_datasets, load_dataset,
)
from platform_assets.calendars import STOCKS, session_bounds
from platform_assets.ml.assets import batch_scoring_schedule
from resources.dataset_store import DatasetStore, frame_hash
from resources.settings import load_settings
from service_harness import evaluate_tick

SYMBOLS = ["AAPL", "MSFT"]
DATES = [dt.date(2024, 11, 25), dt.date(2024, 11, 26), dt.date(2024, 11, 27)]
SCORE_DAY = dt.date(2024, 11, 27)
GROUPS = {"bar_features": "v1", "l2_features": "v1"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    settings = load_settings(DATA_PATH_OVERRIDE=str(root / "data"), LAKE_FSYNC="false")
    defs = build_definitions(settings)
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        report = run_backfill(instance, plan_backfill(SYMBOLS, DATES[0], DATES[-1]), defs=defs, add_missing_symbols=True)
        assert report.success
        yield root, settings, defs, instance


def _config(**extra) -> TrainingDatasetConfig:
    return TrainingDatasetConfig(list(GROUPS), dict(GROUPS), "curated_bars", "2024-11-25", "2024-11-27", SYMBOLS, **extra)


def test_dataset_is_immutable_and_a_rebuild_reports_changed_data(env):
    root, settings, defs, instance = env
    cfg = _config(name="mr-train", require_label="fwd_ret_5")
    handle = build_training_dataset(cfg, instance=instance, defs=defs, settings=settings)
    assert handle.created and not handle.changed and handle.previous_dataset_id is None
    assert handle.dataset_id.startswith("mr-train-") and handle.dataset_id == f"mr-train-{handle.content_hash[:12]}"
    original_bytes = open(handle.path, "rb").read()
    frame = handle.to_pandas()
    manifest = handle.manifest

    # the frame: features + labels of the two sessions of [11-25, 11-27), filtered as configured
    assert set(frame["symbol"]) == set(SYMBOLS) and sorted(set(frame["session_date"])) == DATES[:2]
    assert {"ret_1", "spread_bps", "fwd_ret_5", "label_available_ts", "available_ts"} <= set(frame.columns)
    assert frame["fwd_ret_5"].notna().all() and not frame["is_imputed"].any()
    assert frame["ts"].max() < pd.Timestamp("2024-11-27", tz="UTC")

    # the manifest: config, rows, schema, hashes, sources with their materializations, extraction time
    assert manifest["rows"] == len(frame) == handle.rows and manifest["content_hash"] == frame_hash(frame)
    assert [c["name"] for c in manifest["schema"]] == list(frame.columns)
    assert {c["name"]: c["arrow_type"] for c in manifest["schema"]}["ts"] == "timestamp[ns, tz=UTC]"
    assert manifest["config"]["feature_versions"] == GROUPS and manifest["config"]["require_label"] == "fwd_ret_5"
    assert manifest["config"]["start"] == "2024-11-25T00:00:00+00:00" and manifest["extraction_ts"]
    sources = {s["asset"]: s for s in manifest["sources"]}
    assert set(sources) == {"bar_features", "l2_features", "labels"}
    for source in sources.values():
        assert source["partitions_expected"] == 2 and source["partitions_materialized"] == 2
        assert set(source["materializations"]) == {"2024-11-25", "2024-11-26"}
        assert all(m["run_id"] and m["storage_id"] for m in source["materializations"].values())
        assert source["stored_files"]["files"] >= len(SYMBOLS)  # per-date or month files
    assert manifest["run_id"]  # built by a Dagster run
    event = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("training_datasets"), asset_partitions=["mr-train"]), limit=5)
    assert len(event.records) == 1 and event.records[0].asset_materialization.metadata["dataset_id"].value == handle.dataset_id

    # the same frame through pyarrow, DuckDB and the I/O manager
    pd.testing.assert_frame_equal(handle.to_arrow().to_pandas(), frame)
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        pd.testing.assert_frame_equal(duck_frame(conn, "SELECT * FROM read_parquet($p, hive_partitioning = false)", {"p": handle.path}), frame)
        assert handle.to_duckdb(conn).aggregate("count(*), count(DISTINCT symbol)").fetchall() == [(len(frame), 2)]
    pd.testing.assert_frame_equal(defs.load_asset_value("training_datasets", partition_key="mr-train", instance=instance), frame)

    # a rebuild of the same config with unchanged data confirms the same id and writes nothing
    again = build_training_dataset(cfg, instance=instance, defs=defs, settings=settings)
    assert again.dataset_id == handle.dataset_id and not again.changed and not again.created

    # the feature tables are re-computed from changed inputs (another simulation seed) for 11-26
    reseeded = load_settings(DATA_PATH_OVERRIDE=str(settings.base_path), LAKE_FSYNC="false", SIM_SEED="11")
    report = run_backfill(instance, plan_backfill(SYMBOLS, DATES[1], DATES[1]), defs=build_definitions(reseeded))
    assert report.success
    # ... the stored dataset is untouched: byte-identical, hashes hold, loads the same frame
    assert open(handle.path, "rb").read() == original_bytes
    assert load_dataset(handle.dataset_id, settings=settings).verify()["ok"]
    pd.testing.assert_frame_equal(load_dataset(handle.dataset_id, settings=settings).to_pandas(), frame)

    # ... and a rebuild says the data changed: a new id beside the old one, with a diff
    rebuilt = build_training_dataset(cfg, instance=instance, defs=defs, settings=settings)
    assert rebuilt.changed and rebuilt.created and rebuilt.dataset_id != handle.dataset_id
    assert rebuilt.previous_dataset_id == handle.dataset_id
    diff = rebuilt.diff
    assert diff["rows_changed"] > 0 and "ret_1" in diff["changed_columns"] and "spread_bps" in diff["changed_columns"]
    assert diff["first_changed_row"]["ts"].startswith("2024-11-26")  # 11-25 was not re-computed
    new = rebuilt.to_pandas()
    day1 = pd.Timestamp("2024-11-26", tz="UTC")
    pd.testing.assert_frame_equal(new[new["ts"] < day1].reset_index(drop=True), frame[frame["ts"] < day1].reset_index(drop=True))
    assert open(handle.path, "rb").read() == original_bytes and handle.verify()["ok"]
    assert load_dataset("mr-train", settings=settings).dataset_id == rebuilt.dataset_id  # a name = its latest build
    listed = {d["dataset_id"]: d for d in list_training_datasets(settings=settings)}
    assert listed[handle.dataset_id]["latest"] is False and listed[rebuilt.dataset_id]["latest"] is True
    builds = DatasetStore(settings.base_path).builds("mr-train")
    assert [b["changed"] for b in builds] == [False, False, True]

    assert all(d.type in ("raw", "curated", "features", "labels") for d in list_datasets(settings))  # contract 7.1's types
    catalog = {d.name: d for d in list_datasets(settings, include_outputs=True)}
    entry = catalog["training/mr-train"]
    assert entry.type == "training" and entry.versions == (handle.dataset_id, rebuilt.dataset_id)
    assert entry.latest_pipeline_version == rebuilt.dataset_id and entry.available_date_range == (DATES[0], DATES[1])
    assert catalog["curated_bars"].type == "curated"


def test_tampering_is_detected_and_configs_are_validated(env, tmp_path):
    root, settings, defs, instance = env
    handle = build_dataset(_config(include_labels=False), settings=settings)  # no Dagster: name derived from the config
    assert handle.name.startswith("ds-") and handle.manifest["config"]["include_labels"] is False
    assert build_dataset(_config(include_labels=False), settings=settings).dataset_id == handle.dataset_id
    assert not any(c.startswith("fwd_ret") for c in handle.to_pandas().columns)

    build_dataset(_config(name="bound", include_labels=False), settings=settings)
    with pytest.raises(errors.InvalidOptionError, match="built from another config"):  # one name = one config
        build_dataset(_config(name="bound", include_labels=False, drop_imputed=False), settings=settings)
    with pytest.raises(errors.InvalidInputError, match="invalid dataset name"):
        _config(name="../etc").dataset_name()
    with pytest.raises(errors.InvalidOptionError, match="derived from the config"):
        _config(name="ds-000000000000").dataset_name()
    with pytest.raises(errors.UnknownFeatureVersionError):
        _config().__class__(["bar_features"], {"bar_features": "v9"}, "curated_bars", "2024-11-25", "2024-11-27", SYMBOLS).canonical()
    with pytest.raises(errors.InvalidOptionError, match="label_source"):
        TrainingDatasetConfig(["bar_features"], "v1", "vendor_x", "2024-11-25", "2024-11-27", SYMBOLS).canonical()
    with pytest.raises(errors.InvalidOptionError, match="require_label"):
        _config(require_label="fwd_ret_99").canonical()
    with pytest.raises(errors.InvalidDateRangeError):
        TrainingDatasetConfig(["bar_features"], "v1", "curated_bars", "2024-11-27", "2024-11-25", SYMBOLS).canonical()
    with pytest.raises(errors.NoDataError, match="ZZZZ"):  # raised inside the Dagster run, re-raised as its own type
        build_training_dataset(TrainingDatasetConfig(["bar_features"], "v1", "curated_bars", "2024-11-25", "2024-11-27", ["ZZZZ"]),
                               instance=instance, defs=defs, settings=settings)

    store = DatasetStore(settings.base_path)
    with open(handle.path, "r+b") as data:  # flip a byte: verify names the file
        data.seek(100)
        byte = data.read(1)
        data.seek(100)
        data.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(OSError, match="sha256"):
        store.verify(handle.dataset_id)

    assert platform_api.build_training_dataset is build_training_dataset and platform_api.run_batch_scoring is run_batch_scoring
    entry = load_model("platform_api.scoring.example_model:ExampleMeanReversionModel")
    assert (entry.name, entry.version) == ("example_mean_reversion", "1")
    with pytest.raises(errors.InvalidOptionError, match="invalid model"):
        load_model("not a model")

    a = pd.DataFrame({"symbol": ["A", "A", "B"], "ts": [1, 2, 1], "x": [1.0, np.nan, 3.0]})
    b = pd.DataFrame({"symbol": ["A", "A", "C"], "ts": [1, 2, 1], "x": [1.0, np.nan, 4.0]})
    assert diff_frames(a, a)["rows_changed"] == 0
    d = diff_frames(a, b)
    assert (d["rows_added"], d["rows_removed"], d["rows_changed"]) == (1, 1, 0)


def _expected_example(settings, symbols, at) -> pd.Series:
    rows = get_features_for_inference(["bar_features"], "v1", symbols, at, settings=settings).features
    return pd.Series(ExampleMeanReversionModel().predict(rows.drop(columns=["as_of", "available_ts"])), index=rows.index.get_level_values("symbol"))


def test_scoring_the_example_model_writes_a_prediction_for_every_tracked_symbol(env):
    root, settings, defs, instance = env
    run_batch_scoring(BatchScoringConfig(scoring_date=SCORE_DAY), instance=instance, defs=defs, settings=settings)  # the offline default
    stored = get_predictions("example_mean_reversion", "1", SCORE_DAY, SCORE_DAY + dt.timedelta(days=1), settings=settings)
    close = session_bounds(STOCKS, SCORE_DAY)[1]
    assert sorted(stored["symbol"]) == SYMBOLS and (stored["as_of"] == close).all()
    assert (stored["ts"] == close - pd.Timedelta(minutes=1)).all() and (stored["available_ts"] <= stored["as_of"]).all()
    assert stored["prediction"].between(-1, 1).all() and stored["prediction"].ne(0).any()
    expected = _expected_example(settings, SYMBOLS, close)
    np.testing.assert_allclose(stored.set_index("symbol")["prediction"].loc[SYMBOLS], expected.loc[SYMBOLS].to_numpy())
    assert json.loads(stored["feature_versions"].iloc[0]) == {"bar_features": "v1"} and (stored["model_version"] == "1").all()
    assert (stored["staleness_seconds"] == 60).all() and stored["run_id"].str.len().gt(0).all()
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("predictions"), asset_partitions=[SCORE_DAY.isoformat()]), limit=1)
    meta = records.records[0].asset_materialization.metadata
    assert meta["model_name"].value == "example_mean_reversion" and meta["symbols_scored"].value == 2
    assert meta["health"].value["curated_bars"] in ("GREEN", "YELLOW")
    assert {d.name: d.type for d in list_datasets(settings, include_outputs=True)}["predictions/example_mean_reversion"] == "predictions"
    assert "predictions/example_mean_reversion" not in {d.name for d in list_datasets(settings)}

    # a Python model from a file and several decision times
    model_file = root / "my_model.py"
    model_file.write_text("import numpy as np\n\nname = 'const'\n\ndef predict(frame):\n    return np.full(len(frame), 0.5)\n")
    open_ = session_bounds(STOCKS, SCORE_DAY)[0]
    times = [open_ + pd.Timedelta(minutes=30), open_ + pd.Timedelta(minutes=90)]
    run_batch_scoring(BatchScoringConfig(model=f"{model_file}:predict", scoring_date=SCORE_DAY, ts=times, model_version="v3"),
                      instance=instance, defs=defs, settings=settings)
    const = get_predictions("predict", "v3", SCORE_DAY, SCORE_DAY + dt.timedelta(days=1), settings=settings)
    assert len(const) == len(SYMBOLS) * 2 and (const["prediction"] == 0.5).all() and sorted(set(const["as_of"])) == times


def test_scoring_refuses_a_red_window_naming_the_reasons(env):
    root, settings, defs, instance = env
    late = dt.date(2024, 12, 9)  # 8 sessions after the last ingested one
    with pytest.raises(ScoringRefusedError, match=r"refusing to score the 2024-12-09 session: .*curated_bars is RED: latest checked session is 2024-11-27"):
        run_batch_scoring(BatchScoringConfig(scoring_date=late), instance=instance, defs=defs, settings=settings)
    with pytest.raises(ScoringRefusedError, match="no data-quality results"):
        run_batch_scoring(BatchScoringConfig(scoring_date="2024-11-01", symbols=["AAPL"]), instance=instance, defs=defs, settings=settings)
    with pytest.raises(errors.InvalidOptionError, match="not an XNYS trading session"):
        run_batch_scoring(BatchScoringConfig(scoring_date="2024-11-28"), instance=instance, defs=defs, settings=settings)
    with pytest.raises(errors.InvalidOptionError, match="cannot be imported"):
        run_batch_scoring(BatchScoringConfig(model="no_such_pkg.model:Model", scoring_date=SCORE_DAY), instance=instance, defs=defs, settings=settings)
    failed = [r for r in instance.get_runs() if r.tags.get("dagster/partition") == "2024-12-09"]
    assert failed and failed[0].status == dg.DagsterRunStatus.FAILURE  # the refusal is a failed run in the UI


class _Inference(BaseHTTPRequestHandler):
    """A loopback inference service: the example model behind POST /v1/models/mr:predict."""

    requests: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.end_headers()
            self.wfile.write(b'{"error": "bad request"}')
            return
        frame = pd.DataFrame(body["instances"])[body["columns"]].astype("float64")
        answer = {"predictions": ExampleMeanReversionModel().predict(frame).tolist(), "model_name": "mr_service", "model_version": "7"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_http_inference_path_against_a_local_server(env):
    root, settings, defs, instance = env
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Inference)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/models/mr:predict?token=s3cret"
        run_batch_scoring(BatchScoringConfig(model=url, scoring_date=SCORE_DAY), instance=instance, defs=defs, settings=settings)
        (request,) = _Inference.requests
        assert request["path"] == "/v1/models/mr:predict?token=s3cret"
        assert {i["symbol"] for i in request["body"]["instances"]} == set(SYMBOLS) and "ret_mean_5" in request["body"]["columns"]
        stored = get_predictions("mr_service", "7", SCORE_DAY, SCORE_DAY + dt.timedelta(days=1), settings=settings)
        expected = _expected_example(settings, SYMBOLS, session_bounds(STOCKS, SCORE_DAY)[1])
        np.testing.assert_allclose(stored.set_index("symbol")["prediction"].loc[SYMBOLS], expected.loc[SYMBOLS].to_numpy())
        assert (stored["model_spec"] == f"http://127.0.0.1:{server.server_port}/v1/models/mr:predict").all()  # no token stored
        _Inference.status = 400
        with pytest.raises(RuntimeError, match="answered HTTP 400"):
            run_batch_scoring(BatchScoringConfig(model=url, scoring_date=SCORE_DAY), instance=instance, defs=defs, settings=settings)
    finally:
        _Inference.status = 200
        server.shutdown()
        server.server_close()


def test_schedule_scores_sessions_after_the_daily_ingestion(env):
    root, settings, defs, instance = env
    at = pd.Timestamp("2024-11-27 18:30", tz=STOCKS.timezone).to_pydatetime()
    requests = evaluate_tick(batch_scoring_schedule, instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [("2024-11-27", "scoring-2024-11-27")]
    holiday = pd.Timestamp("2024-11-28 18:30", tz=STOCKS.timezone).to_pydatetime()
    assert not evaluate_tick(batch_scoring_schedule, instance=instance, scheduled_execution_time=holiday, repository_def=defs.get_repository_def()).run_requests
    assert batch_scoring_schedule.cron_schedule == "30 18 * * 1-5" and "batch_scoring_schedule" in {s.name for s in defs.schedules}


def test_cli_builds_lists_shows_and_scores(env, monkeypatch, capsys):
    root, settings, defs, instance = env
    from resources.settings import get_settings

    home = root / "cli_home"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(settings.base_path))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    get_settings.cache_clear()
    try:
        args = ["dataset", "build", "--groups", "bar_features", "--symbols", "AAPL,MSFT", "--start", "2024-11-25", "--end", "2024-11-26", "--name", "cli-ds"]
        assert mdp(args) == 0
        out = capsys.readouterr().out
        assert "built cli-ds-" in out and ": new" in out
        assert mdp(args) == 0 and "unchanged" in capsys.readouterr().out
        assert mdp(["dataset", "list"]) == 0 and "cli-ds-" in capsys.readouterr().out
        assert mdp(["dataset", "show", "cli-ds", "--verify", "--json"]) == 0
        shown = capsys.readouterr().out.splitlines()
        assert json.loads(shown[0])["name"] == "cli-ds" and shown[1].startswith("verified")
        assert mdp(["dataset", "show", "nope"]) == 2 and "no stored training dataset 'nope'" in capsys.readouterr().err
        assert mdp(["score", "--date", "2024-11-27", "--symbols", "AAPL,MSFT"]) == 0
        assert "2 predictions for 2 symbols" in capsys.readouterr().out
        assert mdp(["score", "--date", "2024-12-09", "--symbols", "AAPL"]) == 1 and "curated_bars is RED" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_dataset_build_benchmark_runs_at_tiny_scale():
    results = dataset_build.run(symbols=2, days=2)
    assert [r.what.split(" 2 sym")[0] for r in results] == ["dataset build", "dataset rebuild, unchanged,", "dataset load (pandas)"]
    assert all(r.ours_s > 0 and r.baseline_s > 0 for r in results) and results[0].rows > 0


def test_a_build_log_line_torn_by_a_full_disk_neither_blocks_the_name_nor_the_next_build(tmp_path):
    """``builds.jsonl`` is append-only: a write cut short (no newline) is skipped when read and
    moved aside by the next append (before: every resolve and rebuild of the name raised)."""
    import json

    import pyarrow as pa

    from resources.dataset_store import BUILDS_FILE, DatasetStore

    store = DatasetStore(tmp_path, fsync=False)
    with store.lock("ds"):
        dataset_id, _ = store.write("ds", pa.table({"symbol": ["AAPL"], "x": [1.0]}), {})
        store.log_build("ds", {"dataset_id": dataset_id, "changed": True})
    log = store.name_dir("ds") / BUILDS_FILE
    line = json.dumps({"dataset_id": dataset_id, "changed": False}) + "\n"
    with open(log, "a") as handle:
        handle.write(line[: len(line) // 2])
    assert store.resolve("ds") == dataset_id and len(store.builds("ds")) == 1
    with store.lock("ds"):
        store.log_build("ds", {"dataset_id": dataset_id, "changed": False})
    assert [b["changed"] for b in store.builds("ds")] == [True, False] and store.resolve("ds") == dataset_id
    assert log.with_name(log.name + ".torn").read_text().strip() == line[: len(line) // 2].strip()
