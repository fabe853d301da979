"""Benchmarks of the platform: each module measures one thing against a baseline in the same run.

Run them all with ``make bench`` (``python -m bench``) or one with ``python -m bench.<name>``.
"""

import os
import warnings

os.environ.setdefault("PYTHONWARNINGS", "ignore")  # child processes (spawned workers, runs) too

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # Dagster's beta/preview warnings are noise in benchmark output.
    from dagster._utils.warnings import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
except ImportError:  # pragma: no cover - older/newer dagster
    pass
