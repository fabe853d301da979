"""The low-level design's data-quality package (seed 001 section 3.5): rules, ``validate`` and
metrics over any DataFrame, on the platform's DQ engine (``platform_assets.quality``)."""
