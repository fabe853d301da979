"""Corporate actions (issue 14): split/dividend-aware bars and features, point in time.

Simulated history: SPLT has a 10:1 split (ex 2024-11-20) and a 1% cash dividend (ex 2024-12-05),
RVSP a 1:5 reverse split, DIVY cash dividends (``resources.sim_corporate_actions``). Every other
symbol's history is unchanged. The Databento reference path runs the real ``databento.Reference``
client against the local TLS gateway.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from databento_gateway import DatabentoGateway, ReferenceVendor  # noqa: E402

from platform_api.backfill import plan_backfill, run_backfill  # noqa: E402
from platform_api.errors import InvalidOptionError  # noqa: E402
from platform_api.quality import get_data_quality_summary  # noqa: E402
from platform_api.retrieval import get_curated_bars, get_features_for_inference, get_features_for_training  # noqa: E402
from platform_assets.features.bar_features import compute_bar_features_v1  # noqa: E402
from platform_assets.quality.checks import batch_from_frames  # noqa: E402
from platform_assets.quality.rules import ReturnJumpRule  # noqa: E402
from platform_assets.reference.actions import back_factors, normalize, pit_index  # noqa: E402
from platform_assets.reference.assets import REPROCESS_JOB, corporate_action_reprocess_sensor  # noqa: E402
from platform_assets.universe import add_symbols  # noqa: E402
from resources.adapters.databento_reference import DatabentoReferenceFetcher  # noqa: E402
from resources.databento_source import DatabentoAuthError, DatabentoError  # noqa: E402
from resources.lake import CURATED_BARS, ParquetLake, feature_table, labels_table  # noqa: E402
from resources.reference_store import read_actions, write_actions  # noqa: E402
from resources.settings import load_settings  # noqa: E402
from resources.sim_corporate_actions import sim_corporate_actions  # noqa: E402
from resources.sim_market import FaultRates, simulate_day  # noqa: E402
from service_harness import evaluate_tick  # noqa: E402

KEY = "db-TESTKEY0123456789abcdefghijk"
SEED = 7
SPLIT_EX, DIV_EX = dt.date(2024, 11, 20), dt.date(2024, 12, 5)


def _session_dates(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).tz_convert("America/New_York").date


def _closes_by_day(bars: pd.DataFrame) -> pd.DataFrame:
    real = bars[bars["dq_status"] == "ok"].assign(day=lambda f: _session_dates(f["ts"]))
    return real.groupby("day")["close"].agg(["first", "last"])


def _overnight(bars: pd.DataFrame, day: dt.date) -> float:
    closes = _closes_by_day(bars)
    days = list(closes.index)
    i = days.index(day)
    return closes.loc[day, "first"] / closes.loc[days[i - 1], "last"] - 1.0


def _materialize_actions(defs, instance, symbols: list[str], sources: list[str] | None = None):
    add_symbols(instance, symbols)
    config = {"sources": sources} if sources is not None else {}
    for symbol in symbols:
        result = dg.materialize(
            [defs.get_assets_def("corporate_actions")], instance=instance, partition_key=symbol, resources=defs.resources,
            run_config={"ops": {"corporate_actions": {"config": config}}},
        )
        assert result.success
    return result


def _run_sensor_requests(defs, instance, cursor=None):
    """Evaluate the reprocessing sensor once and execute what it requests (as the daemon would)."""
    data = evaluate_tick(corporate_action_reprocess_sensor, instance=instance, cursor=cursor, definitions=defs, resources={"lake": defs.resources["lake"]})
    job = defs.resolve_job_def(REPROCESS_JOB)
    for request in data.run_requests:
        assert job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=True).success
    return data.run_requests, data.cursor


def _pipeline(defs, instance, symbols, start, end):
    report = run_backfill(instance, plan_backfill(symbols, start, end), defs=defs, add_missing_symbols=True)
    assert report.success, [r.error for r in report.runs]


# ------------------------------------------------------------------------------------ pure parts
def test_sim_history_moves_by_the_recorded_factor_and_other_symbols_are_untouched():
    actions = sim_corporate_actions(SEED, ["SPLT", "RVSP", "DIVY", "AAPL"])
    assert set(actions["symbol"]) == {"SPLT", "RVSP", "DIVY"}  # no action for the default universe
    split = actions[(actions["symbol"] == "SPLT") & (actions["event"] == "split")].iloc[0]
    assert split["factor"] == pytest.approx(0.1) and split["split_ratio"] == 10 and split["ex_date"] == SPLIT_EX
    assert split["announced_date"] < split["ex_date"]
    reverse = actions[actions["symbol"] == "RVSP"].iloc[0]
    assert reverse["event"] == "reverse_split" and reverse["factor"] == pytest.approx(5.0)
    dividend = actions[(actions["symbol"] == "SPLT") & (actions["kind"] == "dividend")].iloc[0]
    assert dividend["dividend"] > 0 and dividend["factor"] == pytest.approx(0.99, abs=1e-3)

    none = FaultRates.none()
    before = simulate_day(SEED, "SPLT", dt.date(2024, 11, 19), rates=none).bars
    after = simulate_day(SEED, "SPLT", SPLIT_EX, rates=none).bars
    raw_move = after["open"].iloc[0] / before["close"].iloc[-1]
    assert 0.08 < raw_move < 0.125  # the traded price fell ~10x overnight
    assert 0.9 < raw_move / split["factor"] < 1.1  # explained by the recorded factor: an ordinary overnight move remains
    rv_before = simulate_day(SEED, "RVSP", dt.date(2024, 11, 20), rates=none).bars
    rv_after = simulate_day(SEED, "RVSP", dt.date(2024, 11, 21), rates=none).bars
    assert 4.0 < rv_after["open"].iloc[0] / rv_before["close"].iloc[-1] < 6.25


def test_pit_index_and_back_factors_respect_announcement_dates():
    actions = normalize(pd.DataFrame([
        {"symbol": "X", "event_id": "a", "event": "split", "kind": "split", "ex_date": dt.date(2024, 1, 10), "announced_date": dt.date(2024, 1, 2),
         "factor": 0.5, "split_ratio": 2.0, "dividend": np.nan, "status": "apply", "source": "sim", "recorded_ts": pd.Timestamp("2024-01-02", tz="UTC")},
        # recorded late: ex 2024-01-12 but announced (known) only on 2024-01-20
        {"symbol": "X", "event_id": "b", "event": "cash_dividend", "kind": "dividend", "ex_date": dt.date(2024, 1, 12),
         "announced_date": dt.date(2024, 1, 20), "factor": 0.98, "split_ratio": np.nan, "dividend": 1.0, "status": "apply", "source": "sim",
         "recorded_ts": pd.Timestamp("2024-01-20", tz="UTC")},
        {"symbol": "X", "event_id": "c", "event": "split", "kind": "split", "ex_date": dt.date(2024, 1, 15), "announced_date": dt.date(2024, 1, 3),
         "factor": 0.25, "split_ratio": 4.0, "dividend": np.nan, "status": "cancelled", "source": "sim", "recorded_ts": pd.Timestamp("2024-01-04", tz="UTC")},
    ]))
    days = [dt.date(2024, 1, 9), dt.date(2024, 1, 10), dt.date(2024, 1, 12), dt.date(2024, 1, 22)]
    assert list(pit_index(actions, days, "split")) == [1.0, 2.0, 2.0, 2.0]  # the cancelled split never applies
    assert list(pit_index(actions, days, "split_dividend")) == pytest.approx([1.0, 2.0, 2.0, 2.0 / 0.98])  # dividend known 01-20
    assert list(back_factors(actions, days, dt.date(2024, 1, 19), "split_dividend")) == [0.5, 1.0, 1.0, 1.0]
    assert list(back_factors(actions, days, dt.date(2024, 1, 22), "split_dividend")) == pytest.approx([0.49, 0.98, 1.0, 1.0])


def test_return_jump_rule_tells_an_explained_overnight_jump_from_an_unexplained_one():
    rule = ReturnJumpRule(name="return_jump", rule="return_jump", max_abs_return=0.05, overnight_max_abs_return=0.25, severity="warn")
    day = pd.DataFrame({"symbol": "X", "ts": pd.date_range("2024-11-20 14:30", periods=4, freq="1min", tz="UTC"),
                        "close": [10.0, 10.01, 10.02, 10.0], "dq_status": "ok"})
    keys = [("X", dt.date(2024, 11, 20))]
    explained = batch_from_frames([day], keys, None, [{"prev_close": 100.0, "corporate_action_factor": 0.1}])
    unexplained = batch_from_frames([day], keys, None, [{"prev_close": 100.0, "corporate_action_factor": 1.0}])
    no_history = batch_from_frames([day], keys, None, [{}])
    assert rule.failing_rows(explained).sum() == 0
    assert rule.failing_rows(unexplained).tolist() == [True, False, False, False]
    assert rule.failing_rows(no_history).sum() == 0
    intraday = day.assign(close=[10.0, 10.01, 12.0, 12.0])
    assert rule.failing_rows(batch_from_frames([intraday], keys, None, [{"prev_close": 100.0, "corporate_action_factor": 0.1}])).sum() == 1


# ------------------------------------------------------------------------------------ pipeline
def test_split_and_dividend_through_the_pipeline(platform):
    defs, instance, settings = platform.defs, platform.instance, platform.settings
    _materialize_actions(defs, instance, ["SPLT"])
    _pipeline(defs, instance, ["SPLT"], "2024-11-18", "2024-12-06")
    lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
    stored = read_actions(lake.root, ["SPLT"])
    assert len(stored) == 2 and set(stored["source"]) == {"sim"}

    # raw prices untouched: the curated closes are the simulated traded prices
    raw = get_curated_bars(["SPLT"], "2024-11-18", "2024-12-07", settings=settings)
    assert "adjusted_as_of" not in raw.columns and "adj_factor" not in raw.columns  # contract default: no new columns
    sim = simulate_day(SEED, "SPLT", SPLIT_EX).bars.drop_duplicates("ts").set_index("ts")["close"]
    day = raw[_session_dates(raw["ts"]) == SPLIT_EX].set_index("ts")
    common = day.index[(day["dq_status"] == "ok") & day.index.isin(sim.index)]
    assert len(common) > 300 and np.allclose(day.loc[common, "close"], sim.loc[common])
    assert _overnight(raw, SPLIT_EX) < -0.85  # the raw series jumps -90%

    # split-adjusted: continuous across the split, newest prices as traded
    split = get_curated_bars(["SPLT"], "2024-11-18", "2024-12-07", adjustment="split", settings=settings)
    assert abs(_overnight(split, SPLIT_EX)) < 0.1
    assert set(split["adjustment_view"]) == {"point_in_time"} and set(split["adjusted_as_of"]) == {"2024-12-06"}
    last = _session_dates(split["ts"]) == dt.date(2024, 12, 6)
    assert np.allclose(split.loc[last, "close"], raw.loc[last, "close"])
    early = _session_dates(split["ts"]) < SPLIT_EX
    assert np.allclose(split.loc[early, "close"], raw.loc[early, "close"] * 0.1)
    assert np.allclose(split.loc[early, "volume"], raw.loc[early, "volume"] * 10)

    # split + dividend: earlier prices also scaled by the dividend factor
    div_factor = stored.loc[stored["kind"] == "dividend", "factor"].iloc[0]
    both = get_curated_bars(["SPLT"], "2024-11-18", "2024-12-07", adjustment="split_dividend", settings=settings)
    assert np.allclose(both.loc[early, "close"], raw.loc[early, "close"] * 0.1 * div_factor)
    mid = (_session_dates(both["ts"]) >= SPLIT_EX) & (_session_dates(both["ts"]) < DIV_EX)
    assert np.allclose(both.loc[mid, "close"], raw.loc[mid, "close"] * div_factor)
    assert abs(_overnight(both, DIV_EX)) < abs(_overnight(raw, DIV_EX)) + 0.011

    # point in time for the query: a range ending before the ex date is not adjusted ...
    before = get_curated_bars(["SPLT"], "2024-11-18", "2024-11-20", adjustment="split", settings=settings)
    assert np.allclose(before["close"], raw.loc[_session_dates(raw["ts"]) < SPLIT_EX, "close"])
    # ... unless the research view "as of" a later date is asked for, and it says so
    research = get_curated_bars(["SPLT"], "2024-11-18", "2024-11-20", adjustment="split", adjustment_as_of="2024-12-06", settings=settings)
    assert np.allclose(research["close"], before["close"] * 0.1) and set(research["adjustment_view"]) == {"research"}
    daily = get_curated_bars(["SPLT"], "2024-11-18", "2024-12-07", frequency="1d", adjustment="split", settings=settings)
    daily_ret = daily["close"].pct_change().abs().dropna()
    assert daily_ret.max() < 0.15 and set(daily["adjustment_view"]) == {"point_in_time"}
    with pytest.raises(InvalidOptionError, match="adjustment"):
        get_curated_bars(["SPLT"], "2024-11-18", "2024-11-20", adjustment="total", settings=settings)

    # the per-bar factor known on each session is stored with the curated bars
    stored_bars = lake.read(CURATED_BARS, ["SPLT"], [dt.date(2024, 11, 19), SPLIT_EX, DIV_EX])
    factors = stored_bars.groupby("date")[["adj_factor_split", "adj_factor"]].first()
    assert list(factors["adj_factor_split"]) == pytest.approx([1.0, 10.0, 10.0])
    assert list(factors["adj_factor"]) == pytest.approx([1.0, 10.0, 10.0 / div_factor])

    # features and labels: no artificial jump on the split day (they equal those of the adjusted series)
    feats = lake.read(feature_table("bar_features", "v1"), ["SPLT"], [SPLIT_EX])
    assert feats["ret_1"].abs().max() < 0.05
    bars_day = lake.read(CURATED_BARS, ["SPLT"], [SPLIT_EX])
    scaled = compute_bar_features_v1(bars_day.assign(close=bars_day["close"] * 0.1))
    assert np.allclose(feats["ret_1"].to_numpy(), scaled["ret_1"].to_numpy(), equal_nan=True)
    labs = lake.read(labels_table("v1"), ["SPLT"], [SPLIT_EX])
    assert labs["fwd_ret_15"].abs().max() < 0.1
    training = get_features_for_training(["bar_features"], ["v1"], ["SPLT"], "2024-11-18", "2024-12-07", adjustment="split", settings=settings)
    frame = training.features
    assert training.metadata["adjustment"]["point_in_time"] is True
    closes = frame.assign(day=_session_dates(frame["ts"])).groupby("day")["close_adj"].agg(["first", "last"])
    overnight = closes["first"].iloc[1:].to_numpy() / closes["last"].iloc[:-1].to_numpy() - 1
    assert np.abs(overnight).max() < 0.1  # close_adj continuous across the split
    inference = get_features_for_inference(["bar_features"], ["v1"], ["SPLT"], "2024-11-20T16:00:00Z", adjustment="split", settings=settings)
    row = inference.features.iloc[0]
    assert row["adj_factor_pit"] == pytest.approx(10.0) and row["close_adj"] == pytest.approx(raw.set_index("ts").loc[inference.features.index[0][1], "close"] * 10)
    assert inference.metadata["adjustment"]["point_in_time"] is True

    # DQ: the return-jump rule is quiet on the split day (explained) ...
    def jump_value(day: dt.date) -> float:
        details = get_data_quality_summary("curated_bars", day, day + dt.timedelta(days=1), ["SPLT"], settings=settings).to_frame()
        return float(details[details["metric"] == "return_jump"]["value"].iloc[0])

    assert jump_value(SPLIT_EX) == 0
    # ... and fires on the same move once nothing explains it (the reference record withdrawn)
    write_actions(lake.root, "SPLT", stored.iloc[0:0], sources=["sim"], fsync=False)
    _pipeline(defs, instance, ["SPLT"], "2024-11-20", "2024-11-20")
    assert jump_value(SPLIT_EX) >= 1


def _curated_by_date(lake: ParquetLake, symbol: str) -> dict[dt.date, pd.DataFrame]:
    """A symbol's stored curated bars per date (whatever the layout: day or month files)."""
    frame = lake.read(CURATED_BARS, [symbol])
    return {d: rows.reset_index(drop=True) for d, rows in frame.groupby("date")}


