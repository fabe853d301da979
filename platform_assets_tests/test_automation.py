"""Schedules, the L2 file sensor and declarative automation, evaluated with Dagster's test helpers."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import zoneinfo

import dagster as dg
import pytest

from platform_assets.automation.schedules import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    REFRESH_TAG,
    crypto_daily_schedule,
    daily_ingestion_schedule,
    monthly_refresh_schedule,
    weekly_refresh_schedule,
)
from platform_assets.automation.sensors import l2_snapshot_files_sensor
from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.partitions import stock_date_partitions
from platform_assets.universe import add_symbols
from resources.sim_market import simulate_day
from service_harness import evaluate_tick

NY = zoneinfo.ZoneInfo("America/New_York")


def _tick(schedule, platform, when: dt.datetime):
    result = evaluate_tick(schedule, instance=platform.instance, scheduled_execution_time=when, repository_def=platform.defs.get_repository_def())
    return list(result.run_requests or []), result.skip_message


def _dates(requests) -> list[dt.date]:
    dates = []
    for request in requests:
        first, last = dt.date.fromisoformat(request.tags[RANGE_START_TAG]), dt.date.fromisoformat(request.tags[RANGE_END_TAG])
        dates += sessions_in_range(STOCKS, first, last)
    return dates


def test_daily_schedule_requests_the_session_for_every_tracked_symbol(platform):
    requests, skip = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY))
    assert not requests and "no tracked stock symbols" in skip
    add_symbols(platform.instance, ["AAPL", "MSFT", "BTC-USD"])
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY))
    assert [r.partition_key for r in requests] == ["2024-12-03"]
    assert requests[0].run_key == "daily-2024-12-03"  # one run per day, however often the tick is evaluated
    for holiday in (dt.datetime(2024, 12, 25, 17, 30, tzinfo=NY), dt.datetime(2024, 11, 28, 17, 30, tzinfo=NY)):
        requests, skip = _tick(daily_ingestion_schedule, platform, holiday)
        assert requests == [] and "not an XNYS trading day" in skip
    crypto, _ = _tick(crypto_daily_schedule, platform, dt.datetime(2024, 12, 26, 0, 30, tzinfo=dt.timezone.utc))
    assert [r.partition_key for r in crypto] == ["2024-12-25"]  # crypto trades on Christmas


@pytest.mark.parametrize(("schedule", "days"), [(weekly_refresh_schedule, 30), (monthly_refresh_schedule, 90)])
def test_refresh_schedules_request_exactly_the_sessions_of_their_window(platform, schedule, days):
    add_symbols(platform.instance, ["AAPL"])
    when = dt.datetime(2024, 12, 7, 6, 0, tzinfo=NY)
    requests, _ = _tick(schedule, platform, when)
    expected = sessions_in_range(STOCKS, dt.date(2024, 12, 7) - dt.timedelta(days=days - 1), dt.date(2024, 12, 7))
    assert _dates(requests) == expected
    assert dt.date(2024, 11, 28) not in _dates(requests)  # Thanksgiving
    assert len({r.run_key for r in requests}) == len(requests)


def _write_snapshot_file(settings, symbol: str, day: dt.date, suffix: str):
    from resources.l2_store import L2SnapshotStore

    store = L2SnapshotStore(level2_path=str(settings.level2_path), fsync=False)
    return store.write(symbol, day, simulate_day(7, symbol, day).book, suffix=suffix, source="ib")


def test_l2_sensor_requests_the_new_files_day_once(platform, monkeypatch):
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    from resources.settings import get_settings

    get_settings.cache_clear()
    try:
        add_symbols(platform.instance, ["AAPL"])
        path = _write_snapshot_file(platform.settings, "AAPL", dt.date(2024, 12, 3), "093015")
        _write_snapshot_file(platform.settings, "MSFT", dt.date(2024, 12, 3), "093015")  # not tracked: ignored
        result = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, repository_def=platform.defs.get_repository_def())
        assert [(r.partition_key, r.tags["platform/symbols"]) for r in result.run_requests] == [("2024-12-03", "AAPL")]
        assert result.run_requests[0].asset_selection == [dg.AssetKey("l2_features")]  # no curated bars for the day yet: no aligned bars
        cursor = result.cursor
        assert json.loads(cursor)["mtime_ns"] == max(os.stat(path).st_mtime_ns, os.stat(path).st_ctime_ns)
        again = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, cursor=cursor, repository_def=platform.defs.get_repository_def())
        assert not again.run_requests  # nothing new since the cursor
        _write_snapshot_file(platform.settings, "AAPL", dt.date(2024, 12, 4), "101500")
        later = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, cursor=cursor, repository_def=platform.defs.get_repository_def())
        assert [r.partition_key for r in later.run_requests] == ["2024-12-04"]
        # A second recorder's file renamed into place after the tick, stamped before the newest file seen:
        # before, the cursor (newest mtime only) skipped it for good.
        late = _write_snapshot_file(platform.settings, "AAPL", dt.date(2024, 12, 5), "101500")
        stamp = json.loads(later.cursor)["mtime_ns"] - 5_000_000_000
        os.utime(late, ns=(stamp, stamp))
        again = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, cursor=later.cursor, repository_def=platform.defs.get_repository_def())
        assert [r.partition_key for r in again.run_requests] == ["2024-12-05"]
        once = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, cursor=again.cursor, repository_def=platform.defs.get_repository_def())
        assert not once.run_requests  # each file version once
    finally:
        get_settings.cache_clear()


def test_l2_sensor_ignores_files_the_pipeline_already_processed(platform, monkeypatch):
    from platform_api.backfill import plan_backfill, run_backfill

    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    from resources.settings import get_settings

    get_settings.cache_clear()
    try:
        report = run_backfill(platform.instance, plan_backfill(["AAPL"], "2024-12-03", "2024-12-03"), defs=platform.defs, add_missing_symbols=True)
        assert report.success
        result = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, repository_def=platform.defs.get_repository_def())
        assert not result.run_requests  # the run that wrote the snapshots also computed their features
    finally:
        get_settings.cache_clear()


def test_schedules_and_sensor_are_in_the_definitions_and_switchable(platform):
    names = {s.name for s in platform.defs.schedules} | {s.name for s in platform.defs.sensors}
    assert {"daily_ingestion_schedule", "weekly_refresh_schedule", "monthly_refresh_schedule", "crypto_daily_schedule", "l2_snapshot_files_sensor"} <= names
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in platform.defs.schedules)


def test_every_schedule_and_sensor_the_readme_names_exists_under_that_name(platform):
    """Operators type the names from README "Schedules, sensors, automation" (`dagster schedule
    start <name>`): each one must be a schedule or sensor of the definitions."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Schedules, sensors, automation", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`", section, flags=re.M))
    assert {"daily_ingestion_schedule", "compaction_schedule", "lake_status_audit_schedule"} <= documented
    names = {s.name for s in platform.defs.schedules} | {s.name for s in platform.defs.sensors}
    assert documented <= names, sorted(documented - names)


def test_downstream_assets_follow_a_new_raw_partition_once(platform):
    from platform_assets.partitions import stock_date_partitions

    add_symbols(platform.instance, ["AAPL"])
    latest = stock_date_partitions.get_last_partition_key()
    defs = platform.defs
    job = defs.resolve_job_def("offline_pipeline")
    before = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance)
    date_assets = [k for k in defs.resolve_all_asset_keys() if k not in (dg.AssetKey("symbol_history"), dg.AssetKey("corporate_actions"))]  # per-symbol assets fill new symbols
    assert not any(before.get_requested_partitions(k) for k in date_assets)  # nothing upstream yet
    job.execute_in_process(instance=platform.instance, partition_key=latest, asset_selection=[dg.AssetKey("raw_bars_sim"), dg.AssetKey("l2_snapshots_sim")])
    result = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, cursor=before.cursor)
    requested = {key.to_user_string(): result.get_requested_partitions(key) for key in (dg.AssetKey("curated_bars"), dg.AssetKey("l2_features"))}
    assert requested["curated_bars"] == {latest} and requested["l2_features"] == {latest}
    for name in ("aligned_bars", "bar_features", "labels"):  # requested with curated_bars, in the same tick
        assert result.get_requested_partitions(dg.AssetKey(name)) == {latest}
    assert not result.get_requested_partitions(dg.AssetKey("crypto_curated_bars"))
    again = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, cursor=result.cursor)
    assert not any(again.get_requested_partitions(k) for k in date_assets)  # no duplicate request for the same update


def test_sensor_and_automation_never_request_the_same_work(platform, monkeypatch):
    """Files an asset run wrote belong to automation; live-capture files to the sensor; each once."""
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    from resources.settings import get_settings

    get_settings.cache_clear()
    try:
        add_symbols(platform.instance, ["AAPL"])
        latest = stock_date_partitions.get_last_partition_key()
        defs = platform.defs
        date_assets = [k for k in defs.resolve_all_asset_keys() if k not in (dg.AssetKey("symbol_history"), dg.AssetKey("corporate_actions"))]  # per-symbol assets fill new symbols
        before = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance)
        defs.resolve_job_def("offline_pipeline").execute_in_process(
            instance=platform.instance, partition_key=latest, asset_selection=[dg.AssetKey("raw_bars_sim"), dg.AssetKey("l2_snapshots_sim")]
        )
        repo = defs.get_repository_def()
        sensor = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, repository_def=repo)
        assert not sensor.run_requests  # the asset's own files: automation's business
        auto = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, cursor=before.cursor)
        assert auto.get_requested_partitions(dg.AssetKey("l2_features")) == {latest}

        time.sleep(1.1)  # a live-capture file written after the asset's materialization
        _write_snapshot_file(platform.settings, "AAPL", dt.date.fromisoformat(latest), "235959")
        live = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, cursor=sensor.cursor, repository_def=repo)
        assert [(r.partition_key, r.tags["platform/symbols"]) for r in live.run_requests] == [(latest, "AAPL")]
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=platform.instance, cursor=auto.cursor)
        assert not any(quiet.get_requested_partitions(k) for k in date_assets)  # no asset event: automation stays quiet
    finally:
        get_settings.cache_clear()


def _selection(request) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection or []}


def test_stock_schedules_ingest_from_the_configured_sources(platform, monkeypatch):
    """The schedules run the sources of INGESTION_SOURCES, as the Python and HTTP jobs do: a
    deployment configured for Databento must not get green daily runs of simulated bars."""
    from resources.settings import get_settings

    add_symbols(platform.instance, ["AAPL"])
    daily, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY))
    offline = {k.to_user_string() for k in platform.defs.resolve_job_def("offline_pipeline").asset_layer.selected_asset_keys}
    assert _selection(daily[0]) == offline  # the simulator alone (the default): what offline_pipeline runs
    assert daily_ingestion_schedule.job_name == "stock_pipeline"
    monkeypatch.setenv("INGESTION_SOURCES", "databento")
    get_settings.cache_clear()
    try:
        for schedule, when in ((daily_ingestion_schedule, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY)), (weekly_refresh_schedule, dt.datetime(2024, 12, 7, 6, 0, tzinfo=NY))):
            requests, _ = _tick(schedule, platform, when)
            assert requests and all({"raw_bars_databento", "l2_snapshots_databento", "curated_bars", "labels"} <= _selection(r) for r in requests)
            assert not any(_selection(r) & {"raw_bars_sim", "l2_snapshots_sim", "raw_bars_ib"} for r in requests)
    finally:
        get_settings.cache_clear()


def _execute(platform, request):
    job = platform.defs.resolve_job_def(daily_ingestion_schedule.job_name)
    return job.execute_in_process(instance=platform.instance, partition_key=request.partition_key, asset_selection=request.asset_selection, tags=request.tags, raise_on_error=False)


def test_a_day_whose_symbol_failed_is_tagged_and_retried_by_the_next_daily_ticks(platform, monkeypatch):
    """A daily run where one symbol's source raised stores the others and succeeds, but carries an
    ``platform/incomplete.*`` tag naming the symbol; the next daily tick re-runs that day (and
    not the days that are complete) until it is complete."""
    from platform_assets.symbol_days import INCOMPLETE_TAG_PREFIX
    from resources.offline_source import OfflineSource

    add_symbols(platform.instance, ["AAPL", "MSFT"])
    real_day = OfflineSource.day

    def vendor_down_for_msft(self, symbol, day, *args, **kwargs):
        if symbol == "MSFT":
            raise ConnectionError("injected: vendor down for MSFT")
        return real_day(self, symbol, day, *args, **kwargs)

    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 2, 17, 30, tzinfo=NY))
    assert _execute(platform, requests[-1]).success
    monkeypatch.setattr(OfflineSource, "day", vendor_down_for_msft)
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY))
    assert [r.partition_key for r in requests] == ["2024-12-03"]  # 2024-12-02 is complete: no retry
    result = _execute(platform, requests[0])
    assert result.success  # AAPL's data is stored and good
    tags = platform.instance.get_run_by_id(result.run_id).tags
    incomplete = {k: v for k, v in tags.items() if k.startswith(INCOMPLETE_TAG_PREFIX)}
    assert f"{INCOMPLETE_TAG_PREFIX}raw_bars_sim" in incomplete and "MSFT" in incomplete[f"{INCOMPLETE_TAG_PREFIX}raw_bars_sim"]
    assert not any(k.startswith(INCOMPLETE_TAG_PREFIX) for k in platform.instance.get_runs()[-1].tags)  # the complete day's run has none

    monkeypatch.setattr(OfflineSource, "day", real_day)  # the vendor is back
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 4, 17, 30, tzinfo=NY))
    assert [(r.partition_key, r.run_key, r.tags[REFRESH_TAG]) for r in requests] == [
        ("2024-12-03", "daily-2024-12-04-retry-2024-12-03", "daily-retry"), ("2024-12-04", "daily-2024-12-04", "daily"),
    ]
    assert requests[0].tags["platform/symbols"] == "MSFT"  # only the missing symbol: AAPL's day is never re-pulled
    assert "platform/symbols" not in requests[1].tags
    retry = _execute(platform, requests[0])
    assert retry.success and not any(k.startswith(INCOMPLETE_TAG_PREFIX) for k in platform.instance.get_run_by_id(retry.run_id).tags)
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 4, 17, 30, tzinfo=NY))
    assert [r.partition_key for r in requests] == ["2024-12-04"]  # healed: nothing to retry


def test_live_capture_during_the_session_warns_about_symbols_not_recorded_yet(platform, monkeypatch):
    """A live L2 file during the session: the sensor's run builds that symbol's L2 features and
    succeeds; the tracked symbols not recorded yet are a WARN while the session is under way (they
    may still arrive), an ERROR for a run after the close."""
    import pandas as pd
    from dagster._core.event_api import PartitionKeyFilter

    from resources import clock
    from resources.settings import get_settings

    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    get_settings.cache_clear()
    try:
        add_symbols(platform.instance, ["AAPL", "MSFT"])
        day = dt.date(2024, 12, 3)
        _write_snapshot_file(platform.settings, "AAPL", day, "093015")
        key = dg.AssetCheckKey(dg.AssetKey("l2_features"), "symbols_complete")

        def run_sensor_request(now: str):
            monkeypatch.setattr(clock, "utc_now", lambda: pd.Timestamp(now))
            (request,) = evaluate_tick(l2_snapshot_files_sensor, instance=platform.instance, repository_def=platform.defs.get_repository_def()).run_requests
            job = platform.defs.resolve_job_def("l2_derived")
            result = job.execute_in_process(instance=platform.instance, partition_key=request.partition_key, asset_selection=request.asset_selection, tags=request.tags, raise_on_error=False)
            (record,) = platform.instance.event_log_storage.get_asset_check_execution_history(key, limit=1, partition_filter=PartitionKeyFilter(key=day.isoformat()))
            return result, record.evaluation

        result, evaluation = run_sensor_request("2024-12-03T17:00:00Z")  # 12:00 New York
        assert result.success and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert "MSFT" in evaluation.metadata["missing"].value and "session_under_way" in evaluation.metadata
        requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 4, 17, 30, tzinfo=NY))  # judged intraday: re-judged
        assert [(r.partition_key, r.tags.get("platform/symbols")) for r in requests] == [("2024-12-03", "MSFT"), ("2024-12-04", None)]
        _write_snapshot_file(platform.settings, "AAPL", day, "160000")  # the day's last segment, after the close
        result, evaluation = run_sensor_request("2024-12-03T22:00:00Z")  # 17:00 New York: closed
        assert result.success and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "session_under_way" not in evaluation.metadata
    finally:
        get_settings.cache_clear()


def test_a_date_whose_run_died_before_judging_it_is_retried(platform, monkeypatch):
    """A run that ended without judging a date (its step raised before the verdict: a crash, a bug)
    leaves the check PLANNED, not FAILED: the next daily tick re-runs the date all the same."""
    from platform_assets.curation import assets as curation

    add_symbols(platform.instance, ["AAPL"])
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 3, 17, 30, tzinfo=NY))

    def crash(*args, **kwargs):
        raise RuntimeError("injected: the step died before its verdict")

    monkeypatch.setattr(curation, "run_symbols", crash)
    assert not _execute(platform, requests[-1]).success
    monkeypatch.undo()
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 4, 17, 30, tzinfo=NY))
    assert [(r.partition_key, r.tags.get("platform/symbols")) for r in requests] == [("2024-12-03", None), ("2024-12-04", None)]
    assert _execute(platform, requests[0]).success
    requests, _ = _tick(daily_ingestion_schedule, platform, dt.datetime(2024, 12, 4, 17, 30, tzinfo=NY))
    assert [r.partition_key for r in requests] == ["2024-12-04"]
