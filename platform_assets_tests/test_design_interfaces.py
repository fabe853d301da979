"""Seed 001 (the low-level design): its configuration objects, gap engine, feature functions,
stores, ingestor and pipeline entry points, by the names and signatures it gives them (``src.*``),
against a real lake, a real Dagster instance and the fake TWS server."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from platform_assets.universe import add_symbols
from resources.lake import ALIGNED_BARS, CURATED_BARS, feature_table, quarantine_table, raw_bars_table
from resources.sim_market import simulate_day
from resources.validation import InvalidInputError

sys.path.insert(0, str(Path(__file__).parent))
from tws_server import FakeTws  # noqa: E402

UTC = dt.timezone.utc
DAY = dt.date(2024, 12, 2)


@pytest.fixture
def design_env(platform, monkeypatch):
    """The environment the design's modules read: DAGSTER_HOME and the data folder of ``platform``."""
    from resources.settings import get_settings

    monkeypatch.setenv("DAGSTER_HOME", str(platform.home))
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    yield platform
    get_settings.cache_clear()


def _bars(symbol: str, day: dt.date) -> pd.DataFrame:
    return simulate_day(7, symbol, day).bars.assign(symbol=symbol)


# ---------------------------------------------------------------------------------- 3.1 config
def test_config_objects_validate_and_load_from_yaml(tmp_path):
    from src.config.settings import PlatformConfig, RateLimitConfig, TimeSeriesConfig, TwsSourceConfig, load_config

    tws = TwsSourceConfig(host="10.0.0.5", port=4002, client_id=7)
    assert (tws.historical_bar_size, tws.historical_duration) == ("1 min", "1 D") and isinstance(tws.rate_limit_config, RateLimitConfig)
    resource = tws.to_resource()
    assert (resource.host, resource.port, resource.client_id, resource.pacing_max_requests) == ("10.0.0.5", 4002, 7, 60)
    assert TimeSeriesConfig().model_dump() == {"canonical_frequency": "1min", "timezone": "America/New_York", "trading_calendar": "XNYS"}
    with pytest.raises(ValueError):
        TimeSeriesConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        TwsSourceConfig(port=70000)
    document = tmp_path / "pipeline.yaml"
    document.write_text("sources:\n  tws: {kind: tws, port: 7496, rate_limit_config: {max_requests: 30}}\npipeline: {symbols: [AAPL]}\n")
    config = load_config(document)
    assert isinstance(config, PlatformConfig) and config.sources["tws"].port == 7496 and config.sources["tws"].rate_limit_config.max_requests == 30
    document.write_text("sources:\n  tws: {kind: tws, prot: 1}\n")
    with pytest.raises(ValueError, match="pipeline.yaml"):
        load_config(document)


# ---------------------------------------------------------------------------------- 3.6 gaps
def test_fill_gaps_builds_the_calendar_timeline_fills_per_strategy_and_marks_what_it_filled():
    from src.data_quality.gaps import GapConfig, fill_gaps

    early_close = dt.date(2024, 11, 29)  # 13:00 close: 210 minutes
    raw = pd.concat([_bars("AAPL", dt.date(2024, 11, 18)), _bars("MSFT", early_close)], ignore_index=True)
    raw = raw.drop(index=[5, 6, 7]).reset_index(drop=True)  # a three-minute hole in AAPL
    filled, mask = fill_gaps(raw, GapConfig(frequency="1min", entity_key="symbol", time_field="ts",
                                            imputation_strategies={"close": "ffill", "volume": "zero", "open": "previous_close"}))
    assert filled.groupby("symbol").size().to_dict() == {"AAPL": 390, "MSFT": 210}
    assert list(mask.columns) == ["is_gap", "close_imputed", "volume_imputed", "open_imputed"] and mask.index.equals(filled.index)
    aapl, aapl_mask = filled[filled["symbol"] == "AAPL"], mask[filled["symbol"].to_numpy() == "AAPL"]
    hole = aapl.index[5:8]
    assert aapl_mask.loc[hole, "is_gap"].all() and aapl_mask.loc[hole, "close_imputed"].all()
    assert (aapl.loc[hole, "close"] == aapl["close"].iloc[4]).all() and (aapl.loc[hole, "volume"] == 0).all()
    assert (aapl.loc[hole, "open"] == aapl["close"].iloc[4]).all()  # previous close
    assert aapl.loc[hole, "high"].isna().all()  # no strategy: left missing
    real = ~mask["is_gap"].to_numpy()
    assert not mask.loc[real, ["close_imputed", "volume_imputed"]].to_numpy().any()
    assert filled["volume"].dtype == np.int64
    # no look-ahead with ffill: the filled values up to a minute do not change when later bars are removed
    cut = raw[~((raw["symbol"] == "AAPL") & (raw["ts"] >= pd.Timestamp("2024-11-18 16:00", tz="UTC")))]
    early, _ = fill_gaps(cut, GapConfig(imputation_strategies={"close": "ffill"}))
    before = early[(early["symbol"] == "AAPL") & (early.index < pd.Timestamp("2024-11-18 16:00", tz="UTC"))]["close"]
    reference = filled[(filled["symbol"] == "AAPL") & (filled.index < pd.Timestamp("2024-11-18 16:00", tz="UTC"))]["close"]
    assert before.equals(reference)
    with pytest.raises(ValueError, match="unknown imputation"):
        GapConfig(imputation_strategies={"close": "magic"})


