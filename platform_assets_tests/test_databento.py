"""Databento through the real ``databento`` client against a local TLS gateway serving real DBN."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import warnings
from pathlib import Path

import dagster as dg
import databento as db
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from databento_gateway import DatabentoGateway, cut_mid_record  # noqa: E402
from dbn_builder import SimVendor  # noqa: E402
from faults import full_disk_for_month_writes  # noqa: E402

from platform_assets.ingestion.databento_transforms import mbp10_to_book, mbp10_to_book_loop, ohlcv_to_bars  # noqa: E402
from platform_assets.ingestion.l2_backfill import MANIFEST_FILE, SUMMARY_FILE  # noqa: E402
from platform_assets.universe import add_symbols  # noqa: E402
from resources.adapters.databento_adapter import incomplete_reason  # noqa: E402
from resources.databento_source import (  # noqa: E402
    Chunk,
    DatabentoAdapter,
    DatabentoAuthError,
    DatabentoError,
    DatabentoIncompleteStreamError,
    DatabentoSource,
    date_chunks,
)
from resources.lake import CURATED_BARS, feature_table, quarantine_table, raw_bars_table  # noqa: E402
from resources.settings import load_settings  # noqa: E402
from resources.validation import InvalidDateRangeError  # noqa: E402

KEY = "db-TESTKEY0123456789abcdefghijk"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "databento"


@pytest.fixture
def vendor():
    return SimVendor()


@pytest.fixture
def gateway(tmp_path, vendor, monkeypatch):
    gw = DatabentoGateway(provider=vendor, keys={KEY}, folder=tmp_path, stall_seconds=3)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gw.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    yield gw
    gw.close()


@pytest.fixture
def platform_db(tmp_path, gateway):
    """Definitions whose Databento resource points at the local gateway, and a temp instance."""
    from definitions import build_definitions

    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url)
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield settings, build_definitions(settings), instance


def _source(gateway, **overrides) -> DatabentoSource:
    return DatabentoSource(gateway=gateway.url, base_delay=0.01, max_delay=0.05, **overrides)


def _materialize(defs, instance, assets: list[str], symbols: list[str], start: str, end: str, tags: dict | None = None):
    from platform_api.backfill import plan_backfill, run_backfill

    add_symbols(instance, symbols)
    plan = plan_backfill(symbols, start, end)
    report = run_backfill(instance, plan, defs=defs, asset_selection=assets, extra_tags=tags)
    assert report.success, [r.error for r in report.runs]
    return report


def test_multi_week_ohlcv_range_is_fetched_in_7_day_chunks_into_raw_bars(platform_db, gateway):
    settings, defs, instance = platform_db
    _materialize(defs, instance, ["raw_bars_databento"], ["AAPL", "MSFT"], "2024-11-04", "2024-11-22")
    requests = gateway.get_range_requests()
    assert [(r.form["start"], r.form["end"]) for r in requests] == [
        ("2024-11-04T05:00:00+00:00", "2024-11-11T05:00:00+00:00"),
        ("2024-11-11T05:00:00+00:00", "2024-11-18T05:00:00+00:00"),
        ("2024-11-18T05:00:00+00:00", "2024-11-23T05:00:00+00:00"),
    ]
    assert {r.form["schema"] for r in requests} == {"ohlcv-1m"} and {r.form["symbols"] for r in requests} == {"AAPL,MSFT"}
    assert all(r.form["compression"] == "zstd" and r.form["encoding"] == "dbn" and r.user == KEY for r in requests)
    lake = defs.resources["lake"]
    files = sorted((lake.root / "raw_bars" / "source=databento").rglob("batch-*.parquet"))
    assert len(files) == 2 * 15
    day = dt.date(2024, 11, 12)
    stored = lake.read_latest_batch(raw_bars_table("databento"), "AAPL", day)
    expected = SimVendor().bars("AAPL", day)
    assert len(stored) == len(expected) and set(stored["source"]) == {"databento"}
    np.testing.assert_allclose(stored["close"].to_numpy(), expected["close"].to_numpy())


def test_databento_bars_feed_curated_bars(platform_db):
    settings, defs, instance = platform_db
    _materialize(defs, instance, ["raw_bars_databento", "curated_bars"], ["NVDA"], "2024-12-02", "2024-12-03")
    curated = defs.resources["lake"].read(CURATED_BARS, ["NVDA"], [dt.date(2024, 12, 2)])
    assert len(curated) == 390 and set(curated["source"]) == {"databento"}


def test_malformed_vendor_records_are_filtered_counted_and_quarantined(platform_db, vendor):
    settings, defs, instance = platform_db
    vendor.corrupt = {("AAPL", "2024-12-02T15:00:00Z"): "high_below_low", ("AAPL", "2024-12-02T16:00:00Z"): "zero_price"}
    report = _materialize(defs, instance, ["raw_bars_databento"], ["AAPL"], "2024-12-02", "2024-12-02")
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_bars_databento"))
    assert event.asset_materialization.metadata["malformed_rows_quarantined"].value == 2
    lake = defs.resources["lake"]
    stored = lake.read_latest_batch(raw_bars_table("databento"), "AAPL", dt.date(2024, 12, 2))
    bad_ts = {pd.Timestamp("2024-12-02T15:00:00Z"), pd.Timestamp("2024-12-02T16:00:00Z")}
    assert not bad_ts & set(stored["ts"])
    quarantined = lake.read_latest_batch(quarantine_table(raw_bars_table("databento")), "AAPL", dt.date(2024, 12, 2))
    assert dict(zip(quarantined["ts"], quarantined["reject_reason"])) == {
        pd.Timestamp("2024-12-02T15:00:00Z"): "high_below_low", pd.Timestamp("2024-12-02T16:00:00Z"): "non_positive_price"
    }
    assert report.runs[0].materializations == {"raw_bars_databento": 1}


def test_retries_on_429_and_5xx_then_success(gateway):
    gateway.script = ["429", "429", "500", "503"]
    source = _source(gateway)
    chunks = list(source.fetch(["AAPL"], "ohlcv-1d", pd.Timestamp("2024-12-02", tz="UTC"), pd.Timestamp("2024-12-04", tz="UTC")))
    assert len(chunks) == 1 and len(gateway.get_range_requests()) == 5


def test_timeout_and_dropped_connection_are_retried(gateway):
    gateway.script = ["timeout", "drop"]
    source = _source(gateway, timeout_s=1.0)
    frames = []
    for chunk in source.fetch(["AAPL"], "ohlcv-1m", pd.Timestamp("2024-12-02T14:30Z"), pd.Timestamp("2024-12-02T15:30Z")):
        for records in chunk.record_batches():
            frames.append(ohlcv_to_bars(records, chunk.instrument_symbols())[0])
    expected = SimVendor().bars("AAPL", dt.date(2024, 12, 2))
    expected = expected[(expected["ts"] >= pd.Timestamp("2024-12-02T14:30Z")) & (expected["ts"] < pd.Timestamp("2024-12-02T15:30Z"))]
    assert len(pd.concat(frames)) == len(expected) > 50 and len(gateway.get_range_requests()) == 3


def test_retries_give_up_with_a_clear_error(gateway):
    gateway.script = ["500"] * 10
    with pytest.raises(DatabentoError, match="after 2 retries"):
        list(_source(gateway, max_retries=2).fetch(["AAPL"], "ohlcv-1d", pd.Timestamp("2024-12-02", tz="UTC"), pd.Timestamp("2024-12-04", tz="UTC")))
    assert len(gateway.get_range_requests()) == 3


def test_401_fails_fast_with_the_servers_message_and_no_key_in_logs(gateway, monkeypatch, caplog):
    wrong = "db-WRONGKEY0123456789abcdefghij"
    monkeypatch.setenv("DATABENTO_API_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabentoAuthError, match=r"\(401\): Authentication failed") as caught:
        list(_source(gateway).fetch(["AAPL"], "ohlcv-1m", pd.Timestamp("2024-12-02", tz="UTC"), pd.Timestamp("2024-12-03", tz="UTC")))
    assert len(gateway.get_range_requests()) == 1  # no retry
    assert wrong not in str(caught.value) and wrong not in caplog.text


def test_missing_key_names_the_variable(gateway, monkeypatch):
    monkeypatch.delenv("DATABENTO_API_KEY")
    with pytest.raises(DatabentoAuthError, match="DATABENTO_API_KEY"):
        list(_source(gateway).fetch(["AAPL"], "ohlcv-1m", pd.Timestamp("2024-12-02", tz="UTC"), pd.Timestamp("2024-12-03", tz="UTC")))


def test_date_chunks_per_schema():
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    assert len(date_chunks("ohlcv-1d", start, end)) == 2 and len(date_chunks("ohlcv-1m", start, end)) == 9
    assert len(date_chunks("trades", start, start + pd.Timedelta(days=3))) == 3
    with pytest.raises(ValueError, match="unsupported"):
        date_chunks("mbo", start, end)


def test_mbp10_snapshots_zero_fill_missing_levels_and_match_the_contract(tmp_path):
    store = db.DBNStore.from_file(FIXTURES / "XNAS.ITCH" / "test_data.mbp-10.dbn.zst")
    records = store.to_ndarray()
    book = mbp10_to_book(records)
    frame = store.to_df()
    assert len(book) == len(records) and book.levels == 10
    for level in range(10):  # NaN (undefined) levels become zeros, defined ones keep their values
        expected = frame[f"bid_px_{level:02d}"].fillna(0.0).to_numpy()
        np.testing.assert_allclose(book.bid_prices[:, level], expected)
        assert (book.bid_sizes[:, level][expected == 0] == 0).all()
    loop = mbp10_to_book_loop(records)
    np.testing.assert_array_equal(loop.bid_prices, book.bid_prices)
    np.testing.assert_array_equal(loop.ask_sizes, book.ask_sizes)
    from resources.l2_store import L2SnapshotStore

    path = L2SnapshotStore(level2_path=str(tmp_path), fsync=False).write("NVDA", dt.date(2020, 12, 28), book, suffix="databento", source="databento")
    schema = pq.read_schema(path)
    assert schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("bid_prices").type == pa.list_(pa.float64()) and schema.field("bid_sizes").type == pa.list_(pa.int64())
    assert schema.field("ask_prices").type == pa.list_(pa.float64()) and schema.field("ask_sizes").type == pa.list_(pa.int64())
    assert path.name == "2020-12-28_snapshots_databento.parquet"


def test_backfill_l2_written_skipped_empty_error_and_manifest(platform_db, vendor):
    from platform_api.l2_backfill import backfill_l2, backfill_l2_batch

    settings, _, instance = platform_db
    vendor.empty_days = {("MSFT", dt.date(2024, 12, 3))}
    vendor.unknown_symbols = {"ZZZZ"}
    vendor.delays = {"AAPL": 0.4}  # AAPL's tasks finish last: the manifest must still list them first

    first = backfill_l2("AAPL", "2024-12-02", settings=settings)
    assert first["status"] == "written" and first["rows"] > 500 and not first["zero_rows"]
    path = Path(first["path"])
    assert path.name == "2024-12-02_snapshots_databento.parquet" and path.parent.name == "AAPL"
    table = pq.read_table(path)
    ts = pd.to_datetime(table.column("timestamp").to_numpy()).tz_localize("UTC").tz_convert("America/New_York")
    assert ts.min().time() >= dt.time(9, 30) and ts.max().time() < dt.time(16, 0)  # L2_BACKFILL_WINDOW_ET
    mtime = path.stat().st_mtime_ns
    again = backfill_l2("AAPL", "2024-12-02", settings=settings)
    assert again["status"] == "skipped" and again["rows"] == first["rows"] and path.stat().st_mtime_ns == mtime
    good = path.read_bytes()
    for damage in (good[: len(good) // 2], good[:4] + bytes(200) + good[204:]):  # torn by a crash; pages corrupt, footer readable
        path.write_bytes(damage)
        healed = backfill_l2("AAPL", "2024-12-02", settings=settings)  # never "skipped" over a file that does not decode
        assert healed["status"] == "written" and healed["rows"] == first["rows"] and pq.read_table(path).num_rows == first["rows"]
        assert Path(healed["set_aside"]).read_bytes() == damage and Path(healed["set_aside"]).parent == path.parent  # kept, not lost
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".parquet") == [path.name]
    failed = backfill_l2("ZZZZ", "2024-12-02", settings=settings)
    assert failed["status"] == "error" and failed["path"] is None  # the guide: a path only when written or existing
    assert not (Path(settings.level2_path) / "ZZZZ").exists()  # no empty folder for TF_1's watcher
    with pytest.raises(DatabentoError, match="Could not resolve symbols: ZZZZ"):
        backfill_l2("ZZZZ", "2024-12-02", settings=settings, strict=True)
    holiday = backfill_l2("AAPL", "2024-11-28", settings=settings)  # a bad task is an error result unless strict
    assert holiday["status"] == "error" and "not an XNYS trading day" in holiday["error"] and holiday["path"] is None
    assert backfill_l2("../AAPL", "2024-12-02", settings=settings)["status"] == "error"
    with pytest.raises(InvalidDateRangeError, match="not an XNYS trading day"):
        backfill_l2("AAPL", "2024-11-28", settings=settings, strict=True)

    summary = backfill_l2_batch(["AAPL", "MSFT", "ZZZZ"], "2024-12-02", "2024-12-04", settings=settings, max_workers=3)
    manifest_path = Path(settings.base_path) / "manifests" / MANIFEST_FILE
    lines = [json.loads(line) for line in manifest_path.read_text().splitlines()]
    # every task is recorded in input order; AAPL 12-02 already had its file: SKIP
    assert [(l["symbol"], l["date"], l["status"]) for l in lines] == [
        ("AAPL", "2024-12-02", "SKIP"), ("AAPL", "2024-12-03", "WRITE"), ("MSFT", "2024-12-02", "WRITE"), ("MSFT", "2024-12-03", "EMPTY"),
        ("ZZZZ", "2024-12-02", "ERROR"), ("ZZZZ", "2024-12-03", "ERROR"),
    ]
    saved = json.loads((Path(settings.base_path) / "manifests" / SUMMARY_FILE).read_text())
    assert saved == summary
    assert summary["counts"] == {"WRITE": 2, "SKIP": 1, "EMPTY": 1, "ERROR": 2} and summary["total_tasks"] == 6
    assert summary["zero_row_tasks"] == [["MSFT", "2024-12-03"]]  # the guide's [symbol, date] pairs
    assert [l["path"] for l in lines if l["status"] in ("EMPTY", "ERROR")] == [None, None, None]
    assert not (Path(settings.level2_path) / "MSFT" / "2024-12-03_snapshots_databento.parquet").exists()
    assert len(summary["errors"]) == 2 and all(isinstance(e, str) and e.startswith("ZZZZ 2024-12-0") for e in summary["errors"])
    assert {k for k in summary} >= {"counts", "zero_row_tasks", "errors", "total_tasks", "duration_sec", "strict", "force", "max_tasks", "concurrency"}
    assert summary["concurrency"] == 3 and summary["strict"] is False and summary["force"] is False

    # re-running writes nothing new and loses nothing: written files untouched, manifest only grows
    files = {p: p.stat().st_mtime_ns for p in (Path(settings.level2_path)).rglob("*.parquet")}
    rerun = backfill_l2_batch(["AAPL", "MSFT"], "2024-12-02", "2024-12-04", settings=settings)
    assert rerun["counts"] == {"WRITE": 0, "SKIP": 3, "EMPTY": 1, "ERROR": 0} and rerun["total_tasks"] == 4  # only the empty day is re-fetched
    assert {p: p.stat().st_mtime_ns for p in (Path(settings.level2_path)).rglob("*.parquet")} == files
    after = [json.loads(line) for line in manifest_path.read_text().splitlines()]
    assert after[: len(lines)] == lines and [(l["symbol"], l["date"], l["status"]) for l in after[len(lines):]] == [
        ("AAPL", "2024-12-02", "SKIP"), ("AAPL", "2024-12-03", "SKIP"), ("MSFT", "2024-12-02", "SKIP"), ("MSFT", "2024-12-03", "EMPTY"),
    ]


def test_l2_backfill_as_a_dagster_partition_backfill_in_the_databento_pool(platform_db):
    settings, defs, instance = platform_db
    for name in ("l2_snapshots_databento", "raw_bars_databento", "raw_trades_databento", "raw_tbbo_databento"):
        assert defs.resolve_assets_def(name).op.pool == "databento"  # capped by dagster.yaml concurrency.pools
    _materialize(defs, instance, ["l2_snapshots_databento", "l2_features"], ["AAPL"], "2024-12-02", "2024-12-03")
    files = sorted(p.name for p in (Path(settings.level2_path) / "AAPL").glob("*.parquet"))
    assert files == ["2024-12-02_snapshots_databento.parquet", "2024-12-03_snapshots_databento.parquet"]
    features = defs.resources["lake"].read(feature_table("l2_features", "v1"), ["AAPL"], [dt.date(2024, 12, 2)])
    assert len(features) == 390 and features["spread_bps"].notna().mean() > 0.9



def test_cli_l2_backfill_reports_progress_and_summary(tmp_path, gateway, monkeypatch, capsys):
    from platform_api.cli import main
    from resources.settings import get_settings

    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(tmp_path / "cli-data"))
    monkeypatch.setenv("DATABENTO_GATEWAY", gateway.url)
    monkeypatch.setenv("LAKE_FSYNC", "false")
    get_settings.cache_clear()
    try:
        assert main(["l2-backfill", "--symbols", "AAPL,MSFT", "--start", "2024-12-02", "--end", "2024-12-03", "--workers", "2"]) == 0
        out = capsys.readouterr().out
        assert "[2/2]" in out and "AAPL 2024-12-02: written" in out and "WRITE=2" in out
        assert main(["l2-backfill", "--symbols", "../x", "--start", "2024-12-02", "--end", "2024-12-03"]) == 2
    finally:
        get_settings.cache_clear()


def test_symbol_mapping_file_maps_local_to_vendor_and_warns_on_identity(tmp_path, gateway, caplog):
    from definitions import build_definitions

    mapping = tmp_path / "symbols.yaml"
    mapping.write_text("BRKB: BRK.B\nAAPL: AAPL\n")
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url, SYMBOL_MAPPING_FILE=str(mapping))
    caplog.set_level(logging.WARNING)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs = build_definitions(settings)
        _materialize(defs, instance, ["raw_bars_databento"], ["BRKB", "AAPL"], "2024-12-02", "2024-12-02")
        assert {r.form["symbols"] for r in gateway.get_range_requests()} == {"AAPL,BRK.B"}
        stored = defs.resources["lake"].read_latest_batch(raw_bars_table("databento"), "BRKB", dt.date(2024, 12, 2))
        assert len(stored) > 300 and set(stored["symbol"]) == {"BRKB"}
    assert "identity entries have no effect" in caplog.text and "AAPL" in caplog.text


def test_real_ohlcv_file_converts_like_the_clients_own_dataframe():
    store = db.DBNStore.from_file(FIXTURES / "XNAS.ITCH" / "test_data.ohlcv-1m.dbn.zst")
    ids = {int(v[0]["symbol"]): k for k, v in store.mappings.items()}
    bars, rejected = ohlcv_to_bars(store.to_ndarray(), ids)
    expected = store.to_df()
    assert rejected.empty and len(bars) == len(expected) and set(bars["symbol"]) == {"NVDA"}
    np.testing.assert_allclose(bars["close"].to_numpy(), expected["close"].to_numpy())
    assert list(bars["ts"]) == list(expected.index)


def test_an_l2_day_stored_before_a_fault_in_its_dq_write_is_judged_by_the_re_run(platform_db, monkeypatch):
    """The Databento L2 asset skips a day whose file exists; its DQ rules must still run on it: a
    full disk while storing the DQ results (the files had landed) left both days unjudged forever,
    the re-run green with ``partitions_checked = 0``."""
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_assets.quality.metrics import dq_metrics_table

    settings, defs, instance = platform_db
    add_symbols(instance, ["AAPL"])
    plan = plan_backfill(["AAPL"], "2024-12-02", "2024-12-03")
    with full_disk_for_month_writes(monkeypatch, lambda table, symbol, parts: table.name.startswith("dq_")):
        assert not run_backfill(instance, plan, defs=defs, asset_selection=["l2_snapshots_databento"]).success
    assert len(list((Path(settings.level2_path) / "AAPL").glob("*_snapshots_databento.parquet"))) == 2  # the files landed
    assert run_backfill(instance, plan, defs=defs, asset_selection=["l2_snapshots_databento"]).success
    lake = defs.resources["lake"]
    assert all(lake.has_partition(dq_metrics_table("l2_snapshots"), "AAPL", d) for d in (dt.date(2024, 12, 2), dt.date(2024, 12, 3)))
    key = dg.AssetCheckKey(dg.AssetKey("l2_snapshots_databento"), "dq_book")
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].event.dagster_event.event_specific_data
    assert evaluation.metadata["partitions_checked"].value == 2


def _no_backoff(monkeypatch):
    """The platform's Databento resource waits 1, 2, 4, 8, 16 s between its 5 retries: not in tests."""
    monkeypatch.setattr(DatabentoAdapter, "_wait", lambda self, state: 0.0)