def test_action_announced_after_t_changes_no_training_row_and_reprocesses_only_its_symbol(tmp_path, monkeypatch):
    """Databento path end to end: the real Reference client, the gateway, the asset, the sensor."""
    from definitions import build_definitions

    vendor = ReferenceVendor(sim_corporate_actions(SEED, ["SPLT", "DIVY"]))
    gateway = DatabentoGateway(provider=lambda request: b"", keys={KEY}, folder=tmp_path, reference=vendor)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gateway.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false", DATABENTO_GATEWAY=gateway.url)
    defs = build_definitions(settings)
    home = tmp_path / "home"
    home.mkdir()
    try:
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            _pipeline(defs, instance, ["SPLT", "DIVY"], "2024-11-18", "2024-11-27")
            lake = ParquetLake(base_path=str(settings.base_path), fsync=False)
            # reference data arrives after the bars: the sensor re-derives the symbol's partitions
            _materialize_actions(defs, instance, ["SPLT", "DIVY"], sources=["databento"])
            requests, cursor = _run_sensor_requests(defs, instance)  # one tick sees both symbols' changes
            assert {r.tags["platform/symbols"] for r in requests} == {"SPLT", "DIVY"}
            assert all(r.tags["platform/trigger"] == "corporate_action" for r in requests)
            assert lake.read(CURATED_BARS, ["SPLT"], [SPLIT_EX])["adj_factor_split"].iloc[0] == pytest.approx(10.0)
            assert lake.read(CURATED_BARS, ["DIVY"], [dt.date(2024, 11, 18)])["adj_factor"].iloc[0] > 1.0  # dividend ex 11-15
            stored = read_actions(lake.root, ["SPLT"])
            assert set(stored["source"]) == {"databento"} and len(stored) == 2
            assert gateway.reference_requests() and all(r.user == KEY for r in gateway.reference_requests())

            def pull():
                return get_features_for_training(["bar_features"], ["v1"], ["SPLT"], "2024-11-18", "2024-11-28", include_labels=True,
                                                 adjustment="split_dividend", settings=settings)

            before = pull()
            t = pd.Timestamp("2024-11-22", tz="America/New_York").tz_convert("UTC")  # t: the 2024-11-21 session is over
            splt_days, divy = _curated_by_date(lake, "SPLT"), _curated_by_date(lake, "DIVY")

            # the vendor now reports a 2:1 split announced after t (ex 2024-11-25)
            late = {"symbol": "SPLT", "event_id": "LATE-1", "event": "split", "kind": "split", "ex_date": dt.date(2024, 11, 25),
                    "announced_date": dt.date(2024, 11, 22), "factor": 0.5, "split_ratio": 2.0, "dividend": np.nan, "status": "apply",
                    "source": "databento", "recorded_ts": pd.Timestamp("2024-11-22", tz="UTC")}
            vendor.actions = normalize(pd.concat([vendor.actions, pd.DataFrame([late])], ignore_index=True))
            result = _materialize_actions(defs, instance, ["SPLT"], sources=["databento"])
            metadata = result.asset_materializations_for_node("corporate_actions")[0].metadata
            assert json.loads(metadata["changed_dates"].value) == ["2024-11-25"]  # the first session the new split affects
            requests, _ = _run_sensor_requests(defs, instance, cursor)
            assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests] == [
                ("2024-11-25", "2024-11-27")]
            after = pull()

            # exactly the affected partitions changed: SPLT from its ex date 2024-11-25, nothing of DIVY
            now = _curated_by_date(lake, "SPLT")
            assert now.keys() == splt_days.keys()
            assert {d for d in now if not now[d].equals(splt_days[d])} == {dt.date(2024, 11, 25), dt.date(2024, 11, 26), dt.date(2024, 11, 27)}
            assert all(frame.equals(divy[d]) for d, frame in _curated_by_date(lake, "DIVY").items())

            old_rows = before.model_frame(drop_imputed=False)
            new_rows = after.model_frame(drop_imputed=False)
            upto = old_rows["ts"] < t
            assert upto.sum() > 1000
            pd.testing.assert_frame_equal(old_rows[upto].reset_index(drop=True), new_rows[new_rows["ts"] < t].reset_index(drop=True))
            later = new_rows["ts"] >= pd.Timestamp("2024-11-25", tz="America/New_York")
            assert np.allclose(new_rows.loc[later, "adj_factor_pit"], old_rows.loc[later, "adj_factor_pit"] * 2)
    finally:
        gateway.close()


