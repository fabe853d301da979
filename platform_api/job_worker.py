"""``python -m platform_api.job_worker JOBS_DIR JOB_ID``: executes one recorded API job.

Started detached by ``platform_api.jobs``; the environment carries the settings of the caller.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    import dagster as dg

    from platform_api import job_store
    from platform_api.jobs import execute_job

    folder, job_id = Path(argv[0]), argv[1]
    record = job_store.load(folder, job_id)
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(dg.deserialize_value(record.instance_ref, InstanceRef)) as instance:
        outcome = execute_job(instance, job_id)
    return 1 if outcome.error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