def test_an_l2_stream_cut_mid_record_is_retried_and_never_stored_as_a_day(platform_db, gateway, monkeypatch):
    """HTTP 200 and a whole zstd body, but the DBN inside cut mid-record: the client only warns
    (and the CLI ignores warnings), so the part used to be stored as the day (grid mode carrying its
    last book to 16:00) and every re-run skipped it. Now retried; still cut after the retries: an
    error naming the stream, no file, ERROR in the manifest, and the next run fetches the day."""
    from platform_api.l2_backfill import backfill_l2, backfill_l2_batch

    settings, _, _ = platform_db
    _no_backoff(monkeypatch)
    gateway.script = ["truncate"]
    healed = backfill_l2("AAPL", "2024-12-02", settings=settings, mode="every_event")
    assert healed["status"] == "written" and len(gateway.get_range_requests()) == 2
    assert backfill_l2("AAPL", "2024-12-02", settings=settings, mode="every_event", force=True)["rows"] == healed["rows"]

    gateway.script = ["truncate"] * 6  # the first attempt and the 5 retries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as `mdp` and the job worker run
        summary = backfill_l2_batch(["AAPL"], "2024-12-03", "2024-12-04", settings=settings)
    assert summary["counts"] == {"WRITE": 0, "SKIP": 0, "EMPTY": 0, "ERROR": 1} and len(gateway.get_range_requests()) == 3 + 6
    assert "DatabentoIncompleteStreamError" in summary["errors"][0] and "mbp-10 stream of AAPL [2024-12-03T14:30:00Z" in summary["errors"][0]
    assert "after 5 retries" in summary["errors"][0]
    assert not (Path(settings.level2_path) / "AAPL" / "2024-12-03_snapshots_databento.parquet").exists()
    assert backfill_l2_batch(["AAPL"], "2024-12-03", "2024-12-04", settings=settings)["counts"]["WRITE"] == 1  # not SKIP