# ---------------------------------------------------------------------------------- 3.7.2 features
def test_feature_functions_are_trailing_per_symbol_and_keep_the_callers_rows():
    from src.pipelines.feature_pipeline import lag, rolling_mean, rolling_volatility

    frame = pd.concat([_bars("AAPL", DAY), _bars("MSFT", DAY)], ignore_index=True).drop_duplicates(["symbol", "ts"])
    frame = frame[frame["close"] > 0].sample(frac=1.0, random_state=3)  # any row order
    out = lag(rolling_volatility(rolling_mean(frame, window=20), window=20), periods=[1, 5, 10])
    assert out.index.equals(frame.index) and {"close_rolling_mean_20", "close_rolling_volatility_20", "close_lag_1", "close_lag_5", "close_lag_10"} <= set(out.columns)
    aapl = out[out["symbol"] == "AAPL"].sort_values("ts")
    close = aapl["close"].reset_index(drop=True)
    assert np.allclose(aapl["close_rolling_mean_20"].to_numpy()[19:], close.rolling(20).mean().to_numpy()[19:]) and aapl["close_rolling_mean_20"].iloc[:19].isna().all()
    assert np.allclose(aapl["close_rolling_volatility_20"].to_numpy()[20:], np.log(close).diff().rolling(20).std().to_numpy()[20:])
    assert (aapl["close_lag_5"].to_numpy()[5:] == close.to_numpy()[:-5]).all()
    # trailing: dropping every row after a cut leaves the values before it unchanged
    cut = frame[frame["ts"] < pd.Timestamp("2024-12-02 17:00", tz="UTC")]
    again = rolling_mean(cut, window=20)
    assert np.allclose(again["close_rolling_mean_20"].dropna(), out.loc[again.index, "close_rolling_mean_20"].dropna())
    with pytest.raises(ValueError, match="never looks ahead"):
        lag(frame, periods=[-1])


# ---------------------------------------------------------------------------------- 3.3 stores
def test_raw_store_appends_tws_bars_by_symbol_and_date_and_reads_the_newest_batch(design_env):
    from resources.ib_source import BarEvent
    from src.storage.raw_store import RawStore

    minutes = pd.date_range("2024-12-02 14:30", periods=5, freq="1min", tz="UTC")
    events = [BarEvent(ts.to_pydatetime(), 10.0 + i, 10.5 + i, 9.5 + i, 10.2 + i, 100.0, "AAPL") for i, ts in enumerate(minutes)]
    events.append(events[2])  # a repeated ts
    store = RawStore()
    store.write_tws_bars(events, batch_id="tws-a", ingestion_ts=dt.datetime(2024, 12, 2, 21, tzinfo=UTC))
    store.write_tws_bars(events, batch_id="tws-a", ingestion_ts=dt.datetime(2024, 12, 2, 22, tzinfo=UTC))  # same id: not written again
    lake, table = store.lake, raw_bars_table("ib")
    assert len(lake.batch_files(table, "AAPL", DAY)) == 1
    assert pq.read_table(lake.batch_files(quarantine_table(table), "AAPL", DAY)[0]).num_rows == 1
    bars = store.read_tws_bars(["AAPL"], dt.datetime(2024, 12, 2, 14, 31, tzinfo=UTC), dt.datetime(2024, 12, 2, 14, 34, tzinfo=UTC))
    assert list(bars["close"]) == [11.2, 12.2, 13.2] and set(bars["batch_id"]) == {"tws-a"} and set(bars["source"]) == {"ib"}
    with pytest.raises(InvalidInputError, match="symbol_of"):
        store.write_tws_bars([BarEvent(minutes[0].to_pydatetime(), 1, 1, 1, 1, 1, "265598")], "tws-b", dt.datetime.now(UTC))


