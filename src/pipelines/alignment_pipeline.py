"""Seed 001 section 3.7.1: ``run_alignment(date, symbols)`` materializes the platform's
``aligned_bars`` for the date: curated bars joined on (symbol, ts) with the as-of L2 top of book
(the last snapshot strictly before each bar's end, at most 5 minutes old: never a later one)."""

from __future__ import annotations

import datetime as dt

from src.pipelines.runs import PipelineRunError, materialize_date

__all__ = ["PipelineRunError", "run_alignment"]


def run_alignment(date: dt.date, symbols: list[str]) -> None:
    """Align ``date`` for ``symbols`` (the ``aligned_bars`` asset); ``PipelineRunError`` on failure."""
    materialize_date(["aligned_bars"], date, symbols)
