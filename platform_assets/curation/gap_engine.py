"""Gap engine: raw vendor bars -> canonical, gap-aware 1-minute bars for one (symbol, session).

Pure functions, no I/O. Steps:

1. **Validate** every raw row: finite, positive prices; high >= low; high >= max(open, close) and
   low <= min(open, close); volume >= 0; ts on the session's 1-minute grid. Invalid rows are
   dropped and counted by reason. Rows repeating a ts already seen are dropped as duplicates.
2. **Align** the valid bars to the expected timeline (every minute of the session from the
   exchange calendar: 390 minutes on a full XNYS day, 210 on a half day, none on a holiday).
3. **Classify** each missing minute (a gap):

   * ``invalid``: the vendor sent a bar but it failed validation (e.g. a bad tick).
   * ``no_trade``: the L2 book for that minute exists and moves, so the feed was alive and nobody
     traded (vendors send no bar for a minute without trades).
   * ``halt``: a run of at least ``halt_min_minutes`` consecutive no-trade minutes whose book is
     frozen (every snapshot repeats the one before it).
   * ``feed_gap``: no bar and no L2 snapshot either: we lost the feed.
   * ``unknown``: no bar and no L2 data at all for that session, so the data cannot tell a quiet
     minute from a lost one.

4. **Impute** per column: ``close`` is forward-filled from the last real bar, ``open``/``high``/
   ``low``/``vwap`` take that close, ``volume`` and ``trade_count`` are 0. Minutes before the first
   real bar of the session have no price to carry (no look-ahead back-fill): prices stay NaN and
   ``dq_status`` is ``missing``.

Output columns are listed in ``CURATED_COLUMNS``: ``is_imputed`` and ``gap_type`` are the gap
mask; ``gap_run_minutes`` is the length of the gap run a minute belongs to; ``dq_status`` is
``ok`` (real bar), ``imputed`` or ``missing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

GAP_NONE = "none"
GAP_NO_TRADE = "no_trade"
GAP_HALT = "halt"
GAP_FEED = "feed_gap"
GAP_INVALID = "invalid"
GAP_UNKNOWN = "unknown"
GAP_TYPES = (GAP_NO_TRADE, GAP_HALT, GAP_FEED, GAP_INVALID, GAP_UNKNOWN)

DQ_OK, DQ_IMPUTED, DQ_MISSING = "ok", "imputed", "missing"

CURATED_COLUMNS = [
    "date",
    "symbol",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "source",
    "is_imputed",
    "gap_type",
    "gap_run_minutes",
    "dq_status",
]
PRICE_COLUMNS = ["open", "high", "low", "close"]
INVALID_REASONS = (
    "non_finite_price",
    "non_positive_price",
    "high_below_low",
    "ohlc_inconsistent",
    "negative_volume",
    "off_session",
)


@dataclass(frozen=True)
class ImputationPolicy:
    """How each column of a gap minute is filled, and when a frozen quiet run counts as a halt."""

    price_method: str = "ffill"  # open/high/low/close/vwap carry the last real close
    volume_fill: int = 0
    trade_count_fill: int = 0
    halt_min_minutes: int = 5

    def __post_init__(self) -> None:
        if self.price_method != "ffill":
            raise ValueError(f"unknown price imputation {self.price_method!r}; supported: ffill")
        if self.halt_min_minutes < 2:
            raise ValueError("halt_min_minutes must be at least 2")


@dataclass
class GapStats:
    """Counts for one curated (symbol, session)."""

    expected_minutes: int = 0
    raw_rows: int = 0
    real_minutes: int = 0
    imputed_minutes: int = 0
    missing_minutes: int = 0
    duplicate_rows: int = 0
    invalid_rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVALID_REASONS, 0))
    gap_minutes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GAP_TYPES, 0))
    gap_runs: int = 0
    max_gap_run: int = 0

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid_rows.values())

    @property
    def gap_ratio(self) -> float:
        gaps = self.expected_minutes - self.real_minutes
        return gaps / self.expected_minutes if self.expected_minutes else 0.0

    def as_dict(self) -> dict:
        return {
            "expected_minutes": self.expected_minutes,
            "raw_rows": self.raw_rows,
            "real_minutes": self.real_minutes,
            "imputed_minutes": self.imputed_minutes,
            "missing_minutes": self.missing_minutes,
            "duplicate_rows": self.duplicate_rows,
            "invalid_rows": self.invalid_total,
            **{f"invalid_{k}": v for k, v in self.invalid_rows.items()},
            **{f"gap_{k}_minutes": v for k, v in self.gap_minutes.items()},
            "gap_runs": self.gap_runs,
            "max_gap_run": self.max_gap_run,
            "gap_ratio": round(self.gap_ratio, 6),
        }


def invalid_reason(raw: pd.DataFrame, timeline: pd.DatetimeIndex) -> pd.Series:
    """Per raw row: the first validation rule it breaks, or ``""`` when the row is valid."""
    prices = raw[PRICE_COLUMNS].to_numpy(dtype=float)
    volume = raw["volume"].to_numpy(dtype=float)
    reason = np.full(len(raw), "", dtype=object)
    checks = [
        ("non_finite_price", ~np.isfinite(prices).all(axis=1)),
        ("non_positive_price", (prices <= 0).any(axis=1)),
        ("high_below_low", raw["high"].to_numpy() < raw["low"].to_numpy()),
        (
            "ohlc_inconsistent",
            (raw["high"].to_numpy() < np.maximum(raw["open"], raw["close"]).to_numpy())
            | (raw["low"].to_numpy() > np.minimum(raw["open"], raw["close"]).to_numpy()),
        ),
        ("negative_volume", ~(volume >= 0)),
        ("off_session", ~pd.DatetimeIndex(raw["ts"]).isin(timeline)),
    ]
    for name, failed in checks:
        reason = np.where((reason == "") & failed, name, reason)
    return pd.Series(reason, index=raw.index, name="invalid_reason")


def l2_minute_activity(
    snapshot_ts: np.ndarray, top_of_book: np.ndarray, timeline: pd.DatetimeIndex
) -> pd.DataFrame:
    """Per timeline minute: whether any L2 snapshot fell in it, and whether the book moved.

    ``snapshot_ts`` are UTC ``datetime64[ns]`` (sorted); ``top_of_book`` is an ``n x k`` array
    (e.g. best bid/ask price and size). A snapshot "moved" if it differs from the one before it.
    """
    n = len(timeline)
    if len(snapshot_ts) == 0 or n == 0:
        return pd.DataFrame({"has_l2": np.zeros(n, bool), "book_moved": np.zeros(n, bool)}, index=timeline)
    start = timeline[0].tz_convert("UTC").tz_localize(None).to_datetime64()
    minute = ((snapshot_ts - start) // np.timedelta64(1, "m")).astype(np.int64)
    inside = (minute >= 0) & (minute < n)
    moved = np.ones(len(snapshot_ts), dtype=bool)
    moved[1:] = (top_of_book[1:] != top_of_book[:-1]).any(axis=1)
    has_l2 = np.bincount(minute[inside], minlength=n) > 0
    book_moved = np.bincount(minute[inside], weights=moved[inside].astype(float), minlength=n) > 0
    return pd.DataFrame({"has_l2": has_l2, "book_moved": book_moved}, index=timeline)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run id and run length for every element of a 1-D array of labels."""
    if len(values) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.concatenate([[True], values[1:] != values[:-1]])
    run_id = np.cumsum(change) - 1
    lengths = np.bincount(run_id)
    return run_id, lengths[run_id]


