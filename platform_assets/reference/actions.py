"""Corporate actions as data, and the pure arithmetic of price adjustment (no I/O).

One normalized record per (symbol, event): ``ACTION_COLUMNS``. ``factor`` is the vendor's
adjustment factor (Databento's convention): multiply a price stamped *before* ``ex_date`` by it to
express it in post-event units (10:1 split -> 0.1, 1:5 reverse split -> 5.0, cash dividend ``D``
on a previous close ``C`` -> ``(C - D) / C``). ``kind`` is ``split`` for every capital change
other than a cash dividend (splits, reverse splits, bonus issues) and ``dividend`` for cash
dividends; ``adjustment="split"`` applies the first, ``"split_dividend"`` both.

Point in time. An action is *known* on date ``d`` when its ``announced_date <= d`` (the
announcement date as the reference gives it; the ex date when none is given) and it is not
cancelled. Two views follow:

* ``pit_index(actions, days)``: the forward adjustment factor known on each day,
  ``prod 1/factor`` over the actions known on ``d`` with ``ex_date <= d``. ``raw * index`` is
  continuous across every action known at the time and never uses a later announcement: the
  curated bars store it per bar (``adj_factor_split``, ``adj_factor``).
* ``back_factors(actions, days, as_of)``: the classic back-adjustment as of a date ``A``:
  ``prod factor`` over the actions known on ``A`` with ``d < ex_date <= A``. The latest prices
  stay raw, older ones are scaled. With ``A`` the last bar of a query it is point in time for that
  query; with a later ``A`` it is a research series ("as of A") and labelled as such by callers.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

ACTION_COLUMNS = [
    "symbol", "event_id", "event", "kind", "ex_date", "announced_date", "factor", "split_ratio", "dividend",
    "status", "source", "recorded_ts",
]
KINDS = ("split", "dividend")
# Per-bar columns of the curated bars: the forward factor known on the bar's session.
ADJUSTMENT_COLUMNS = {"adj_factor_split": "split", "adj_factor": "split_dividend"}
ADJUSTMENTS = ("none", "split", "split_dividend")
EVENTS = ("split", "reverse_split", "cash_dividend", "other")
STATUSES = ("apply", "cancelled")
# Databento EVENT codes: cash dividends, forward splits and consolidations (reverse splits).
DATABENTO_EVENTS = {"DIV": "cash_dividend", "FSPLT": "split", "CONSD": "reverse_split", "SPLIT": "split", "RSPLT": "reverse_split"}
DATABENTO_CANCELLED = {"C", "D", "X", "CANCELLED", "DELETED"}


class CorporateActionError(ValueError):
    """A corporate-action record or an adjustment option is invalid."""


@functools.lru_cache(maxsize=1)
def _empty_actions() -> pd.DataFrame:
    return normalize(pd.DataFrame(columns=ACTION_COLUMNS))


def empty_actions() -> pd.DataFrame:
    """No records, typed like ``normalize``'s output (built once: ~10 ms, asked per symbol-day)."""
    return _empty_actions().copy()


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Validated, typed and ordered records (one per event_id, the last recorded version wins)."""
    missing = [c for c in ACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise CorporateActionError(f"corporate actions lack columns: {', '.join(missing)}")
    out = frame[ACTION_COLUMNS].copy()
    for column in ("symbol", "event_id", "event", "kind", "status", "source"):
        out[column] = out[column].astype(str)
    for column in ("ex_date", "announced_date"):
        out[column] = pd.to_datetime(out[column]).dt.date
    for column in ("factor", "split_ratio", "dividend"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["recorded_ts"] = pd.to_datetime(out["recorded_ts"], utc=True)
    bad_kind = sorted(set(out["kind"]) - set(KINDS))
    bad_status = sorted(set(out["status"]) - set(STATUSES))
    if bad_kind or bad_status:
        raise CorporateActionError(f"unknown corporate-action kind {bad_kind} or status {bad_status}")
    applied = out["status"] == "apply"
    bad = out[applied & ~(np.isfinite(out["factor"]) & (out["factor"] > 0))]
    if len(bad):
        raise CorporateActionError(f"corporate action {bad.iloc[0]['event_id']} of {bad.iloc[0]['symbol']} has a non-positive factor")
    out = out.sort_values(["symbol", "event_id", "recorded_ts"], kind="stable").drop_duplicates(["symbol", "event_id"], keep="last")
    return out.sort_values(["symbol", "ex_date", "event_id"], kind="stable").reset_index(drop=True)


def kinds_of(adjustment: str) -> tuple[str, ...]:
    """The action kinds an ``adjustment`` option applies."""
    if adjustment not in ADJUSTMENTS:
        raise CorporateActionError(f"adjustment must be one of {', '.join(ADJUSTMENTS)}, got {adjustment!r}")
    return {"none": (), "split": ("split",), "split_dividend": KINDS}[adjustment]


def _applicable(actions: pd.DataFrame, adjustment: str) -> pd.DataFrame:
    kinds = kinds_of(adjustment)
    return actions[(actions["status"] == "apply") & actions["kind"].isin(kinds)]


def pit_index(actions: pd.DataFrame, days: Sequence[dt.date], adjustment: str = "split_dividend") -> np.ndarray:
    """Forward adjustment factor known on each day (1.0 before any known action)."""
    out = np.ones(len(days))
    if actions.empty:  # most symbols: no corporate action at all (no pandas filtering per session)
        return out
    usable = _applicable(actions, adjustment)
    if usable.empty:
        return out
    ex = usable["ex_date"].to_numpy()
    known = usable["announced_date"].to_numpy()
    inverse = 1.0 / usable["factor"].to_numpy(dtype=float)
    for i, day in enumerate(days):
        take = (ex <= day) & (known <= day)
        out[i] = float(np.prod(inverse[take])) if take.any() else 1.0
    return out


def adjustment_columns(actions: pd.DataFrame, day: dt.date) -> dict[str, float]:
    """The curated bars' per-session factor columns (``ADJUSTMENT_COLUMNS``) for ``day``."""
    return {column: float(pit_index(actions, [day], adjustment)[0]) for column, adjustment in ADJUSTMENT_COLUMNS.items()}


