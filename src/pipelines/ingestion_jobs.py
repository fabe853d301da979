"""Seed 001 section 2: orchestration entry points (CLI / cron). The platform's are Dagster's: the
``offline_pipeline`` job, the schedules and sensors (README "Schedules, sensors, automation"), and
the command line ``mdp`` (``mdp backfill``, ``mdp --describe``). ``main`` here is ``mdp``."""

from platform_api.cli import main

__all__ = ["main"]