def test_curated_and_feature_stores_read_through_the_point_in_time_api_and_guard_their_writes(design_env):
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_api.retrieval import get_curated_bars
    from src.storage.curated_store import CuratedStore
    from src.storage.feature_store import FeatureStore
    from src.storage.partition_key import PartitionKey

    assert run_backfill(design_env.instance, plan_backfill(["AAPL"], DAY, DAY), defs=design_env.defs, add_missing_symbols=True).success
    start, end = dt.datetime(2024, 12, 2, 14, 30, tzinfo=UTC), dt.datetime(2024, 12, 2, 15, 0, tzinfo=UTC)
    curated = CuratedStore()
    bars = curated.read_curated_bars("curated_bars", ["AAPL"], start, end)
    assert bars.equals(get_curated_bars(["AAPL"], start, end)) and len(bars) == 30
    aligned = curated.read_curated_bars("aligned_bars", ["AAPL"], start, end)
    assert len(aligned) == 30 and "spread_bps" in aligned.columns
    with pytest.raises(InvalidInputError, match="other symbols"):
        curated.write_curated_bars(bars.assign(symbol="MSFT"), "curated_bars", PartitionKey("AAPL", DAY))

    features = FeatureStore()
    training = features.get_features_for_training("bar_features", "v1", start, end, ["AAPL"])
    assert len(training) == 30 and (training["available_ts"] <= end).all()
    live = features.get_features_for_inference("bar_features", "v1", dt.datetime(2024, 12, 2, 15, 0, 30, tzinfo=UTC), ["AAPL"])
    assert len(live) == 1 and (live["available_ts"] <= pd.Timestamp("2024-12-02 15:00:30", tz="UTC")).all()
    for frame in (training, live):  # seed 001 3.7.2: metadata columns (feature_group, version)
        assert set(frame["feature_group"]) == {"bar_features"} and set(frame["version"]) == {"v1"}
    own = bars[["ts"]].assign(available_ts=bars["ts"] + pd.Timedelta(minutes=1), my_signal=np.arange(len(bars), dtype=float))
    features.write_features(own, "my_signals", "v1", "AAPL/2024-12-02")
    stored = features.lake.read(feature_table("my_signals", "v1"), ["AAPL"], [DAY])
    assert list(stored["my_signal"]) == list(range(30)) and set(stored["feature_group"]) == {"my_signals"}
    with pytest.raises(InvalidInputError, match="computed by the platform"):
        features.write_features(own, "bar_features", "v1", PartitionKey("AAPL", DAY))


# ---------------------------------------------------------------------------------- 3.4 / 3.7 pipelines
def test_pipeline_entry_points_materialize_their_assets_for_one_date(design_env):
    from platform_api.backfill import plan_backfill, run_backfill
    from src.pipelines.alignment_pipeline import run_alignment
    from src.pipelines.feature_pipeline import run_feature_pipeline
    from src.pipelines.runs import PipelineRunError
    from src.pipelines.transform_pipeline import run_transform_tws_bars

    import dagster as dg

    add_symbols(design_env.instance, ["AAPL"])
    assert run_backfill(design_env.instance, plan_backfill(["AAPL"], DAY, DAY), defs=design_env.defs, asset_selection=["raw_bars_sim", "l2_snapshots_sim"]).success
    lake = design_env.defs.resources["lake"]
    assert not lake.has_partition(CURATED_BARS, "AAPL", DAY)
    assert run_transform_tws_bars(DAY, ["AAPL"]) is None
    assert lake.has_partition(CURATED_BARS, "AAPL", DAY) and not lake.has_partition(ALIGNED_BARS, "AAPL", DAY)
    run_alignment(DAY, ["AAPL"])
    run_feature_pipeline(DAY, ["AAPL"], "bar_features", "v1")
    assert lake.has_partition(ALIGNED_BARS, "AAPL", DAY)
    for asset in ("curated_bars", "aligned_bars", "bar_features"):
        assert design_env.instance.get_latest_materialization_event(dg.AssetKey(asset)).dagster_event.partition == DAY.isoformat()
    with pytest.raises(KeyError, match="no version 'v9'"):
        run_feature_pipeline(DAY, ["AAPL"], "bar_features", "v9")
    with pytest.raises(Exception, match="ZZZZ"):  # not tracked: refused before anything runs, naming it
        run_alignment(DAY, ["ZZZZ"])
    assert PipelineRunError.__mro__[1] is RuntimeError


