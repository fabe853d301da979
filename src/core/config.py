"""The TF_1 guide's ``src/core/config.py``: the shared environment settings (``resources.settings``).

``get_settings()`` reads and validates ML_BASE_PATH, DATA_PATH_OVERRIDE, ML_BACKUP_PATH,
LEVEL2_DIRNAME, SYMBOL_MAPPING_FILE, the DATABENTO_* and L2_* keys (README "Settings").
"""

from resources.settings import PlatformSettings, SettingsError, get_settings, load_settings

__all__ = ["PlatformSettings", "SettingsError", "get_settings", "load_settings"]