def test_a_cut_short_delivery_fails_the_dagster_run_and_stores_nothing(platform_db, gateway, monkeypatch):
    """A partial ohlcv-1m delivery used to become the newest raw batch (shadowing the complete one,
    run green); a partial mbp-10 one a full-looking L2 day. Both fail now, storing nothing."""
    from platform_api.backfill import plan_backfill, run_backfill

    settings, defs, instance = platform_db
    _no_backoff(monkeypatch)
    _materialize(defs, instance, ["raw_bars_databento"], ["AAPL"], "2024-12-02", "2024-12-02")
    lake, day = defs.resources["lake"], dt.date(2024, 12, 2)
    complete = lake.read_latest_batch(raw_bars_table("databento"), "AAPL", day)
    batches = sorted(lake.root.rglob("batch-*.parquet"))
    gateway.script = ["truncate"] * 12  # every attempt of both assets' fetches
    report = run_backfill(instance, plan_backfill(["AAPL"], "2024-12-02", "2024-12-02"), defs=defs,
                          asset_selection=["raw_bars_databento", "l2_snapshots_databento"])
    assert not report.success and len(gateway.get_range_requests()) == 1 + 12
    assert sorted(lake.root.rglob("batch-*.parquet")) == batches
    pd.testing.assert_frame_equal(lake.read_latest_batch(raw_bars_table("databento"), "AAPL", day), complete)
    assert not (Path(settings.level2_path) / "AAPL").exists()
    assert instance.get_latest_materialization_event(dg.AssetKey("l2_snapshots_databento")) is None
    assert len(instance.fetch_materializations(dg.AssetKey("raw_bars_databento"), limit=10).records) == 1