# ------------------------------------------------------------------------------------ Databento reference path
@pytest.fixture
def reference_gateway(tmp_path, monkeypatch):
    gateway = DatabentoGateway(provider=lambda request: b"", keys={KEY}, folder=tmp_path, stall_seconds=3,
                               reference=ReferenceVendor(sim_corporate_actions(SEED, ["SPLT", "RVSP", "DIVY"]), unknown_symbols={"NOPE"}))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gateway.cert))
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    yield gateway
    gateway.close()


def _fetcher(gateway, **overrides) -> DatabentoReferenceFetcher:
    return DatabentoReferenceFetcher(gateway=gateway.url, base_delay=0.01, max_delay=0.05, **overrides)


def test_reference_records_are_fetched_in_chunks_and_normalized(reference_gateway):
    records = _fetcher(reference_gateway, chunk_days=7).fetch({"SPLT": "SPLT", "DIVY": "DIVY"}, "2024-11-01", "2024-11-22")
    requests = reference_gateway.reference_requests()
    assert len(requests) == 6  # 3 weekly chunks x (adjustment factors + corporate actions)
    assert {(r.form["start"][:10], r.form["end"][:10]) for r in requests} == {("2024-11-01", "2024-11-08"), ("2024-11-08", "2024-11-15"), ("2024-11-15", "2024-11-22")}
    assert {r.form["symbols"] for r in requests} == {"DIVY,SPLT"}
    expected = sim_corporate_actions(SEED, ["SPLT", "DIVY"])
    expected = expected[expected["ex_date"] < dt.date(2024, 11, 22)]
    got = records.set_index("event_id")
    assert set(got.index) == set(expected["event_id"])
    for row in expected.itertuples():
        assert got.loc[row.event_id, "factor"] == pytest.approx(row.factor)
        assert got.loc[row.event_id, "announced_date"] == row.announced_date  # from corporate_actions.event_created_date
        assert got.loc[row.event_id, "event"] == row.event and got.loc[row.event_id, "source"] == "databento"