# ---------------------------------------------------------------------------------- 3.2.2 ingestor
def test_tws_ingestor_pages_historical_bars_into_the_raw_store(design_env):
    from src.config.settings import RateLimitConfig, TwsSourceConfig
    from src.data_sources.tws_client import TwsClient
    from src.data_sources.tws_ingestor import TwsIngestor
    from src.storage.raw_store import RawStore

    server = FakeTws()
    try:
        client = TwsClient(port=server.port, base_delay_s=0.05, connect_timeout_s=5, identical_gap_s=0.3, pacing_backoff_s=0.3)
        config = TwsSourceConfig(port=server.port, rate_limit_config=RateLimitConfig(identical_gap_s=0.3))
        store = RawStore()
        ingestor = TwsIngestor(client, store, config)
        ingestor.ingest_historical_range(["AAPL"], dt.datetime(2024, 12, 2, 14, 30, tzinfo=UTC), dt.datetime(2024, 12, 3, 21, tzinfo=UTC))
        ingestor.ingest_historical_range(["AAPL"], dt.datetime(2024, 12, 2, 14, 30, tzinfo=UTC), dt.datetime(2024, 12, 3, 21, tzinfo=UTC))
        client.disconnect()
    finally:
        server.close()
    table = raw_bars_table("ib")
    for day in (DAY, dt.date(2024, 12, 3)):
        assert len(store.lake.batch_files(table, "AAPL", day)) == 1  # the re-run wrote nothing new
    bars = store.read_tws_bars(["AAPL"], "2024-12-02", "2024-12-04")
    expected = simulate_day(7, "AAPL", DAY).bars.drop_duplicates("ts")
    expected = expected[(expected[["open", "high", "low", "close"]] > 0).all(axis=1) & (expected["high"] >= expected["low"])]
    assert len(bars[bars["ts"] < pd.Timestamp("2024-12-03", tz="UTC")]) == len(expected)


def test_dq_metrics_are_emitted_one_line_per_rule(caplog):
    import logging

    from src.data_quality.metrics import emit_metrics
    from src.data_quality.rules import RangeRule
    from src.data_quality.validator import validate

    result = validate(pd.DataFrame({"symbol": "AAPL", "close": [1.0, -2.0], "ts": pd.to_datetime(["2024-12-02 15:00", "2024-12-02 15:01"], utc=True)}),
                      [RangeRule(field="close", min=0, severity="error")])
    with caplog.at_level(logging.INFO, logger="platform.dq"):
        frame = emit_metrics(result, "my_bars")
    assert list(frame["rule"]) == ["range_close"] and frame["status"].iloc[0] == "error"
    assert any('"dataset": "my_bars"' in r.message and r.levelno == logging.ERROR for r in caplog.records)


