"""Seed 004: a strict L2 batch (`auto_backfill_from_warrior.py --since 30 --max-workers 4 --strict`, the guide's
flow 2) still emits its machine-parsable SUMMARY line, on stdout and in ``{LOGS_PATH}/backfill_l2.log``, and ends
with a one-line error and exit code 1, not a traceback.

Real processes, no mocks: the guide's script and ``mdp l2-backfill`` run as subprocesses on a fresh data folder
and Dagster instance; without ``DATABENTO_API_KEY`` every task fails, which is what ``--strict`` must stop on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABENTO", "ML_", "DATA_PATH", "LOGS_PATH"))}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env.update(DAGSTER_HOME=str(home), DATA_PATH_OVERRIDE=str(tmp_path / "data"))
    return env


def _summary_lines(text: str) -> list[dict]:
    return [json.loads(line.split("SUMMARY ", 1)[1]) for line in text.splitlines() if "SUMMARY {" in line]


@pytest.mark.parametrize("command", [
    [sys.executable, "src/tools/auto_backfill_from_warrior.py", "--symbols", "AAPL,MSFT", "--since", "30", "--max-workers", "4", "--strict"],
    [sys.executable, "-m", "platform_api.cli", "l2-backfill", "--start", "2024-11-25", "--end", "2024-11-28", "--symbols", "AAPL,MSFT", "--strict"],
], ids=["warrior-script", "mdp-l2-backfill"])
def test_strict_batch_still_logs_its_summary(tmp_path, command):
    done = subprocess.run(command, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: L2 backfill failed for "), done.stderr
    assert "MissingApiKeyError" in done.stderr

    saved = json.loads((tmp_path / "data" / "manifests" / "backfill_l2_summary.json").read_text())
    assert saved["strict"] is True and saved["counts"]["ERROR"] >= 1

    printed = _summary_lines(done.stdout)
    assert len(printed) == 1 and printed[0]["counts"] == saved["counts"] and printed[0]["strict"] is True
    logged = _summary_lines((tmp_path / "data" / "logs" / "backfill_l2.log").read_text())
    assert len(logged) == 1 and logged[0]["counts"] == saved["counts"] and logged[0]["errors"] == saved["errors"]