def test_a_cancelled_vendor_record_is_stored_but_never_applied(reference_gateway):
    vendor = reference_gateway.reference
    vendor.actions = vendor.actions.assign(status=np.where(vendor.actions["symbol"] == "RVSP", "cancelled", "apply"))
    records = _fetcher(reference_gateway).fetch(["RVSP"], "2024-11-01", "2024-12-01")
    assert list(records["status"]) == ["cancelled"]
    assert list(pit_index(records, [dt.date(2024, 11, 22)], "split")) == [1.0]


def test_reference_requests_retry_on_429_and_5xx(reference_gateway):
    reference_gateway.script = ["429", "500", "503"]
    fetcher = _fetcher(reference_gateway)
    records = fetcher.fetch(["RVSP"], "2024-11-01", "2024-12-01")
    assert list(records["event"]) == ["reverse_split"] and fetcher.retry_attempts == 3
    assert len(reference_gateway.reference_requests()) == 5  # 3 failures + 2 endpoints


def test_reference_timeouts_are_retried_and_give_up_with_a_clear_error(reference_gateway):
    reference_gateway.script = ["timeout"]
    assert len(_fetcher(reference_gateway, timeout_s=1.0).fetch(["SPLT"], "2024-11-01", "2024-12-31")) == 2
    reference_gateway.script = ["500"] * 10
    with pytest.raises(DatabentoError, match="after 2 retries"):
        _fetcher(reference_gateway, max_retries=2).fetch(["SPLT"], "2024-11-01", "2024-12-31")


