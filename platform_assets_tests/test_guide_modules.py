"""The guides' own module and script names work as their examples write them (seeds 003 and 004)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.universe import add_symbols

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def guide_env(platform, monkeypatch):
    """The environment a guide example runs in: DAGSTER_HOME and the data folder of ``platform``."""
    from resources.settings import get_settings

    monkeypatch.setenv("DAGSTER_HOME", str(platform.home))
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(platform.settings.base_path))
    get_settings.cache_clear()
    yield platform
    get_settings.cache_clear()


def test_http_guide_service_layer_example_runs_as_written(guide_env):
    """Seed 003, "Service Layer Integration", verbatim but for the return at the end."""
    from platform_api.jobs import refresh_window

    add_symbols(guide_env.instance, ["AAPL"])

    # --- the guide's example --------------------------------------------------------------
    from services.data_service import DataService

    class BacktestService:
        def __init__(self):
            self.data_service = DataService()

        async def run_backtest(self, symbols, start_date, end_date):
            # Ensure data is available
            await self.data_service.refresh_all_symbols(days_back=30)

            # Access data engine directly for performance
            from core.data_engine import DataEngine
            engine = DataEngine()
            data = engine.get_data(symbols[0], start_date, end_date)
            return data
    # ----------------------------------------------------------------------------------------

    start, end = refresh_window(30)
    data = asyncio.run(BacktestService().run_backtest(["AAPL"], start, end))
    sessions = sessions_in_range(STOCKS, start, end)
    assert list(data["date"].astype(str).str[:10]) == [d.isoformat() for d in sessions]  # one daily bar per session
    assert {"open", "high", "low", "close", "volume", "dq_status"} <= set(data.columns) and (data["symbol"] == "AAPL").all()
    result = DataService().refresh_all_symbols_sync(days_back=5)  # what the sync POST /data/refresh answers in `result`
    assert set(result) == {"success", "failed", "summary"} and result["summary"]["successful"] == 1
    assert DataService().get_symbols() == {"stocks": ["AAPL"], "crypto": [], "total": 1}
    assert DataService().get_coverage_sync("AAPL")["coverage"]["processed"]["latest"] == sessions[-1].isoformat()


def test_tf1_guide_backfill_api_and_config_modules():
    """Seed 004: ``src.services.market_data.backfill_api.backfill_l2(symbol, trading_day, *, force, strict)``
    and ``src/core/config.py`` are the platform's own."""
    import platform_api
    from src.core.config import get_settings
    from src.services.market_data.backfill_api import backfill_l2, find_warrior_tasks, run_warrior_backfill

    assert backfill_l2 is platform_api.backfill_l2 and find_warrior_tasks is platform_api.find_warrior_tasks
    assert run_warrior_backfill is platform_api.run_warrior_backfill
    parameters = inspect.signature(backfill_l2).parameters
    assert list(parameters)[:2] == ["symbol", "trading_day"]
    assert parameters["force"].kind is inspect.Parameter.KEYWORD_ONLY and parameters["strict"].default is False
    assert get_settings().level2_path.name in ("level2", "Level2")


@pytest.mark.parametrize(
    ("script", "command"),
    [("src/tools/record_depth.py", "record-depth"), ("src/tools/analysis/build_bars_coverage.py", "build-bars-coverage"),
     ("src/tools/auto_backfill_from_warrior.py", "warrior-backfill")],
)
def test_tf1_guide_scripts_are_the_mdp_commands(script, command):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, script, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"mdp {command}" in run.stdout or command in run.stdout


