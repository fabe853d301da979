"""Data-quality rules as data: typed rule definitions and their vectorised evaluation.

A rule measures one thing per (symbol, date) partition and compares it with thresholds:

* *row rules* find failing rows (``failing_rows``); their value is the number of failing rows
  (``measure: count``) or their share of the partition (``measure: rate``);
* *partition rules* compute one value per partition (``partition_values``), e.g. a gap ratio.

Thresholds: ``severity: error`` (or ``warn``) means "any failing row is an error"; explicit
``warn:`` / ``error:`` thresholds give graded outcomes (value >= threshold). Every rule belongs to
a ``group`` (one Dagster asset check per dataset and group). Evaluation is vectorised over a batch
of partitions at once: ``part`` holds each row's partition number, so per-partition counts are a
``np.bincount`` and per-symbol sequences never cross partitions.

Rules that Great Expectations has an expectation for declare it in ``gx_expectation``; the GX engine
(``quality.gx_engine``) runs those and this module's vectorised code runs the rest.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from platform_assets.quality.metrics import STATUS_ERROR, STATUS_RANK, STATUS_WARN, STATUSES

Severity = Literal["warn", "error"]
Group = Literal["validity", "uniqueness", "completeness", "stability", "book"]


class QualityBatch:
    """Rows of several (symbol, date) partitions of one dataset, concatenated for evaluation.

    ``frame`` has a RangeIndex; ``part[i]`` is the partition number of row ``i``; ``keys[p]`` is
    ``(symbol, date)`` of partition ``p``; ``arrays`` holds 2-D arrays (L2 levels) row-aligned with
    ``frame``: one dict of them, or a list of dicts (blocks of consecutive rows, e.g. one per
    partition) that rules read block by block (``array_rows``) instead of stacking every book's
    levels into one copy (~0.5 ms per L2 day); ``stats[p]`` holds precomputed per-partition
    statistics (e.g. curation counts).
    """

    def __init__(self, frame: pd.DataFrame, part: np.ndarray, keys: list[tuple], arrays: dict | list[dict] | None = None, stats: list[dict] | None = None):
        self.frame = frame
        self.part = part
        self.keys = keys
        self.array_blocks: list[dict] = list(arrays) if isinstance(arrays, list) else ([arrays] if arrays else [])
        self.stats = stats or [{} for _ in keys]

    def array_rows(self, per_block) -> np.ndarray:
        """``per_block(arrays)`` -> one value per row of those arrays, evaluated block by block and
        concatenated (equal to evaluating it on the stacked arrays, without stacking them)."""
        if not self.array_blocks:
            raise KeyError("this batch has no 2-D level arrays (L2 rules need bid/ask prices and sizes)")
        return np.concatenate([np.asarray(per_block(block)) for block in self.array_blocks])

    def array_values_at(self, index: np.ndarray) -> dict[str, list]:
        """The 2-D arrays' rows at batch row numbers ``index``: name -> list of 1-D rows."""
        if not self.array_blocks:
            return {}
        bounds = np.cumsum([0, *(_block_rows(block) for block in self.array_blocks)])
        which = np.searchsorted(bounds, index, side="right") - 1
        names = list(self.array_blocks[0])
        return {name: [self.array_blocks[b][name][i - bounds[b]] for i, b in zip(index, which)] for name in names}

    @property
    def n_parts(self) -> int:
        return len(self.keys)

    def rows_per_part(self) -> np.ndarray:
        return np.bincount(self.part, minlength=self.n_parts)

    def count_per_part(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.part[mask], minlength=self.n_parts)

    def same_part_as_previous(self) -> np.ndarray:
        """True where row i belongs to the same partition as row i-1 (False for row 0)."""
        same = np.zeros(len(self.part), dtype=bool)
        same[1:] = self.part[1:] == self.part[:-1]
        return same

    def real_rows(self) -> np.ndarray:
        """Rows that hold delivered data (curated bars mark imputed minutes with dq_status)."""
        if "dq_status" in self.frame.columns:
            return (self.frame["dq_status"] == "ok").to_numpy()
        return np.ones(len(self.frame), dtype=bool)


