"""Tie a helper process's life to its parent's (Linux ``PR_SET_PDEATHSIG``).

The backfill workers' preload server and its workers (``platform_api.backfill.worker_context``)
are helpers of the process that started the backfill (``mdp backfill``, a job worker, a test): when
that process dies, even by ``kill -9``, they must die too instead of finishing its runs unseen
and lingering (the runs they leave STARTED are then failed by the next backfill's run reaper).
Reads no environment and imports nothing heavy: the preload server imports it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent exits; True when set. Exits at once
    when the parent is already gone (re-parented before the call). Nothing on other systems."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died between the two looks: it will not signal us
        os._exit(1)
    return True
