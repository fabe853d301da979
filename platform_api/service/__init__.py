"""The HTTP data service (FastAPI): refresh, symbols, coverage and job status over the Dagster instance."""
