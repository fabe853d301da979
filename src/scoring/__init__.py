"""The low-level design's scoring package (seed 001 section 3.8.2)."""
