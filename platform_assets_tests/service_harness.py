"""Start the real HTTP service (``mdp serve``: uvicorn) on a free loopback port for a test.

Each service gets its own Dagster home and data folder, and a small default universe (a YAML
given through ``DEFAULT_UNIVERSE_FILE``) so its first start seeds a couple of symbols, not 523.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx

REPO = Path(__file__).resolve().parent.parent
SMALL_UNIVERSE = "stock: [AAPL]\ncrypto: [BTC-USD]\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(tmp: Path, universe: str | None = SMALL_UNIVERSE, **extra: str) -> dict[str, str]:
    """Environment of a service; ``universe=None``: the repo's real default universe."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "DATA_PATH_OVERRIDE": str(tmp / "data"), "LAKE_FSYNC": "false",
        "PYTHONWARNINGS": "ignore", "API_REFRESH_RATE_LIMIT": "1000",
    }
    env.pop("PLATFORM_API_TOKEN", None)
    env.pop("DEFAULT_UNIVERSE_FILE", None)
    if universe is not None:
        (tmp / "universe.yaml").write_text(universe)
        env["DEFAULT_UNIVERSE_FILE"] = str(tmp / "universe.yaml")
    env.update(extra)
    return env


def job_workers(home: Path) -> list[int]:
    """PIDs of the job worker processes the service started (from its job records)."""
    folder = home / "platform_jobs"
    pids = []
    for path in folder.glob("*.json") if folder.exists() else []:
        record = json.loads(path.read_text())
        if record.get("worker_pid") and not record.get("finished_at"):
            pids.append(record["worker_pid"])
    return pids


@contextlib.contextmanager
def running_service(tmp: Path, universe: str | None = SMALL_UNIVERSE, args: tuple[str, ...] = (), **extra: str):
    """Yield ``(base_url, dagster_home, data_dir)`` of a running service; stop it (and any job
    worker it left running) afterwards."""
    env = service_env(tmp, universe, **extra)
    home = Path(env["DAGSTER_HOME"])
    port = free_port()
    log = open(tmp / "service.log", "wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "platform_api.cli", "serve", "--port", str(port), *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("service did not start:\n" + (tmp / "service.log").read_text())
            time.sleep(0.2)
        yield base, home, tmp / "data"
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=20)
        log.close()
        for pid in job_workers(home):  # workers run in their own session: stop the ones still running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


def wait_for_job(client: httpx.Client, status_url: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(status_url).json()
        if status["state"] in {"SUCCEEDED", "FAILED"} or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def stored_state(home: Path, data: Path) -> tuple:
    """Everything a request could change: the tracked universe, the lake's files, the job records."""
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) if data.exists() else []
    jobs = sorted(p.name for p in (home / "platform_jobs").glob("*.json")) if (home / "platform_jobs").exists() else []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        symbols = sorted(instance.get_dynamic_partitions("symbols"))
    return symbols, files, jobs


def lake_files(data: Path, table: str, symbol: str) -> int:
    """The Parquet files a lake table holds for a symbol (per-date and month files alike)."""
    return sum(1 for _ in (Path(data) / "lake" / table).glob(f"**/symbol={symbol}/*/*.parquet"))


def evaluate_tick(definition, **context_args):
    """One tick of a schedule or sensor, its evaluation context closed afterwards.

    A context built with an instance opens its own copy of that instance; left open, it would restore
    a dead instance's defs-state storage as Dagster's current one when garbage-collected later.
    """
    build = dg.build_schedule_context if isinstance(definition, dg.ScheduleDefinition) else dg.build_sensor_context
    with build(**context_args) as context:
        return definition.evaluate_tick(context)