def classify_gaps(
    present: np.ndarray,
    had_invalid: np.ndarray,
    activity: pd.DataFrame | None,
    policy: ImputationPolicy,
) -> np.ndarray:
    """Gap type per timeline minute (``none`` where a valid bar is present)."""
    n = len(present)
    gap = np.full(n, GAP_NONE, dtype=object)
    missing = ~present
    if activity is None or not activity["has_l2"].any():
        gap[missing] = GAP_UNKNOWN
    else:
        has_l2 = activity["has_l2"].to_numpy()
        gap[missing & has_l2] = GAP_NO_TRADE
        gap[missing & ~has_l2] = GAP_FEED
        frozen = (gap == GAP_NO_TRADE) & ~activity["book_moved"].to_numpy()
        _, run_len = _runs(frozen)
        gap[frozen & (run_len >= policy.halt_min_minutes)] = GAP_HALT
    gap[missing & had_invalid] = GAP_INVALID
    return gap


def curate_bars(
    raw: pd.DataFrame,
    timeline: pd.DatetimeIndex,
    *,
    symbol: str,
    day,
    source: str,
    activity: pd.DataFrame | None = None,
    policy: ImputationPolicy = ImputationPolicy(),
) -> tuple[pd.DataFrame, GapStats, pd.DataFrame]:
    """Curate one (symbol, session). Returns (curated bars, stats, rejected raw rows with reason)."""
    stats = GapStats(expected_minutes=len(timeline), raw_rows=len(raw))
    raw = raw.reset_index(drop=True)
    reason = invalid_reason(raw, timeline) if len(raw) else pd.Series([], dtype=object)
    valid = raw[reason == ""]
    duplicated = valid["ts"].duplicated(keep="first")
    stats.duplicate_rows = int(duplicated.sum())
    for name, count in reason[reason != ""].value_counts().items():
        stats.invalid_rows[name] = int(count)
    rejected = pd.concat(
        [raw[reason != ""].assign(reject_reason=reason[reason != ""]), valid[duplicated].assign(reject_reason="duplicate")]
    )
    valid = valid[~duplicated].set_index("ts")

    frame = valid.reindex(timeline)
    present = frame["close"].notna().to_numpy()
    had_invalid = timeline.isin(pd.DatetimeIndex(raw.loc[reason != "", "ts"])) if len(raw) else np.zeros(len(timeline), bool)
    gap = classify_gaps(present, np.asarray(had_invalid), activity, policy)
    run_id, run_len = _runs(gap)

    close = frame["close"].ffill()
    for column in ("open", "high", "low", "vwap"):
        frame[column] = frame[column].where(present, close)
    frame["close"] = close
    frame["volume"] = frame["volume"].where(present, policy.volume_fill).fillna(policy.volume_fill).astype("int64")
    frame["trade_count"] = frame["trade_count"].where(present, policy.trade_count_fill).fillna(policy.trade_count_fill).astype("int64")
    has_price = close.notna().to_numpy()
    frame["is_imputed"] = ~present & has_price
    frame["gap_type"] = gap
    frame["gap_run_minutes"] = np.where(present, 0, run_len).astype("int64")
    frame["dq_status"] = np.select([present, has_price], [DQ_OK, DQ_IMPUTED], DQ_MISSING)
    frame["symbol"], frame["date"], frame["source"] = symbol, day, source
    curated = frame.rename_axis("ts").reset_index()[CURATED_COLUMNS]

    stats.real_minutes = int(present.sum())
    stats.imputed_minutes = int(frame["is_imputed"].sum())
    stats.missing_minutes = int((~present & ~has_price).sum())
    for gap_type in GAP_TYPES:
        stats.gap_minutes[gap_type] = int((gap == gap_type).sum())
    gap_runs = np.unique(run_id[~present])
    stats.gap_runs = len(gap_runs)
    stats.max_gap_run = int(run_len[~present].max()) if (~present).any() else 0
    return curated, stats, rejected.reset_index(drop=True)
