"""The low-level design's configuration layer (seed 001 section 3.1): ``src.config.settings``."""
