"""Locating the Dagster instance the platform runs on (the one `dagster dev` shows)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from resources.settings import REPO_ROOT

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"


def ensure_dagster_home() -> Path:
    """Use ``DAGSTER_HOME`` (default ``./.dagster_home``), creating it with the repo's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()
