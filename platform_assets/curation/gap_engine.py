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
   ``dq_status`` is ``missing``. ``is_imputed`` is True on every minute without a valid bar (with a
   carried price or without one), so no consumer takes a minute without a bar for a real one
   (``latest`` inference, ``model_frame()``, the features' flag).

Output columns are listed in ``CURATED_COLUMNS``; ``dq_status`` is ``ok`` (real bar), ``imputed``
or ``missing``.

Point in time (what a model may use): a curated row stamped ``t`` is known when its bar closes,
at ``t + 1 min``, and every column except the two ``*_retrospective``/``*_total`` ones is computed
from inputs known by then (bars and snapshots stamped before ``t + 1 min``):

* ``gap_type``: the gap type **as of t**. A frozen quiet run is a ``no_trade`` gap until it has
  lasted ``halt_min_minutes`` minutes; from that minute on it is a ``halt`` (its first minutes stay
  ``no_trade``: at the time nobody could know the book would stay frozen). ``unknown`` means no L2
  snapshot at all so far in the session (up to and including t).
* ``gap_run_minutes``: minutes without a valid bar so far, up to and including t (1 on the first
  gap minute, 0 on a real bar).

Retrospective (look ahead by definition, declared in ``platform_assets/audit/lookahead.py``
``LOOKAHEAD_COLUMNS``; for data-quality reports and analysis, never for features):

* ``gap_type_retrospective``: the classification of the whole day (a frozen run is a ``halt`` on
  every minute once the run, seen to its end, lasted ``halt_min_minutes``; ``unknown`` when the
  session has no L2 data at all).
* ``gap_run_minutes_total``: the length of the whole run of same-type gap minutes a minute belongs
  to. The DQ statistics (``GapStats``) and rules use the retrospective columns.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    "gap_type_retrospective",
    "gap_run_minutes_total",
    "dq_status",
]
RETROSPECTIVE_COLUMNS = ("gap_type_retrospective", "gap_run_minutes_total")
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


def invalid_reason(raw: pd.DataFrame, *, values: dict[str, np.ndarray], position: np.ndarray) -> np.ndarray:
    """Per raw row: the first validation rule it breaks, or ``""`` when the row is valid.
    ``values``: column -> float array of the raw rows; ``position``: each row's minute in its
    session's timeline, -1 off the grid (``_session_positions``)."""
    open_, high, low, close = (values[c] for c in PRICE_COLUMNS)
    prices = np.stack([open_, high, low, close], axis=1)
    volume = values["volume"]
    with np.errstate(invalid="ignore"):
        checks = [
            ("non_finite_price", ~np.isfinite(prices).all(axis=1)),
            ("non_positive_price", (prices <= 0).any(axis=1)),
            ("high_below_low", high < low),
            ("ohlc_inconsistent", (high < np.maximum(open_, close)) | (low > np.minimum(open_, close))),
            ("negative_volume", ~(volume >= 0)),
            ("off_session", position < 0),
        ]
    reason = np.full(len(raw), "", dtype=object)
    for name, failed in reversed(checks):
        reason[failed] = name
    return reason


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


