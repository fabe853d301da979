"""The per-symbol view: symbol_history partitions are the tracked symbols; a new one is missing, then filled."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.symbols.assets import HISTORY_CHECK, symbol_history
from platform_assets.symbols.coverage import contiguous_blocks, history_window
from platform_assets.universe import add_symbols
from resources.lake import CURATED_BARS, feature_table, labels_table

END = "2024-12-03"
CONFIG = {"ops": {"symbol_history": {"config": {"history_sessions": 3, "end_date": END}}}}
WINDOW = [dt.date(2024, 11, 29), dt.date(2024, 12, 2), dt.date(2024, 12, 3)]


def _materialize(platform, symbol: str):
    return dg.materialize(
        [symbol_history], partition_key=symbol, instance=platform.instance, resources=platform.defs.resources, run_config=CONFIG, raise_on_error=False
    )


def test_window_and_blocks_follow_the_calendar():
    assert history_window(STOCKS, dt.date(2024, 12, 3), 3, dt.date(2021, 1, 4)) == WINDOW
    sessions = sessions_in_range(STOCKS, "2024-11-25", "2024-12-06")
    blocks = contiguous_blocks([sessions[0], sessions[1], sessions[4], sessions[5], sessions[6]], sessions, max_len=2)
    assert blocks == [[sessions[0], sessions[1]], [sessions[4], sessions[5]], [sessions[6]]]


def test_new_symbol_is_missing_then_filled_through_every_layer(platform):
    add_symbols(platform.instance, ["AAPL", "NVDA"])
    assert set(platform.instance.get_dynamic_partitions("symbols")) == {"AAPL", "NVDA"}
    materialized = platform.instance.get_materialized_partitions(dg.AssetKey("symbol_history"))
    assert materialized == set()  # the UI shows both as missing

    # automation (on by default through the default automation sensor) requests each missing symbol once
    first = dg.evaluate_automation_conditions(defs=platform.defs, instance=platform.instance)
    assert first.get_requested_partitions(dg.AssetKey("symbol_history")) == {"AAPL", "NVDA"}

    again = dg.evaluate_automation_conditions(defs=platform.defs, instance=platform.instance, cursor=first.cursor)
    assert not again.get_requested_partitions(dg.AssetKey("symbol_history"))  # requested once, not every tick

    result = _materialize(platform, "NVDA")
    assert result.success
    lake = platform.resources["lake"]
    for day in WINDOW:
        assert lake.has_partition(CURATED_BARS, "NVDA", day)
        assert lake.has_partition(feature_table("bar_features", "v1"), "NVDA", day)
        assert lake.has_partition(labels_table("v1"), "NVDA", day)
        assert not lake.has_partition(CURATED_BARS, "AAPL", day)  # only the symbol asked for
    meta = result.asset_materializations_for_node("symbol_history")[0].metadata
    assert meta["sessions_expected"].value == 3 and meta["sessions_curated_bars"].value == 3 and meta["sessions_labels"].value == 3
    assert "run" in meta["fill_runs"].value and meta["sessions_filled_now"].value == 3
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == HISTORY_CHECK and check.passed
    # the fill ran as one ranged run of the pipeline, visible on the instance, tagged with the symbol
    fill_runs = [r for r in platform.instance.get_runs() if r.tags.get("platform/launched_by") == "symbol_history/NVDA"]
    assert len(fill_runs) == 1 and fill_runs[0].tags["platform/symbols"] == "NVDA"
    assert fill_runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert platform.instance.get_materialized_partitions(dg.AssetKey("symbol_history")) == {"NVDA"}

    # a second materialization finds nothing to fill
    again = _materialize(platform, "NVDA")
    assert again.success and again.asset_materializations_for_node("symbol_history")[0].metadata["fill_runs"].value == ""


def test_symbol_without_any_data_fails_its_partition(platform, monkeypatch):
    add_symbols(platform.instance, ["ZZZZ"])
    config = {"ops": {"symbol_history": {"config": {"history_sessions": 2, "end_date": END, "fill_missing": False}}}}
    result = dg.materialize(
        [symbol_history], partition_key="ZZZZ", instance=platform.instance, resources=platform.defs.resources, run_config=config, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ZZZZ: no session of 2024-12-02..2024-12-03 could be curated" in failure.step_failure_data.error.message
    assert platform.instance.get_materialized_partitions(dg.AssetKey("symbol_history")) == set()


def _check_status_by_symbol(instance: dg.DagsterInstance) -> dict[str, str]:
    """What the UI's per-partition check view shows: Dagster's check-partition state (only current results count)."""
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state

    from platform_assets.partitions import symbols_partitions

    key = dg.AssetCheckKey(dg.AssetKey("symbol_history"), HISTORY_CHECK)
    with partition_loading_context(dynamic_partitions_store=instance):
        state = bulk_update_asset_check_state(instance, [(key, symbols_partitions)], {key: AssetCheckState.empty()})[key]
        return {
            pk: status.value
            for status, subset in state.subsets.items()
            for pk in (subset.value.get_partition_keys() if not isinstance(subset.value, bool) else [])
        }


def test_history_complete_is_judged_per_symbol(platform):
    """One symbol's complete history must not hide another's missing session (the check is per symbol partition)."""
    add_symbols(platform.instance, ["AAPL", "NVDA"])
    assert _materialize(platform, "AAPL").success and _materialize(platform, "NVDA").success
    lake = platform.resources["lake"]
    lake.delete_partition(CURATED_BARS, "AAPL", WINDOW[0])
    assert not lake.has_partition(CURATED_BARS, "AAPL", WINDOW[0])

    no_fill = {"ops": {"symbol_history": {"config": {"history_sessions": 3, "end_date": END, "fill_missing": False}}}}
    aapl = dg.materialize([symbol_history], partition_key="AAPL", instance=platform.instance, resources=platform.defs.resources, run_config=no_fill)
    evaluation = aapl.get_asset_check_evaluations()[0]
    assert not evaluation.passed and evaluation.partition == "AAPL" and evaluation.metadata["symbol"].value == "AAPL"
    assert evaluation.metadata["missing_curated_bars"].value == WINDOW[0].isoformat()
    # NVDA judged after AAPL, complete
    assert _materialize(platform, "NVDA").get_asset_check_evaluations()[0].passed

    assert _check_status_by_symbol(platform.instance) == {"AAPL": "FAILED", "NVDA": "SUCCEEDED"}
