"""The low-level design's storage layer (seed 001 section 3.3): raw, curated and feature stores
over the platform's lake (``resources.lake.ParquetLake``: atomic, append-only raw batches)."""
