"""The low-level design's operations package (seed 001 section 2, ``src/ops/``): the orchestrator
integration (``orchestrator_adapter``: the platform's Dagster instance) and logging
(``logging_setup``: structured JSON lines)."""
