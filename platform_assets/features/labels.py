"""Labels: forward log returns over configurable horizons, under a versioned definition.

Labels are the only data allowed to look ahead, and they are stored apart from features (their
own table and asset), so they can never leak into a feature row. A label at ``ts`` for horizon
``h`` is ``log(close[ts + h] / close[ts])`` within the same session; it is NaN past the session
end, and ``valid_h`` is false when either bar is imputed or missing; ``fwd_ret_h`` is NaN wherever
``valid_h`` is false (a forward-filled price is not a return anyone earned, so a ``dropna()`` on
the labels keeps only rows a model should learn from). ``available_ts`` tells when
the longest-horizon label becomes known: ``ts + (max_h + 1) min``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from resources.validation import validate_version


@dataclass(frozen=True)
class LabelDefinition:
    version: str
    horizons: tuple[int, ...]
    description: str

    def __post_init__(self) -> None:
        validate_version(self.version)
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ValueError("label horizons must be positive minute counts")

    @property
    def columns(self) -> list[str]:
        return [f"fwd_ret_{h}" for h in self.horizons] + [f"valid_{h}" for h in self.horizons]


LABEL_DEFINITIONS = {
    "v1": LabelDefinition("v1", (1, 5, 15), "forward log return of close over 1, 5 and 15 minutes, same session"),
}
KEY_COLUMNS = ["date", "symbol", "ts", "available_ts", "label_def_version"]


def get_label_definition(version: str) -> LabelDefinition:
    validate_version(version)
    if version not in LABEL_DEFINITIONS:
        raise KeyError(f"unknown label definition {version!r}; known: {', '.join(sorted(LABEL_DEFINITIONS))}")
    return LABEL_DEFINITIONS[version]


def compute_labels(curated: pd.DataFrame, definition: LabelDefinition) -> pd.DataFrame:
    """Labels for the curated bars of one (symbol, session)."""
    return compute_labels_many(curated, definition)


def compute_labels_many(curated: pd.DataFrame, definition: LabelDefinition) -> pd.DataFrame:
    """``compute_labels`` of every (symbol, session) in ``curated`` in one pass, rows by (symbol,
    date, ts): a horizon reaching past its session's last bar is NaN / invalid, as per session."""
    from platform_assets.features.bar_features import session_order

    bars, group_start, position = session_order(curated)
    n = len(bars)
    lengths = np.diff(np.append(np.flatnonzero(position == 0), n))
    remaining = np.repeat(lengths, lengths) - position  # bars from this one to its session's end
    close = bars["close"].astype(float).to_numpy()
    real = (bars["dq_status"] == "ok").to_numpy()
    out = pd.DataFrame({"date": bars["date"], "symbol": bars["symbol"], "ts": bars["ts"]})
    out["available_ts"] = pd.DatetimeIndex(bars["ts"]) + pd.Timedelta(minutes=max(definition.horizons) + 1)
    out["label_def_version"] = definition.version
    for h in definition.horizons:
        inside = remaining > h
        future = np.full(n, np.nan)
        future_real = np.zeros(n, dtype=bool)
        if h < n:
            future[: n - h] = close[h:]
            future_real[: n - h] = real[h:]
        future[~inside] = np.nan
        future_real &= inside
        valid = real & future_real
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"fwd_ret_{h}"] = np.where(valid, np.log(future / close), np.nan)
        out[f"valid_{h}"] = valid
    return out[KEY_COLUMNS + definition.columns]
