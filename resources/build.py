"""The resource set of the platform, built from the settings (`build_resources`)."""

from __future__ import annotations

from resources.io_managers import LakeIOManager
from resources.l2_store import L2SnapshotStore
from resources.lake import ParquetLake
from resources.databento_source import DatabentoSource
from resources.ib_source import IBSource
from resources.bars_manifest import BarsManifest
from resources.offline_source import OfflineSource
from resources.settings import PlatformSettings, get_settings


def build_resources(settings: PlatformSettings | None = None) -> dict:
    """The resource set every asset of the platform runs with."""
    from platform_assets.quality.checks import DataQuality  # the rule engine imports resources itself
    from platform_assets.quality.config import DEFAULT_RULES_FILE

    settings = settings or get_settings()
    base, level2 = str(settings.base_path), str(settings.level2_path)
    return {
        "lake": ParquetLake(base_path=base, fsync=settings.lake_fsync, batch_writes=settings.lake_batch_writes, read_copies=settings.lake_read_copies),
        "l2_store": L2SnapshotStore(level2_path=level2, fsync=settings.lake_fsync),
        "offline_source": OfflineSource(seed=settings.sim_seed),
        "databento": databento_source(settings),
        "ib": IBSource(host=settings.ib_host, port=settings.ib_port, client_id=settings.ib_client_id),
        "bars_manifest": BarsManifest(base_path=base, fsync=settings.lake_fsync, backup_path=str(settings.backup_path) if settings.backup_path else None),
        "io_manager": LakeIOManager(base_path=base, level2_path=level2),
        "data_quality": DataQuality(rules_file=str(settings.dq_rules_file or DEFAULT_RULES_FILE), engine=settings.dq_engine),
    }


def databento_source(settings: PlatformSettings) -> DatabentoSource:
    """The Databento resource as the settings configure it (the key stays in the environment)."""
    if settings.temp_path:
        settings.temp_path.mkdir(parents=True, exist_ok=True)
    return DatabentoSource(
        dataset=settings.databento_dataset,
        gateway=settings.databento_gateway,
        symbol_mapping_file=str(settings.symbol_mapping_file) if settings.symbol_mapping_file else None,
        download_dir=str(settings.temp_path) if settings.temp_path else None,  # TEMP_PATH
    )