NAME_PREFIXES = {"not_null": "null_rate"}  # a not-null rule measures a null rate: ``null_rate_close`` (seed 000's example metric)


class Rule(BaseModel):
    """Common fields: name, group, thresholds. Subclasses add what they measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    group: Group = "validity"
    severity: Severity | None = None
    warn: float | None = None
    error: float | None = None
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data):
        """A rule built in code without a name (``RangeRule(field="close", min=0, severity="error")``,
        as the low-level design writes them) is named after its type and field: ``range_close``."""
        if isinstance(data, dict) and "name" not in data and "rule" in cls.model_fields:
            rule = data.get("rule", cls._default_of("rule"))
            parts = [NAME_PREFIXES.get(rule, rule), data.get("field") or data.get("time_field") or cls._default_of("field")]
            data = {**data, "name": "_".join(part for part in parts if isinstance(part, str) and part).lower()}
        return data

    @classmethod
    def _default_of(cls, field: str):
        info = cls.model_fields.get(field)
        return info.default if info is not None else None

    @model_validator(mode="after")
    def _thresholds(self):
        if self.severity is None and self.warn is None and self.error is None:
            raise ValueError("needs a threshold: 'severity' (any failure) or 'warn' and/or 'error'")
        if self.severity is not None and (self.warn is not None or self.error is not None):
            raise ValueError("give either 'severity' or 'warn'/'error' thresholds, not both")
        if self.warn is not None and self.error is not None and self.warn > self.error:
            raise ValueError(f"warn threshold {self.warn} is above error threshold {self.error}")
        return self

    @property
    def warn_threshold(self) -> float | None:
        return 1.0 if self.severity == STATUS_WARN else self.warn

    @property
    def error_threshold(self) -> float | None:
        return 1.0 if self.severity == STATUS_ERROR else self.error

    @property
    def can_error(self) -> bool:
        return self.error_threshold is not None

    def status_rank(self, values: np.ndarray) -> np.ndarray:
        """Per value: 0 ok, 1 warn, 2 error (the index into ``STATUSES``)."""
        rank = np.zeros(len(values), dtype=np.int8)
        if self.warn_threshold is not None:
            rank[values >= self.warn_threshold] = STATUS_RANK[STATUS_WARN]
        if self.error_threshold is not None:
            rank[values >= self.error_threshold] = STATUS_RANK[STATUS_ERROR]
        return rank

    def status(self, values: np.ndarray) -> np.ndarray:
        return np.array(STATUSES, dtype=object)[self.status_rank(values)]

    def columns(self) -> list[str]:
        return []

    def gx_expectation(self):
        """The Great Expectations expectation computing this rule's failing rows, or None."""
        return None

    @property
    def runs_in_gx(self) -> bool:
        """Whether the rule type has a GX expectation (known without importing GX)."""
        return type(self).gx_expectation is not Rule.gx_expectation


class RowRule(Rule):
    measure: Literal["count", "rate"] = "count"

    def failing_rows(self, batch: QualityBatch) -> np.ndarray:
        raise NotImplementedError

    def values_from_mask(self, batch: QualityBatch, mask: np.ndarray) -> np.ndarray:
        counts = batch.count_per_part(mask).astype(float)
        if self.measure == "rate":
            rows = batch.rows_per_part()
            return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        return counts


class PartitionRule(Rule):
    def partition_values(self, batch: QualityBatch) -> np.ndarray:
        raise NotImplementedError


class RangeRule(RowRule):
    """``min <= field <= max`` (strict bounds optional); nulls are the not_null rule's business."""

    rule: Literal["range"] = "range"
    field: str
    min: float | None = None
    max: float | None = None
    strict_min: bool = False
    strict_max: bool = False

    def columns(self):
        return [self.field]

    def failing_rows(self, batch):
        values = batch.frame[self.field].to_numpy(dtype=float)
        bad = np.zeros(len(values), dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.min is not None:
                bad |= values <= self.min if self.strict_min else values < self.min
            if self.max is not None:
                bad |= values >= self.max if self.strict_max else values > self.max
        return bad & ~np.isnan(values)

    def gx_expectation(self):
        import great_expectations as gx

        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=self.field, min_value=self.min, max_value=self.max, strict_min=self.strict_min, strict_max=self.strict_max
        )