def test_a_chunk_read_from_a_truncated_file_raises_whatever_the_warning_filters(tmp_path):
    """The client warns (BentoWarning) and drops the loose bytes; ``record_batches`` raises, also
    where warnings are ignored; ``incomplete_reason`` says why before anything is read."""
    import zstandard

    start, end = pd.Timestamp("2024-12-02T14:30Z"), pd.Timestamp("2024-12-02T21:00Z")
    body = SimVendor()(type("Request", (), {"form": {"schema": "ohlcv-1m", "symbols": "AAPL", "start": str(start), "end": str(end)}}))
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(cut_mid_record(body)))
    assert "ends inside a record" in incomplete_reason(path)
    chunk = Chunk("ohlcv-1m", start, end, path, symbols=("AAPL",), batch_size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatabentoIncompleteStreamError, match=r"ohlcv-1m stream of AAPL \[2024-12-02T14:30:00Z.* is truncated"):
            list(chunk.record_batches())
    path.write_bytes(zstandard.ZstdCompressor().compress(body))
    assert incomplete_reason(path) is None and sum(len(b) for b in Chunk("ohlcv-1m", start, end, path).record_batches()) == len(SimVendor().bars("AAPL", start.date()))


def _ohlcv_rows(source: DatabentoSource) -> int:
    chunks = source.fetch(["AAPL"], "ohlcv-1m", pd.Timestamp("2024-12-02T14:30Z"), pd.Timestamp("2024-12-02T21:00Z"))
    return sum(len(records) for chunk in chunks for records in chunk.record_batches())


