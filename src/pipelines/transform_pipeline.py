"""Seed 001 section 3.4: raw -> curated, and the gap engine (section 3.6).

    run_transform_tws_bars(date(2024, 12, 2), ["AAPL", "MSFT"])   # materializes curated_bars for that date

``run_transform_tws_bars`` runs the platform's ``curated_bars`` asset for the date and symbols: it
reads the stored raw batches (IB / TWS bars as ``raw_bars/source=ib``, by the source priority),
drops invalid records, runs the DQ rules (a day failing an error rule is not curated), builds the
expected timeline, classifies and fills the gaps, writes the curated bars and their DQ metrics.
``fill_gaps`` / ``GapConfig`` are the gap engine as a function over any frame
(``src.data_quality.gaps``).
"""

from __future__ import annotations

import datetime as dt

from src.data_quality.gaps import GapConfig, GapMask, ImputationStrategy, fill_gaps
from src.pipelines.runs import PipelineRunError, materialize_date

__all__ = ["GapConfig", "GapMask", "ImputationStrategy", "PipelineRunError", "fill_gaps", "run_transform_tws_bars"]


def run_transform_tws_bars(date: dt.date, symbols: list[str]) -> None:
    """Curate the raw bars of ``date`` for ``symbols`` (the ``curated_bars`` asset); raises
    ``PipelineRunError`` when a symbol-day could not be curated."""
    materialize_date(["curated_bars"], date, symbols)
