"""Shared fixtures: every test gets its own data folder and Dagster instance in a temp dir."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

# Importing `definitions` anywhere in the suite must never touch the repo's ./data.
_SESSION_DATA = tempfile.mkdtemp(prefix="mdp-test-data-")
os.environ.setdefault("DATA_PATH_OVERRIDE", _SESSION_DATA)
os.environ["LAKE_FSYNC"] = "false"
warnings.filterwarnings("ignore", category=DeprecationWarning)

import dagster as dg  # noqa: E402

from resources.settings import PlatformSettings, load_settings  # noqa: E402


@dataclass
class Platform:
    settings: PlatformSettings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    home: Path

    @property
    def resources(self) -> dict:
        return self.defs.resources


def pooled_instance() -> dict:
    """The instance class of the repo's dagster.yaml (``resources.dagster_sqlite``: pooled SQLite event log)."""
    return {"instance_class": {"module": "resources.dagster_sqlite", "class": "PlatformInstance"}}


@pytest.fixture
def platform(tmp_path: Path):
    """Definitions bound to a temp data folder, and a temp Dagster instance."""
    from definitions import build_definitions

    settings = load_settings(DATA_PATH_OVERRIDE=str(tmp_path / "data"), LAKE_FSYNC="false")
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=pooled_instance()) as instance:
        yield Platform(settings=settings, defs=build_definitions(settings), instance=instance, home=home)