# ---------------------------------------------------------------------------------- 2 / 5: file and DB ingestors, BaseIngestor
def test_file_ingestor_stores_csv_and_parquet_bars_as_raw_batches(design_env, tmp_path):
    """Seed 001 section 2 lists ``src/data_sources/file_ingestor.py`` (CSV/Parquet file ingestion):
    a vendor file's bars land as append-only raw batches per (symbol, trading date); a re-run
    writes nothing new; a bad file fails naming it."""
    from platform_assets.curation.assets import pick_raw_source
    from src.data_sources.file_ingestor import FileIngestor
    from src.storage.raw_store import RawStore

    aapl, msft = _bars("AAPL", DAY), _bars("MSFT", DAY)
    folder = tmp_path / "vendor"
    folder.mkdir()
    aapl.rename(columns={"ts": "timestamp"}).assign(timestamp=aapl["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(folder / "aapl.csv", index=False)
    msft.rename(columns={"ts": "timestamp"}).to_parquet(folder / "msft.parquet")
    (folder / "notes.txt").write_text("not bars")
    start, end = dt.datetime(2024, 12, 2, tzinfo=UTC), dt.datetime(2024, 12, 3, tzinfo=UTC)

    ingestor = FileIngestor(folder, columns={"timestamp": "ts"})
    ingestor.ingest_historical_range(["AAPL", "MSFT"], start, end)
    ingestor.ingest_historical_range(["AAPL", "MSFT"], start, end)  # the same bars: nothing new
    store = RawStore(source="files")
    for symbol, bars in (("AAPL", aapl), ("MSFT", msft)):
        assert len(store.lake.batch_files(raw_bars_table("files"), symbol, DAY)) == 1
        stored = store.read_tws_bars([symbol], start, end)
        assert set(stored["source"]) == {"files"} and len(stored) == bars["ts"].nunique()
        assert np.allclose(stored["close"], bars.drop_duplicates("ts").sort_values("ts")["close"])
    source, raw = pick_raw_source(store.lake, "AAPL", DAY, ["databento", "files"])  # curation takes it when listed
    assert source == "files" and len(raw) == aapl["ts"].nunique()

    only_aapl = FileIngestor(folder / "aapl.csv", source="ib", columns={"timestamp": "ts"})  # a TWS export filed as IB bars
    only_aapl.ingest_historical_range(["AAPL"], dt.datetime(2024, 12, 2, 15, tzinfo=UTC), dt.datetime(2024, 12, 2, 16, tzinfo=UTC))
    hour = aapl.drop_duplicates("ts")["ts"].between(pd.Timestamp("2024-12-02 15:00", tz="UTC"), pd.Timestamp("2024-12-02 15:59", tz="UTC"))
    assert len(RawStore().read_tws_bars(["AAPL"], start, end)) == hour.sum()
    with pytest.raises(ValueError, match=r"aapl\.csv: missing column\(s\) ts"):
        FileIngestor(folder / "aapl.csv").ingest_historical_range(["AAPL"], start, end)
    (folder / "bad.csv").write_text("symbol,ts,open,high,low,close,volume\nAAPL,2024-12-02T15:00:00Z,abc,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: column open has 1 value\(s\) that are not numbers"):
        FileIngestor(folder / "bad.csv").ingest_historical_range(["AAPL"], start, end)
    with pytest.raises(FileNotFoundError, match="no bar files"):
        FileIngestor(tmp_path / "nothing" / "*.csv").ingest_historical_range(["AAPL"], start, end)


def test_db_ingestor_reads_bars_with_a_query_per_instrument(design_env, tmp_path):
    import sqlite3

    from src.data_sources.db_ingestor import DbIngestor
    from src.storage.raw_store import RawStore

    bars = _bars("AAPL", DAY).drop_duplicates("ts")
    path = tmp_path / "vendor.db"
    with sqlite3.connect(path) as con:
        rows = bars.assign(ts=bars["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))[["symbol", "ts", "open", "high", "low", "close", "volume"]]
        rows.to_sql("bars", con, index=False)
        rows.rename(columns={"symbol": "sym", "ts": "t"}).to_sql("quotes", con, index=False)
    start, end = dt.datetime(2024, 12, 2, 15, tzinfo=UTC), dt.datetime(2024, 12, 2, 16, tzinfo=UTC)
    DbIngestor(f"sqlite:///{path}").ingest_historical_range(["AAPL"], start, end)
    stored = RawStore(source="db").read_tws_bars(["AAPL"], "2024-12-02", "2024-12-03")
    in_hour = bars["ts"].between(pd.Timestamp(start), pd.Timestamp(end), inclusive="left")
    assert len(stored) == in_hour.sum() > 50 and stored["ts"].min() >= pd.Timestamp(start) and set(stored["source"]) == {"db"}
    assert stored["ts"].max() < pd.Timestamp(end)

    connection = sqlite3.connect(path)  # a DB-API connection and a query of its own, renamed columns
    custom = DbIngestor(connection, source="ib", query="SELECT * FROM quotes WHERE sym = :symbol", columns={"sym": "symbol", "t": "ts"})
    custom.ingest_historical_range(["AAPL"], "2024-12-02", "2024-12-03")
    connection.close()
    assert len(RawStore().read_tws_bars(["AAPL"], "2024-12-02", "2024-12-03")) == len(bars)
    with pytest.raises(ValueError, match="unsupported database URI"):
        DbIngestor("postgres://host/db").ingest_historical_range(["AAPL"], start, end)


def test_new_sources_implement_base_ingestor_and_are_registered():
    """Seed 001 section 5: "New sources: implement BaseIngestor interface and register in config"."""
    from src.data_sources import BaseIngestor, get_ingestor, register_ingestor
    from src.data_sources.db_ingestor import DbIngestor
    from src.data_sources.file_ingestor import FileIngestor
    from src.data_sources.tws_ingestor import TwsIngestor

    assert all(issubclass(c, BaseIngestor) for c in (TwsIngestor, FileIngestor, DbIngestor))
    with pytest.raises(TypeError):
        BaseIngestor()  # abstract: ingest_historical_range

    @register_ingestor("memory")
    class MemoryIngestor(BaseIngestor):
        def __init__(self, sink):
            self.sink = sink

        def ingest_historical_range(self, instruments, start, end):
            self.sink.extend(instruments)

    sink: list = []
    get_ingestor("memory", sink).ingest_historical_range(["AAPL"], DAY, DAY)
    assert sink == ["AAPL"]
    assert isinstance(get_ingestor("files", "bars.csv"), FileIngestor)
    assert isinstance(get_ingestor("src.data_sources.db_ingestor:DbIngestor", "sqlite:///x.db"), DbIngestor)  # a config file's module:Class
    with pytest.raises(NotImplementedError):
        get_ingestor("files", "bars.csv").run_live_stream(["AAPL"])
    with pytest.raises(ValueError, match="Unknown ingestor"):
        get_ingestor("alpha_vantage")


# ---------------------------------------------------------------------------------- 2: ops
def test_logging_setup_writes_the_ingestion_documents_json_lines_once():
    import io
    import json
    import logging

    from src.ops.logging_setup import setup_logging

    stream = io.StringIO()
    try:
        setup_logging("INFO", stream=stream, logger="DatabentoAdapter")
        setup_logging("INFO", stream=stream, logger="DatabentoAdapter")  # replaced, not doubled
        logging.getLogger("DatabentoAdapter").info("Fetching data chunk from Databento API",
                                                   extra={"dataset": "GLBX.MDP3", "chunk_number": 1, "total_chunks": 4})
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        line = json.loads(lines[0])
        assert {k: line[k] for k in ("level", "logger", "message", "dataset", "chunk_number", "total_chunks")} == {
            "level": "INFO", "logger": "DatabentoAdapter", "message": "Fetching data chunk from Databento API",
            "dataset": "GLBX.MDP3", "chunk_number": 1, "total_chunks": 4}
        assert line["timestamp"].endswith("Z")
        with pytest.raises(ValueError, match="unknown log level"):
            setup_logging("LOUD")
    finally:
        logger = logging.getLogger("DatabentoAdapter")
        for handler in [h for h in logger.handlers if getattr(h, "_platform_logging_setup", False)]:
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_orchestrator_adapter_runs_assets_and_reads_job_status_on_the_instance(design_env, tmp_path):
    from platform_api.errors import UnknownJobError
    from src.data_sources.file_ingestor import FileIngestor
    from src.ops.orchestrator_adapter import OrchestratorAdapter

    add_symbols(design_env.instance, ["AAPL"])
    _bars("AAPL", DAY).to_csv(tmp_path / "aapl.csv", index=False)
    FileIngestor(tmp_path / "aapl.csv", source="ib").ingest_historical_range(["AAPL"], "2024-12-02", "2024-12-03")
    orchestrator = OrchestratorAdapter()
    assert orchestrator.run_assets(["curated_bars"], DAY, ["AAPL"]) == {"curated_bars": 1}
    curated = design_env.defs.resources["lake"]
    assert curated.has_partition(CURATED_BARS, "AAPL", DAY)
    with pytest.raises(UnknownJobError):
        orchestrator.job_status("backfill-0123456789ab")