class EnumRule(RowRule):
    rule: Literal["enum"] = "enum"
    field: str
    allowed: list[str] = Field(min_length=1)

    def columns(self):
        return [self.field]

    def failing_rows(self, batch):
        column = batch.frame[self.field]
        return (~column.isin(self.allowed) & column.notna()).to_numpy()

    def gx_expectation(self):
        import great_expectations as gx

        return gx.expectations.ExpectColumnValuesToBeInSet(column=self.field, value_set=list(self.allowed))


class NotNullRule(RowRule):
    """Share (or count) of null values in ``field``; NaN counts as null."""

    rule: Literal["not_null"] = "not_null"
    field: str
    measure: Literal["count", "rate"] = "rate"

    def columns(self):
        return [self.field]

    def failing_rows(self, batch):
        return batch.frame[self.field].isna().to_numpy()

    def gx_expectation(self):
        import great_expectations as gx

        return gx.expectations.ExpectColumnValuesToNotBeNull(column=self.field)


class UniqueRule(RowRule):
    """No two rows share ``columns`` (every copy of a repeated key fails)."""

    rule: Literal["unique"] = "unique"
    keys: list[str] = Field(min_length=1)
    group: Group = "uniqueness"

    def columns(self):
        return list(self.keys)

    def failing_rows(self, batch):
        return batch.frame.duplicated(subset=self.keys, keep=False).to_numpy()

    def gx_expectation(self):
        import great_expectations as gx

        return gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(self.keys))


class OHLCRule(RowRule):
    """high >= low, high >= max(open, close), low <= min(open, close)."""

    rule: Literal["ohlc_consistency"] = "ohlc_consistency"

    def columns(self):
        return ["open", "high", "low", "close"]

    def failing_rows(self, batch):
        f = batch.frame
        o, h, l, c = (f[name].to_numpy(dtype=float) for name in ("open", "high", "low", "close"))
        with np.errstate(invalid="ignore"):
            return (h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c))


class MonotonicTimeRule(RowRule):
    """Within each entity (one per partition), ``time_field`` increases row by row."""

    rule: Literal["monotonic_time"] = "monotonic_time"
    entity_key: str = "symbol"
    time_field: str = "ts"
    strict: bool = True
    group: Group = "uniqueness"

    def columns(self):
        return [self.entity_key, self.time_field]

    def failing_rows(self, batch):
        ts = batch.frame[self.time_field].values  # datetime64[ns] (UTC) even for tz-aware columns
        bad = np.zeros(len(ts), dtype=bool)
        if len(ts) > 1:
            step = ts[1:] <= ts[:-1] if self.strict else ts[1:] < ts[:-1]
            same_entity = batch.frame[self.entity_key].to_numpy()[1:] == batch.frame[self.entity_key].to_numpy()[:-1]
            bad[1:] = step & batch.same_part_as_previous()[1:] & same_entity
        return bad