def test_a_zstd_body_cut_on_a_closing_connection_is_retried_then_named(gateway):
    """No Content-Length, ``Connection: close``, half the zstd body: HTTP sees a complete response
    and the client raised ``DBNError: decoding error: unable to determine encoding`` outside the
    retries. Now retried like a broken stream; if it stays cut, an error naming the chunk."""
    gateway.script = ["cut_body"]
    assert _ohlcv_rows(_source(gateway)) == len(SimVendor().bars("AAPL", dt.date(2024, 12, 2)))
    assert len(gateway.get_range_requests()) == 2
    gateway.script = ["cut_body"] * 3
    with pytest.raises(DatabentoIncompleteStreamError, match=r"ohlcv-1m stream of AAPL \[2024-12-02T14:30:00Z, 2024-12-02T21:00:00Z\).*after 2 retries"):
        _ohlcv_rows(_source(gateway, max_retries=2))
    assert len(gateway.get_range_requests()) == 2 + 3


def test_l2_records_of_another_instrument_in_the_stream_are_dropped_and_counted(platform_db, vendor, caplog):
    """MSFT's book mixed into AAPL's mbp-10 stream used to be sampled as AAPL's (twice the rows,
    mids jumping between the two); the records of instruments not AAPL's in the chunk's symbology
    are dropped now, counted and logged: the day is the clean one."""
    from platform_api.l2_backfill import backfill_l2

    settings, _, _ = platform_db
    clean = backfill_l2("AAPL", "2024-12-02", settings=settings, mode="every_event")
    expected = pq.read_table(clean["path"])
    msft_records = backfill_l2("MSFT", "2024-12-02", settings=settings, mode="every_event")["rows"]
    grid = pq.read_table(backfill_l2("AAPL", "2024-12-03", settings=settings)["path"])
    vendor.mixed_in = {"AAPL": "MSFT"}
    caplog.set_level(logging.WARNING)
    mixed = backfill_l2("AAPL", "2024-12-02", settings=settings, mode="every_event", force=True)
    assert mixed["status"] == "written" and mixed["rows"] == clean["rows"] and pq.read_table(mixed["path"]).equals(expected)
    assert mixed["foreign_records"] == msft_records > 0
    assert "dropped %d mbp-10 records of other instruments than AAPL" % msft_records in caplog.text
    mixed_grid = backfill_l2("AAPL", "2024-12-03", settings=settings, force=True)
    assert pq.read_table(mixed_grid["path"]).equals(grid) and mixed_grid["foreign_records"] > 0


