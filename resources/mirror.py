"""``ML_BACKUP_PATH``: a mirror of the platform's critical small files (manifests, run summaries).

After a manifest or summary is written under the base folder, ``mirror_file`` copies it to the same
relative path under the backup folder, atomically (temp file + rename), so the mirror always holds
a complete copy of each file as of its last write. Lake data is not mirrored: it is rebuilt from
raw. A failing mirror is logged and never fails the write it follows (the backup is optional).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from resources.atomic import atomic_write

LOG = logging.getLogger(__name__)


def mirror_target(path: Path, base: Path, backup: Path) -> Path:
    """Where ``path`` goes under ``backup``: its path relative to ``base`` (its name otherwise)."""
    path, base = Path(path).absolute(), Path(base).absolute()
    relative = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
    return Path(backup) / relative


def mirror_file(path: Path, base: Path, backup: Path | str | None, *, fsync: bool = True) -> Path | None:
    """Copy ``path`` into the backup folder atomically; None when no backup is configured."""
    if not backup:
        return None
    target = mirror_target(path, base, Path(backup))
    try:
        return atomic_write(target, lambda tmp: shutil.copyfile(path, tmp), fsync=fsync)
    except OSError as error:
        LOG.warning("could not mirror %s to %s: %s", path, target, error)
        return None