def test_reference_4xx_fails_fast_without_leaking_the_key(reference_gateway, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabentoError, match="422") as error:
        _fetcher(reference_gateway).fetch(["NOPE"], "2024-11-01", "2024-12-01")
    assert "Unknown symbols" in str(error.value) and len(reference_gateway.reference_requests()) == 1
    monkeypatch.setenv("DATABENTO_API_KEY", "db-WRONGKEY0123456789abcdefghi")
    with pytest.raises(DatabentoAuthError, match="401") as error:
        _fetcher(reference_gateway).fetch(["SPLT"], "2024-11-01", "2024-12-01")
    assert "db-WRONGKEY" not in str(error.value) and "db-WRONGKEY" not in caplog.text
    assert len(reference_gateway.reference_requests()) == 2  # no retry on 4xx


def test_a_newly_tracked_symbol_gets_its_corporate_actions_by_automation(platform):
    add_symbols(platform.instance, ["SPLT"])
    result = dg.evaluate_automation_conditions(defs=platform.defs, instance=platform.instance)
    assert result.get_requested_partitions(dg.AssetKey("corporate_actions")) == {"SPLT"}
    names = {s.name for s in platform.defs.sensors}
    assert "corporate_action_reprocess_sensor" in names
    assert platform.defs.resolve_job_def(REPROCESS_JOB).name == REPROCESS_JOB


