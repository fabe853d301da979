"""Materializing assets for one date and some symbols, synchronously (the design's pipeline entry
points): a ranged run on the Dagster instance of ``DAGSTER_HOME`` over the platform's definitions,
so the UI shows the run, its checks and its partitions like any other."""

from __future__ import annotations

import datetime as dt

from resources.validation import normalize_symbols, parse_date


class PipelineRunError(RuntimeError):
    """A pipeline entry point's run failed; the message names the failing step and the cause."""


def materialize_date(asset_names: list[str], date: dt.date | str, symbols: list[str]) -> dict[str, int]:
    """Materialize ``asset_names`` for ``date`` and ``symbols`` (tracked symbols: ``mdp symbols
    add``). Returns {asset: partitions materialized}; raises ``PipelineRunError`` when the run failed
    or a symbol-day failed inside it, ``InvalidInputError`` for a bad date or symbol."""
    from definitions import build_definitions
    from platform_api.backfill import plan_backfill, run_backfill
    from platform_api.instance import get_instance
    from resources.settings import get_settings

    day = parse_date(date, name="date")
    plan = plan_backfill(normalize_symbols(symbols), day, day)
    report = run_backfill(get_instance(), plan, defs=build_definitions(get_settings()), asset_selection=list(asset_names),
                          launched_by="design-pipeline")
    if not report.complete:
        raise PipelineRunError(f"{', '.join(asset_names)} for {day}: " + "; ".join(report.failures()))
    return report.materialized
