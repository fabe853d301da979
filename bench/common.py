"""Shared plumbing for the benchmarks: isolated data/instance folders, timing, the result table."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One line of the benchmark table: our time against the baseline's, measured in one run."""

    what: str
    ours_s: float
    baseline_s: float | None = None
    baseline: str = ""
    rows: int | None = None
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.baseline_s / self.ours_s if self.baseline_s and self.ours_s else None

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.ours_s if self.rows and self.ours_s else None


def median_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextlib.contextmanager
def isolated_platform(prefix: str = "mdp-bench-") -> Iterator[Path]:
    """A temp folder holding a fresh lake (``data/``) and Dagster home (``dagster_home/``).

    The environment points at it for the duration (child processes inherit it), and the settings
    cache is cleared on entry and exit so nothing leaks into the repo's ./data or ./.dagster_home.
    """
    from resources.settings import get_settings

    root = Path(tempfile.mkdtemp(prefix=prefix))
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    saved = {k: os.environ.get(k) for k in ("DATA_PATH_OVERRIDE", "DAGSTER_HOME", "LAKE_FSYNC")}
    os.environ.update(DATA_PATH_OVERRIDE=str(root / "data"), DAGSTER_HOME=str(home), LAKE_FSYNC="false")
    get_settings.cache_clear()
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        shutil.rmtree(root, ignore_errors=True)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_table(results: list[Result]) -> str:
    """A plain-text table: what, ours, baseline, ratio, rows/s, target."""
    header = ("benchmark", "ours", "baseline", "ratio", "rows/s", "target")
    lines = [
        (
            r.what,
            _fmt_s(r.ours_s),
            f"{_fmt_s(r.baseline_s)} ({r.baseline})" if r.baseline_s else "-",
            f"{r.ratio:.1f}x" if r.ratio else "-",
            f"{r.rows_per_s:,.0f}" if r.rows_per_s else "-",
            r.target,
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in [header, *lines]]
    out.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  * {r.what}: {r.note}" for r in results if r.note]
    return "\n".join(out + notes)