def test_build_bars_coverage_script_rebuilds_the_manifest(tmp_path):
    env = {**os.environ, "DATA_PATH_OVERRIDE": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "src/tools/analysis/build_bars_coverage.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "data" / "bars_coverage_manifest.json").exists()


def test_ingestion_guide_adapter_modules_import_as_written():
    """Seed 002 imports ``from src.ingestion.api_adapters.databento_adapter import DatabentoAdapter``."""
    from src.ingestion.api_adapters import AdapterRegistry, DatabentoAdapter as FromPackage
    from src.ingestion.api_adapters.base_adapter import BaseAdapter
    from src.ingestion.api_adapters.databento_adapter import DatabentoAdapter, DatabentoOHLCVRecord
    from src.ingestion.api_adapters.interactive_brokers_adapter import InteractiveBrokersAdapter

    from resources.adapters import databento_adapter, interactive_brokers_adapter, records

    assert DatabentoAdapter is FromPackage is databento_adapter.DatabentoAdapter and issubclass(DatabentoAdapter, BaseAdapter)
    assert InteractiveBrokersAdapter is interactive_brokers_adapter.InteractiveBrokersAdapter and DatabentoOHLCVRecord is records.DatabentoOHLCVRecord
    assert AdapterRegistry.adapters["databento"] is DatabentoAdapter


def test_design_rule_examples_build_and_evaluate_as_written():
    """Seed 001 section 3.5.1 builds rules without names; they are named after type and field."""
    import pandas as pd

    from platform_assets.quality.config import RuleSet
    from platform_assets.quality.engine import batch_from_frames, evaluate
    from platform_assets.quality.rules import EnumRule, MonotonicTimeRule, RangeRule

    rules = [
        RangeRule(field="close", min=0, max=None, severity="error"),
        EnumRule(field="bar_type", allowed=["TRADES"], severity="warn"),
        MonotonicTimeRule(entity_key="symbol", time_field="ts", severity="error"),
    ]
    assert [r.name for r in rules] == ["range_close", "enum_bar_type", "monotonic_time_ts"]
    frame = pd.DataFrame({
        "symbol": "AAPL", "close": [1.0, -1.0, 2.0], "bar_type": ["TRADES", "TRADES", "MIDPOINT"],
        "ts": pd.to_datetime(["2024-12-02 14:30", "2024-12-02 14:31", "2024-12-02 14:31"], utc=True),
    })
    evaluation = evaluate(RuleSet(dataset="bars", rules=rules), batch_from_frames([frame], [("AAPL", "2024-12-02")]), engine="vectorised")
    status = dict(zip(evaluation.results["metric"], evaluation.results["status"]))
    assert status == {"range_close": "error", "enum_bar_type": "warn", "monotonic_time_ts": "error"}
    assert RangeRule(name="close_positive", rule="range", field="close", min=0, severity="error").name == "close_positive"  # named as before


def test_design_validator_returns_failed_records_metrics_and_severity():
    """Seed 001 section 3.5.2: ``validate(df, rules) -> ValidationResult`` (failed_records, metrics,
    severity), per (symbol, New York date) partition; ``raise_for_severity`` fails a pipeline."""
    import pandas as pd

    from src.data_quality.rules import EnumRule, MonotonicTimeRule, RangeRule
    from src.data_quality.validator import DataQualityError, ValidationResult, validate

    frame = pd.DataFrame({
        "symbol": ["AAPL", "AAPL", "AAPL", "MSFT"], "close": [1.0, -1.0, 2.0, 3.0], "bar_type": ["TRADES", "TRADES", "MIDPOINT", "TRADES"],
        "ts": pd.to_datetime(["2024-12-02 14:30", "2024-12-02 14:31", "2024-12-02 14:31", "2024-12-02 14:30"], utc=True),
    }, index=[10, 11, 12, 13])
    rules = [RangeRule(field="close", min=0, max=None, severity="error"), EnumRule(field="bar_type", allowed=["TRADES"], severity="warn"),
             MonotonicTimeRule(entity_key="symbol", time_field="ts", severity="error")]
    result = validate(frame, rules)
    assert isinstance(result, ValidationResult) and result.severity == "error"
    assert list(result.failed_records.index) == [11, 12]
    assert list(result.failed_records["failed_rules"]) == ["range_close", "enum_bar_type,monotonic_time_ts"]
    assert result.metrics["rules"]["enum_bar_type"]["status"] == "warn" and result.metrics["rules"]["range_close"]["unexpected_count"] == 1
    assert result.metrics["rows"] == 4 and result.metrics["partitions"] == 2 and result.metrics["null_rates"]["close"] == 0.0
    with pytest.raises(DataQualityError, match="monotonic_time_ts, range_close"):
        result.raise_for_severity("error")
    clean = validate(frame.loc[[10, 13]], rules)
    assert clean.severity == "ok" and clean.failed_records.empty and clean.raise_for_severity() is clean
    assert validate(frame.loc[[10, 12]], rules[1:2]).severity == "warn"
    with pytest.raises(ValueError, match=r"missing: .*source \(known_source\)"):
        validate(frame, "raw_bars")  # a dataset name: its configured rules
    from resources.sim_market import simulate_day

    bars = simulate_day(7, "AAPL", dt.date(2024, 11, 18)).bars.assign(symbol="AAPL", source="sim")
    configured = validate(bars, "raw_bars")
    assert configured.metrics["partitions"] == 1 and {"close_positive", "unique_symbol_ts"} <= set(configured.metrics["rules"])


def test_environment_doc_lists_every_settings_key_and_the_guides_pointers_exist():
    """Seed 004: "Authoritative env docs live in docs/ENVIRONMENT.md" (kept in sync here), owners in
    CODEOWNERS, the "Describe All Tools" VS Code task, the README's Release Workflow."""
    import json

    from resources.settings import PlatformSettings

    keys = {alias for field in PlatformSettings.model_fields.values() if field.validation_alias is not None
            for alias in getattr(field.validation_alias, "choices", [field.validation_alias])}
    documented = (REPO / "docs" / "ENVIRONMENT.md").read_text()
    assert keys and not [key for key in sorted(keys) if f"`{key}`" not in documented]
    assert (REPO / "CODEOWNERS").read_text().strip()
    tasks = json.loads((REPO / ".vscode" / "tasks.json").read_text())["tasks"]
    assert any(t["label"] == "Describe All Tools" and "--describe" in t["command"] for t in tasks)
    assert "## Release workflow" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("script", ["src/tools/record_depth.py", "src/tools/auto_backfill_from_warrior.py", "src/tools/analysis/build_bars_coverage.py"])
def test_the_guides_scripts_describe_themselves(script):
    """Seed 004: "Use Describe All Tools ... (or --describe)": each script lists its arguments."""
    import json

    done = subprocess.run([sys.executable, str(REPO / script), "--describe", "--json"], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-2000:]
    described = json.loads(done.stdout)
    assert len(described) == 1 and described[0]["tool"].startswith("mdp ") and described[0]["help"]
