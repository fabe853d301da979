"""The low-level design's training package (seed 001 section 3.8.1)."""