class ReturnJumpRule(RowRule):
    """|field_t / field_{t-1} - 1| above ``max_abs_return`` between consecutive rows of a partition.

    With ``overnight_max_abs_return`` the first delivered row of a partition is also compared with
    the previous session's close (partition stat ``prev_close``) times the factor of the corporate
    actions going ex that day (stat ``corporate_action_factor``, 1.0 without one): a 10:1 split is
    an *explained* jump and passes, the same move with no corporate action fails.
    """

    rule: Literal["return_jump"] = "return_jump"
    field: str = "close"
    max_abs_return: float = Field(gt=0)
    overnight_max_abs_return: float | None = Field(None, gt=0)

    def columns(self):
        return [self.field]

    def failing_rows(self, batch):
        price = batch.frame[self.field].to_numpy(dtype=float)
        bad = np.zeros(len(price), dtype=bool)
        if len(price) > 1:
            prev, cur = price[:-1], price[1:]
            with np.errstate(divide="ignore", invalid="ignore"):
                jump = np.abs(cur / prev - 1.0) > self.max_abs_return
            bad[1:] = jump & (prev > 0) & batch.same_part_as_previous()[1:]
        if self.overnight_max_abs_return is not None and len(price):
            bad |= self._overnight_jumps(batch, price)
        return bad

    def _overnight_jumps(self, batch, price: np.ndarray) -> np.ndarray:
        bad = np.zeros(len(price), dtype=bool)
        real = np.flatnonzero(batch.real_rows() & np.isfinite(price) & (price > 0))
        parts, first = np.unique(batch.part[real], return_index=True)  # first real row of each partition
        for part, row in zip(parts, real[first]):
            stats = batch.stats[part]
            prev_close = stats.get("prev_close")
            if prev_close is None or not prev_close > 0:
                continue
            expected = float(prev_close) * float(stats.get("corporate_action_factor") or 1.0)
            bad[row] = abs(price[row] / expected - 1.0) > self.overnight_max_abs_return
        return bad


class _GapRule(PartitionRule):
    """Curated minutes whose gap type (``field``) is one of ``gap_types`` (quiet no-trade minutes
    excluded by default). A day's verdict uses the retrospective classification (a halt counts
    from its first minute), not the point-in-time ``gap_type``."""

    gap_types: list[str] = ["feed_gap", "halt", "invalid", "unknown"]
    field: str = "gap_type_retrospective"
    group: Group = "completeness"

    def columns(self):
        return [self.field]

    def gap_mask(self, batch) -> np.ndarray:
        return batch.frame[self.field].isin(self.gap_types).to_numpy()


class GapRatioRule(_GapRule):
    """Share of the session's minutes in a gap of the selected types."""

    rule: Literal["gap_ratio"] = "gap_ratio"

    def partition_values(self, batch):
        gaps = batch.count_per_part(self.gap_mask(batch)).astype(float)
        rows = batch.rows_per_part()
        return np.divide(gaps, rows, out=np.zeros_like(gaps), where=rows > 0)


class GapCountRule(_GapRule):
    """Number of runs of consecutive gap minutes (of the selected types) in the session."""

    rule: Literal["gap_count"] = "gap_count"

    def partition_values(self, batch):
        gap = self.gap_mask(batch)
        starts = gap.copy()
        starts[1:] &= ~(gap[:-1] & batch.same_part_as_previous()[1:])
        return batch.count_per_part(starts).astype(float)


class StalePriceRule(PartitionRule):
    """Longest run of consecutive delivered rows whose ``field`` did not change."""

    rule: Literal["stale_price_run"] = "stale_price_run"
    field: str = "close"
    group: Group = "stability"

    def columns(self):
        return [self.field]

    def partition_values(self, batch):
        real = batch.real_rows()
        price = batch.frame[self.field].to_numpy(dtype=float)
        repeat = np.zeros(len(price), dtype=bool)
        repeat[1:] = (price[1:] == price[:-1]) & real[1:] & real[:-1] & batch.same_part_as_previous()[1:]
        return _longest_true_run_per_part(repeat, batch) + np.where(_any_per_part(repeat, batch), 1.0, 0.0)


class ZeroVolumeRule(PartitionRule):
    """Share of delivered rows with zero ``field`` (volume)."""

    rule: Literal["zero_volume_ratio"] = "zero_volume_ratio"
    field: str = "volume"
    group: Group = "stability"

    def columns(self):
        return [self.field]

    def partition_values(self, batch):
        real = batch.real_rows()
        zero = (batch.frame[self.field].to_numpy() == 0) & real
        real_rows = batch.count_per_part(real).astype(float)
        zeros = batch.count_per_part(zero).astype(float)
        return np.divide(zeros, real_rows, out=np.zeros_like(zeros), where=real_rows > 0)


