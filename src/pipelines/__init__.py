"""The low-level design's pipelines (seed 001 sections 3.4, 3.6, 3.7): entry points that
materialize the platform's Dagster assets for one date, and the design's pure functions."""
