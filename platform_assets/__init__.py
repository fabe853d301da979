"""The platform's Dagster assets.

Dagster's ``BetaWarning`` / ``PreviewWarning`` notices about the features this project uses on
purpose (``backfill_policy``, partitioned asset checks) are silenced here: they repeat on every
definitions build and drowned a training script's or job's own output on stderr. Other warnings
are left as they are.
"""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
