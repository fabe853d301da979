"""The example model shipped for the offline default: small, pure numpy, deterministic.

A short-horizon mean-reversion score on ``bar_features`` v1: the 5-bar mean return in units of
the 20-bar volatility, squashed with ``tanh`` and sign-flipped (a stretched move is expected to
revert), damped when volume runs far above its 20-bar mean (news moves revert less)::

    z = ret_mean_5 / ret_vol_20;  prediction = -tanh(z) / (1 + max(volume_ratio_20 - 1, 0))

Undefined inputs (NaN early in a session, zero volatility) give 0.0: no view. It is an
illustration of the model interface (``name``, ``version``, ``required_columns``,
``predict(frame) -> array``), not a trading signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class ExampleMeanReversionModel:
    """``predict(features)``: one float in [-1, 1] per row, deterministic."""

    name = "example_mean_reversion"
    version = "1"
    required_columns = ("ret_mean_5", "ret_vol_20", "volume_ratio_20")

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.required_columns if c not in features.columns]
        if missing:
            raise ValueError(f"{self.name} needs feature column(s) {', '.join(missing)} (bar_features v1)")
        mean = features["ret_mean_5"].to_numpy(dtype="float64")
        vol = features["ret_vol_20"].to_numpy(dtype="float64")
        ratio = features["volume_ratio_20"].to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(vol > 0, mean / vol, np.nan)
        damp = 1.0 + np.clip(np.nan_to_num(ratio, nan=1.0) - 1.0, 0.0, None)
        return np.nan_to_num(-np.tanh(z) / damp, nan=0.0)
