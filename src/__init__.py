"""The TF_1 alignment guide's module and script names (seed 004), each a thin entry into the platform:

* ``src.services.market_data.backfill_api.backfill_l2`` (and the batch orchestrator) ->
  ``platform_api.backfill_l2``, ``find_warrior_tasks``, ``run_warrior_backfill``;
* ``src/core/config.py`` -> ``resources.settings`` (the validated environment settings);
* ``src/tools/record_depth.py`` -> ``mdp record-depth``;
* ``src/tools/analysis/build_bars_coverage.py`` -> ``mdp build-bars-coverage``;
* ``src/tools/auto_backfill_from_warrior.py`` -> ``mdp warrior-backfill``.
"""