class StatRule(PartitionRule):
    """A statistic the asset computed while building the partition (e.g. curation counts)."""

    rule: Literal["stat"] = "stat"
    stat: str

    def partition_values(self, batch):
        return np.array([float(stats.get(self.stat, 0.0)) for stats in batch.stats])


class L2CrossedBookRule(RowRule):
    """Best bid at or above best ask (both levels present)."""

    rule: Literal["l2_crossed_book"] = "l2_crossed_book"
    group: Group = "book"

    def failing_rows(self, batch):
        def crossed(a):
            bid, ask = a["bid_prices"][:, 0], a["ask_prices"][:, 0]
            return (bid > 0) & (ask > 0) & (bid >= ask)

        return batch.array_rows(crossed)


class L2LevelOrderRule(RowRule):
    """Bid prices fall and ask prices rise across present levels (zero = missing level)."""

    rule: Literal["l2_level_order"] = "l2_level_order"
    group: Group = "book"

    def failing_rows(self, batch):
        def out_of_order(a):
            bids, asks = a["bid_prices"], a["ask_prices"]
            present_b = (bids[:, 1:] > 0) & (bids[:, :-1] > 0)
            present_a = (asks[:, 1:] > 0) & (asks[:, :-1] > 0)
            return ((bids[:, 1:] > bids[:, :-1]) & present_b).any(axis=1) | ((asks[:, 1:] < asks[:, :-1]) & present_a).any(axis=1)

        return batch.array_rows(out_of_order)


class L2SizesRule(RowRule):
    """Sizes are >= 0 and prices are >= 0 at every level."""

    rule: Literal["l2_non_negative"] = "l2_non_negative"
    group: Group = "book"

    def failing_rows(self, batch):
        def negative(a):
            return (a["bid_sizes"] < 0).any(axis=1) | (a["ask_sizes"] < 0).any(axis=1) | (a["bid_prices"] < 0).any(axis=1) | (a["ask_prices"] < 0).any(axis=1)

        return batch.array_rows(negative)


class L2DepthRule(RowRule):
    """Every snapshot array has exactly ``levels`` entries."""

    rule: Literal["l2_array_length"] = "l2_array_length"
    levels: int = Field(default=10, ge=1)
    group: Group = "book"

    def failing_rows(self, batch):
        if not batch.array_blocks:
            return np.zeros(len(batch.frame), dtype=bool)
        return batch.array_rows(lambda a: np.full(_block_rows(a), any(array.shape[1] != self.levels for array in a.values()), dtype=bool))


def _block_rows(arrays: dict) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


AnyRule = Annotated[
    RangeRule | EnumRule | NotNullRule | UniqueRule | OHLCRule | MonotonicTimeRule | ReturnJumpRule | GapRatioRule
    | GapCountRule | StalePriceRule | ZeroVolumeRule | StatRule | L2CrossedBookRule | L2LevelOrderRule | L2SizesRule
    | L2DepthRule,
    Field(discriminator="rule"),
]
L2_RULES = (L2CrossedBookRule, L2LevelOrderRule, L2SizesRule, L2DepthRule)


def _any_per_part(mask: np.ndarray, batch: QualityBatch) -> np.ndarray:
    return batch.count_per_part(mask) > 0


def _longest_true_run_per_part(mask: np.ndarray, batch: QualityBatch) -> np.ndarray:
    """Length of the longest run of True per partition (runs never cross partitions)."""
    out = np.zeros(batch.n_parts)
    if not mask.any():
        return out
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    # A run that spans two partitions is split at the boundary.
    boundary = np.flatnonzero(~batch.same_part_as_previous()[1:]) + 1
    cut_starts = np.sort(np.concatenate([starts, boundary[mask[boundary]]]))
    cut_ends = np.sort(np.concatenate([ends, boundary[mask[boundary]]]))
    lengths = cut_ends - cut_starts
    np.maximum.at(out, batch.part[cut_starts], lengths)
    return out
