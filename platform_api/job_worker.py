"""``python -m platform_api.job_worker JOBS_DIR JOB_ID``: executes one recorded API job.

Started detached by ``platform_api.jobs``; the environment carries the settings of the caller. A
refresh job first waits for one of the ``API_MAX_CONCURRENT_REFRESHES`` slots (``job_slots``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

from platform_api.job_slots import REFRESH_GROUP, hold_slot, slot_limit


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    folder, job_id = Path(argv[0]), argv[1]
    slot = contextlib.nullcontext()
    with contextlib.suppress(OSError, ValueError):  # a refresh waits for a free slot (PENDING) before it imports anything heavy
        stored = json.loads((folder / f"{job_id}.json").read_text())
        if stored.get("kind") == REFRESH_GROUP:
            slot = hold_slot(folder, REFRESH_GROUP, slot_limit(stored.get("settings_env")))
    with slot:
        return _execute(folder, job_id)


def _execute(folder: Path, job_id: str) -> int:
    import dagster as dg

    from platform_api import job_store
    from platform_api.jobs import execute_job

    record = job_store.load(folder, job_id)
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(dg.deserialize_value(record.instance_ref, InstanceRef)) as instance:
        outcome = execute_job(instance, job_id)
    return 1 if outcome.error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