def back_factors(actions: pd.DataFrame, days: Sequence[dt.date], as_of: dt.date, adjustment: str = "split_dividend") -> np.ndarray:
    """Back-adjustment multiplier of each day's prices, as known on ``as_of`` (1.0 for days >= the last action)."""
    usable = _applicable(actions, adjustment)
    usable = usable[(usable["announced_date"] <= as_of) & (usable["ex_date"] <= as_of)]
    out = np.ones(len(days))
    if usable.empty:
        return out
    ex = usable["ex_date"].to_numpy()
    factor = usable["factor"].to_numpy(dtype=float)
    for i, day in enumerate(days):
        take = ex > day
        out[i] = float(np.prod(factor[take])) if take.any() else 1.0
    return out


def day_factor(actions: pd.DataFrame, day: dt.date, adjustment: str = "split_dividend") -> float:
    """Product of the factors of the actions going ex on ``day`` and known by then (1.0 if none):
    the move of the previous close a corporate action explains (``prev_close * factor``)."""
    if actions.empty:
        return 1.0
    usable = _applicable(actions, adjustment)
    take = (usable["ex_date"] == day) & (usable["announced_date"] <= day)
    return float(np.prod(usable.loc[take, "factor"].to_numpy(dtype=float))) if take.any() else 1.0


def changed_ex_dates(old: pd.DataFrame, new: pd.DataFrame) -> list[dt.date]:
    """First affected session of every record added, removed or changed between two versions.

    A record changes the factor known on the sessions from ``max(ex_date, announced_date)`` on
    (before its ex date no price moved; before its announcement nobody knew it), for its old and
    its new version alike: exactly the dates whose derived data must be recomputed.
    """
    key = ["symbol", "event_id"]
    compare = ["event", "kind", "ex_date", "announced_date", "factor", "status"]
    merged = old[key + compare].merge(new[key + compare], on=key, how="outer", suffixes=("_old", "_new"), indicator=True)
    dates: set[dt.date] = set()
    for row in merged.to_dict("records"):
        same = row["_merge"] == "both" and all(
            (row[f"{c}_old"] == row[f"{c}_new"]) or (isinstance(row[f"{c}_old"], float) and np.isclose(row[f"{c}_old"], row[f"{c}_new"]))
            for c in compare
        )
        if same:
            continue
        for side in ("old", "new"):
            ex, known = row[f"ex_date_{side}"], row[f"announced_date_{side}"]
            if isinstance(ex, dt.date) and isinstance(known, dt.date):
                dates.add(max(ex, known))
    return sorted(dates)


def adjust_bars(bars: pd.DataFrame, actions: pd.DataFrame, adjustment: str, as_of: dt.date) -> pd.DataFrame:
    """Back-adjusted copy of 1-min bars (columns date, open/high/low/close/vwap, volume) as of ``as_of``.

    Prices are multiplied by the back factor of their session; volume is divided by the split part
    of it (a 10:1 split makes earlier volume 10x), so dollar volume is preserved across splits.
    """
    if adjustment == "none":
        return bars
    out = bars.copy()
    days = pd.to_datetime(out["date"]).dt.date.to_numpy()
    unique = sorted(set(days))
    total = dict(zip(unique, back_factors(actions, unique, as_of, adjustment)))
    split = dict(zip(unique, back_factors(actions, unique, as_of, "split")))
    price_factor = np.array([total[d] for d in days])
    volume_factor = np.array([split[d] for d in days])
    for column in ("open", "high", "low", "close", "vwap"):
        if column in out.columns:
            out[column] = out[column].astype(float) * price_factor
    if "volume" in out.columns:
        out["volume"] = out["volume"].astype(float) / volume_factor
    out["adj_back_factor"] = price_factor
    return out