def test_a_fault_after_the_actions_file_was_replaced_is_announced_by_the_next_run(platform, monkeypatch):
    """The changed dates are recorded before ``actions.parquet`` is replaced: a run that dies after the
    replace (before Dagster recorded its ``changed_from``) leaves them for the next run to announce,
    and the reprocess sensor re-derives the curated bars with the split (before: the next run saw
    no change, announced nothing, and the bars kept the old factors)."""
    import platform_assets.reference.assets as ref_assets
    from resources.lake import ParquetLake

    split_ex = dt.date(2024, 11, 20)
    defs, instance = platform.defs, platform.instance
    lake = ParquetLake(base_path=str(platform.settings.base_path), fsync=False)
    add_symbols(instance, ["SPLT"])
    _pipeline(defs, instance, ["SPLT"], "2024-11-18", "2024-11-22")  # curated before the actions are known
    real = ref_assets.write_actions

    def write_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError(28, "No space left on device (injected after actions.parquet was replaced)")

    monkeypatch.setattr(ref_assets, "write_actions", write_then_die)
    failed = dg.materialize([defs.get_assets_def("corporate_actions")], instance=instance, partition_key="SPLT",
                            resources=defs.resources, raise_on_error=False)
    assert not failed.success
    monkeypatch.setattr(ref_assets, "write_actions", real)
    _materialize_actions(defs, instance, ["SPLT"])
    latest = instance.get_latest_materialization_event(dg.AssetKey("corporate_actions"))
    assert latest.asset_materialization.metadata["changed_from"].value == split_ex.isoformat()
    requests, _ = _run_sensor_requests(defs, instance)
    assert requests
    bars = lake.read(CURATED_BARS, ["SPLT"], [dt.date(2024, 11, 19), split_ex])
    assert dict(bars.groupby("date")["adj_factor_split"].first())[split_ex] == pytest.approx(10.0)
    _materialize_actions(defs, instance, ["SPLT"])  # announced and recorded: the next run announces nothing again
    latest = instance.get_latest_materialization_event(dg.AssetKey("corporate_actions"))
    assert latest.asset_materialization.metadata["changed_from"].value == ""