def _check_on(instance, asset: str, day: str):
    """The latest ``symbols_complete`` evaluation of ``asset`` on one date partition."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), "symbols_complete")
    return next(r.evaluation for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
                if r.evaluation is not None and r.evaluation.partition == day)


def test_a_vendor_day_without_bars_fails_that_dates_completeness_not_green(platform_db, vendor):
    """The vendor answers 200 with no bars for AAPL on one session: that date's ``symbols_complete``
    fails naming AAPL (no input data) while the other date passes; a date where no symbol got
    bars fails the run (it used to materialize green with every DQ check over 0 partitions)."""
    from platform_api.backfill import plan_backfill, run_backfill

    settings, defs, instance = platform_db
    vendor.empty_days = {("AAPL", dt.date(2024, 12, 2))}
    _materialize(defs, instance, ["raw_bars_databento"], ["AAPL", "MSFT"], "2024-12-02", "2024-12-03")  # both dates (inclusive)
    gap, whole = _check_on(instance, "raw_bars_databento", "2024-12-02"), _check_on(instance, "raw_bars_databento", "2024-12-03")
    assert not gap.passed and gap.severity == dg.AssetCheckSeverity.ERROR
    assert "AAPL (no input data: databento returned no bars)" in gap.metadata["missing"].value and "MSFT" not in gap.metadata["missing"].value
    assert whole.passed and whole.metadata["tracked_symbols"].value == 2
    vendor.empty_days = {("AAPL", dt.date(2024, 12, 4)), ("MSFT", dt.date(2024, 12, 4))}
    report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-04", "2024-12-04"), defs=defs, asset_selection=["raw_bars_databento"])
    assert not report.success and "no input data" in report.runs[0].error
    assert not _check_on(instance, "raw_bars_databento", "2024-12-04").passed


def test_a_vendor_outage_fails_its_dates_checks_so_the_daily_tick_retries_them(platform_db, gateway, monkeypatch):
    """Databento answers 500 on every attempt of a two-week fetch's second chunk: the first chunk's
    dates land (materialized, judged), the second chunk's dates get an ERROR verdict naming the
    vendor's error before the run fails, and the next daily tick re-runs them. The exception used to
    escape before any verdict: the dates stayed unjudged (PLANNED) and were never retried; the
    first chunk's stored batches were recorded as nothing."""
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_assets.automation.schedules import configured_stock_selection, sessions_to_retry

    settings, defs, instance = platform_db
    _no_backoff(monkeypatch)
    add_symbols(instance, ["AAPL", "MSFT"])
    gateway.script = [None, *["500"] * 6]  # first chunk answered, every attempt of the second one fails
    report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-10"), defs=defs, asset_selection=["raw_bars_databento"])
    assert not report.success and "failed after 5 retries" in report.runs[0].error
    for day in ("2024-12-02", "2024-12-06"):  # first chunk: [12-02, 12-09)
        assert _check_on(instance, "raw_bars_databento", day).passed
    for day in ("2024-12-09", "2024-12-10"):
        verdict = _check_on(instance, "raw_bars_databento", day)
        assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
        assert "AAPL (failed: databento: DatabentoError" in verdict.metadata["missing"].value and "MSFT" in verdict.metadata["missing"].value
    materialized = {e.partition for e in instance.fetch_materializations(dg.AssetKey("raw_bars_databento"), limit=50).records for e in [e.event_log_entry.dagster_event]}
    assert materialized == {"2024-12-02", "2024-12-03", "2024-12-04", "2024-12-05", "2024-12-06"}
    monkeypatch.setenv("INGESTION_SOURCES", "databento")
    from resources.settings import get_settings

    get_settings.cache_clear()
    graph = defs.resolve_asset_graph()
    sessions = [dt.date(2024, 12, d) for d in (5, 6, 9, 10)]
    assert list(sessions_to_retry(instance, graph, configured_stock_selection(graph), sessions)) == [dt.date(2024, 12, 9), dt.date(2024, 12, 10)]
    get_settings.cache_clear()
    run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-09", "2024-12-10"), defs=defs, asset_selection=["raw_bars_databento"])
    assert _check_on(instance, "raw_bars_databento", "2024-12-10").passed


def test_a_failed_vendor_run_error_names_the_step_and_the_vendor_error_without_dagsters_class(platform_db, gateway, monkeypatch):
    """The run error (mdp backfill's failed line, job status errors, the HTTP refresh's error) reads
    ``raw_bars_databento: raw_bars_databento: 2 symbol-day(s) failed ... DatabentoAuthError ...``,
    not ``dagster._core.definitions.events.Failure: ...``."""
    from platform_api.backfill import plan_backfill, run_backfill

    settings, defs, instance = platform_db
    add_symbols(instance, ["AAPL", "MSFT"])
    gateway.keys = set()  # the key is refused: 401 at once
    report = run_backfill(instance, plan_backfill(["AAPL", "MSFT"], "2024-12-02", "2024-12-02"), defs=defs, asset_selection=["raw_bars_databento"])
    error = report.runs[0].error
    assert not report.success and error.startswith("raw_bars_databento: raw_bars_databento: 2 symbol-day(s) failed"), error
    assert "DatabentoAuthError" in error and "dagster._core" not in error and KEY not in error
