"""``LakeStore``: what every design store stands on: the platform settings and the lake."""

from __future__ import annotations

from resources.lake import ParquetLake
from resources.settings import get_settings


class LakeStore:
    """A store over the platform's lake; ``base_path`` (default: the settings' data folder) overrides
    where it lives, for the store and the platform readers it calls (``self.settings``)."""

    def __init__(self, base_path: str | None = None):
        settings = get_settings()
        self.settings = settings if base_path is None else settings.model_copy(update={"data_path_override": base_path})
        self.lake = ParquetLake(base_path=str(base_path or settings.base_path), fsync=settings.lake_fsync)