def _runs(values: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run id and run length for every element of a 1-D array of labels; ``starts`` (bool) marks
    where a session begins: no run continues across it."""
    if len(values) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.concatenate([[True], values[1:] != values[:-1]])
    if starts is not None:
        change |= starts
    run_id = np.cumsum(change) - 1
    lengths = np.bincount(run_id)
    return run_id, lengths[run_id]


def _run_so_far(flags: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Per element: how many consecutive True values end here (0 where False); ``starts`` as in
    ``_runs``: a count starts again at every session."""
    count = np.cumsum(flags)
    reset = np.where(flags, 0, count) if starts is None else np.where(~flags | starts, count - flags, 0)
    last_reset = np.maximum.accumulate(reset)
    return (count - last_reset).astype(np.int64)


@dataclass(frozen=True)
class _Sessions:
    """The concatenated timelines of several sessions: minute ``i`` belongs to session
    ``minute_session[i]``; ``offsets[s]`` is session ``s``'s first minute."""

    lengths: np.ndarray
    offsets: np.ndarray
    minute_session: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, timelines) -> "_Sessions":
        lengths = np.array([len(t) for t in timelines], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = np.zeros(offsets[-1], dtype=bool)
        starts[offsets[:-1][lengths > 0]] = True
        return cls(lengths, offsets, np.repeat(np.arange(len(lengths)), lengths), starts)

    def per_minute(self, values) -> np.ndarray:
        """A per-session value repeated over the session's minutes."""
        return np.repeat(np.asarray(values), self.lengths)

    def count(self, minutes: np.ndarray) -> np.ndarray:
        """Per session: how many of its minutes are True."""
        return np.bincount(self.minute_session[minutes], minlength=len(self.lengths))

    def any_so_far(self, flags: np.ndarray) -> np.ndarray:
        """Per minute: whether a flag was set at or before it in its session."""
        total = np.concatenate([[0], np.cumsum(flags)])
        return total[1:] - self.per_minute(total[self.offsets[:-1]]) > 0

    def forward_fill(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Carry the last present value of the session forward; NaN before its first one."""
        index = np.where(present, np.arange(len(values)), -1)
        np.maximum.accumulate(index, out=index)
        return np.where(index >= self.per_minute(self.offsets[:-1]), values[np.clip(index, 0, None)], np.nan)


def _session_positions(ts, row_session: np.ndarray, timelines, sessions: _Sessions) -> np.ndarray:
    """Index of each raw timestamp in its session's timeline, or -1 when it is not on that grid."""
    values = pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8
    first = np.array([t[0].value if len(t) else 0 for t in timelines], dtype=np.int64)
    offset = values - first[row_session]
    minute = 60_000_000_000
    position = offset // minute
    on_grid = (offset % minute == 0) & (position >= 0) & (position < sessions.lengths[row_session])
    return np.where(on_grid, position, -1)


def _activity_arrays(activities, sessions: _Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Per minute: whether an L2 snapshot fell in it and whether the book moved (False for a
    session without L2 activity)."""
    has_l2 = np.zeros(len(sessions.starts), dtype=bool)
    book_moved = np.zeros(len(sessions.starts), dtype=bool)
    for index, activity in enumerate(activities):
        if activity is not None:
            window = slice(sessions.offsets[index], sessions.offsets[index + 1])
            has_l2[window] = activity["has_l2"].to_numpy()
            book_moved[window] = activity["book_moved"].to_numpy()
    return has_l2, book_moved


def classify_gaps(
    present: np.ndarray, had_invalid: np.ndarray, has_l2: np.ndarray, book_moved: np.ndarray, sessions: _Sessions, policy: ImputationPolicy
) -> np.ndarray:
    """Gap type per timeline minute (``none`` where a valid bar is present), judged over each whole
    session: ``unknown`` throughout a session without any L2 snapshot."""
    gap = np.full(len(present), GAP_NONE, dtype=object)
    missing = ~present
    session_l2 = sessions.per_minute(sessions.count(has_l2) > 0)
    gap[missing & ~session_l2] = GAP_UNKNOWN
    gap[missing & session_l2 & has_l2] = GAP_NO_TRADE
    gap[missing & session_l2 & ~has_l2] = GAP_FEED
    frozen = (gap == GAP_NO_TRADE) & ~book_moved
    _, run_len = _runs(frozen, sessions.starts)
    gap[frozen & (run_len >= policy.halt_min_minutes)] = GAP_HALT
    gap[missing & had_invalid] = GAP_INVALID
    return gap


def classify_gaps_asof(
    present: np.ndarray, had_invalid: np.ndarray, has_l2: np.ndarray, book_moved: np.ndarray, sessions: _Sessions, policy: ImputationPolicy
) -> np.ndarray:
    """Gap type per minute as known when that minute's bar closed (no later minute consulted)."""
    gap = np.full(len(present), GAP_NONE, dtype=object)
    missing = ~present
    l2_seen = sessions.any_so_far(has_l2)
    gap[missing & ~l2_seen] = GAP_UNKNOWN
    gap[missing & l2_seen & has_l2] = GAP_NO_TRADE
    gap[missing & l2_seen & ~has_l2] = GAP_FEED
    frozen = (gap == GAP_NO_TRADE) & ~book_moved
    gap[frozen & (_run_so_far(frozen, sessions.starts) >= policy.halt_min_minutes)] = GAP_HALT
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
    curated, stats, rejected = curate_sessions(
        raw, [len(raw)], [timeline], symbol=symbol, days=[day], sources=[source], activities=[activity], policy=policy
    )
    return curated, stats[0], rejected[0]


def curate_sessions(
    raw: pd.DataFrame,
    raw_rows: Sequence[int],
    timelines: Sequence[pd.DatetimeIndex],
    *,
    symbol: str,
    days: Sequence,
    sources: Sequence[str],
    activities: Sequence[pd.DataFrame | None],
    policy: ImputationPolicy = ImputationPolicy(),
) -> tuple[pd.DataFrame, list[GapStats], list[pd.DataFrame]]:
    """Curate many sessions of one symbol at once, each exactly as ``curate_bars`` would alone.

    ``raw`` holds every session's raw rows, session after session (``raw_rows[s]`` rows for session
    ``s``, in the order given); ``timelines``, ``days``, ``sources`` and ``activities`` (the L2
    minute activity, None without L2 data) are per session. Returns the curated bars of every
    session, session after session, the stats of each session, and each session's rejected raw
    rows with their reason. Nothing carries from one session into the next (fills, runs, L2 seen).
    """
    sessions = _Sessions.of(timelines)
    count = len(sessions.lengths)
    n = int(sessions.offsets[-1])
    if not (isinstance(raw.index, pd.RangeIndex) and raw.index.start == 0 and raw.index.step == 1):
        raw = raw.reset_index(drop=True)
    raw_rows = np.asarray(raw_rows, dtype=np.int64)
    row_session = np.repeat(np.arange(count), raw_rows)
    values = {c: raw[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "vwap", "volume", "trade_count")}
    local = _session_positions(raw["ts"], row_session, timelines, sessions) if len(raw) else np.array([], dtype=np.int64)
    position = np.where(local >= 0, sessions.offsets[:-1][row_session] + local, -1)
    reason = invalid_reason(raw, values=values, position=local) if len(raw) else np.array([], dtype=object)
    valid = reason == ""
    valid_rows = np.flatnonzero(valid)
    _, first_of_minute = np.unique(position[valid_rows], return_index=True)
    duplicate = np.zeros(len(raw), dtype=bool)
    duplicate[valid_rows] = True
    duplicate[valid_rows[first_of_minute]] = False  # keep the first valid row of each minute
    invalid = ~valid
    dropped = invalid | duplicate
    rejected = raw[dropped].assign(reject_reason=np.where(duplicate, "duplicate", reason)[dropped]).reset_index(drop=True)
    bounds = np.searchsorted(row_session[dropped], np.arange(count + 1))

    keep = np.flatnonzero(valid & ~duplicate)
    present = np.zeros(n, dtype=bool)
    present[position[keep]] = True
    columns = {}
    for column in ("open", "high", "low", "close", "vwap", "volume", "trade_count"):
        placed = np.full(n, np.nan)
        placed[position[keep]] = values[column][keep]
        columns[column] = placed
    had_invalid = np.zeros(n, dtype=bool)
    had_invalid[position[invalid & (position >= 0)]] = True
    has_l2, book_moved = _activity_arrays(activities, sessions)
    gap = classify_gaps(present, had_invalid, has_l2, book_moved, sessions, policy)
    gap_asof = classify_gaps_asof(present, had_invalid, has_l2, book_moved, sessions, policy)
    run_id, run_len = _runs(gap, sessions.starts)

    close = sessions.forward_fill(columns["close"], present)
    has_price = ~np.isnan(close)
    missing = ~present
    timeline = timelines[0].append(list(timelines[1:])) if count > 1 else timelines[0]
    curated = pd.DataFrame(
        {
            "date": sessions.per_minute(np.array(days, dtype=object)),
            "symbol": symbol,
            "ts": timeline,
            **{c: np.where(present, columns[c], close) for c in ("open", "high", "low")},
            "close": close,
            "volume": np.where(present, columns["volume"], policy.volume_fill).astype("int64"),
            "vwap": np.where(present, columns["vwap"], close),
            "trade_count": np.where(present, columns["trade_count"], policy.trade_count_fill).astype("int64"),
            "source": sessions.per_minute(np.array(sources, dtype=object)),
            "is_imputed": missing,  # no real bar (price carried, or none to carry: dq_status says which)
            "gap_type": gap_asof,
            "gap_run_minutes": _run_so_far(missing, sessions.starts),
            "gap_type_retrospective": gap,
            "gap_run_minutes_total": np.where(present, 0, run_len).astype("int64"),
            "dq_status": np.select([present, has_price], [DQ_OK, DQ_IMPUTED], DQ_MISSING),
        }  # in CURATED_COLUMNS order
    )

    per_session = {
        "real_minutes": sessions.count(present),
        "imputed_minutes": sessions.count(missing & has_price),
        "missing_minutes": sessions.count(missing & ~has_price),
        "gap_runs": sessions.count(missing & (np.diff(run_id, prepend=-1) != 0)),
    }
    gap_minutes = {gap_type: sessions.count(gap == gap_type) for gap_type in GAP_TYPES}
    duplicates = np.bincount(row_session[duplicate], minlength=count)
    invalid_counts = {name: np.bincount(row_session[reason == name], minlength=count) for name in INVALID_REASONS}
    longest = np.zeros(count, dtype=np.int64)
    np.maximum.at(longest, sessions.minute_session[missing], run_len[missing])
    stats = [
        GapStats(
            expected_minutes=int(sessions.lengths[s]),
            raw_rows=int(raw_rows[s]),
            duplicate_rows=int(duplicates[s]),
            invalid_rows={name: int(invalid_counts[name][s]) for name in INVALID_REASONS},
            gap_minutes={gap_type: int(gap_minutes[gap_type][s]) for gap_type in GAP_TYPES},
            max_gap_run=int(longest[s]),
            **{key: int(values_[s]) for key, values_ in per_session.items()},
        )
        for s in range(count)
    ]
    rejected_by_session = [rejected.iloc[bounds[s] : bounds[s + 1]].reset_index(drop=True) for s in range(count)]
    return curated, stats, rejected_by_session
