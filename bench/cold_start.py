"""Cold start: a fresh Python process from ``import definitions`` to a fully resolved asset graph."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bench.common import Result, format_table

SCRIPT = "import definitions; definitions.defs.resolve_asset_graph(); definitions.defs.resolve_all_job_defs()"


def run(repeat: int = 3) -> list[Result]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", SCRIPT], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True)
        times.append(time.perf_counter() - started)
    return [Result(what="cold start: new process to loaded Definitions", ours_s=statistics.median(times), target="< 5 s",
                   note=f"median of {repeat} processes, includes interpreter start and imports")]


if __name__ == "__main__":
    print(format_table(run()))
