"""Validated records the adapters yield (``fetch_historical_data``): pydantic models.

Every record carries ``symbol`` (the symbol as requested, after the local mapping) and
``ts_event`` (a UTC ``datetime``, microsecond precision; a naive datetime given to a model is
taken as UTC). Prices are floats (Databento's 1e-9
fixed point decoded); an undefined price is ``None`` where the schema allows one. Models are
frozen and reject unknown fields; a record failing its rules raises ``pydantic.ValidationError``
(a ``ValueError``), which the adapters count as ``validation_errors``.
"""

from __future__ import annotations

import math
import datetime as dt
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _as_utc(value):
    """Naive datetimes are UTC (the platform's convention): give them the zone."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_as_utc)]


class MarketRecord(BaseModel):
    """What every record has: the instrument and the event time."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    symbol: str = Field(min_length=1)
    ts_event: UtcDatetime


class BarRecord(MarketRecord):
    """One OHLCV bar stamped with its start (any source; ``vwap``/``trade_count`` when known)."""

    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: int = Field(ge=0)
    vwap: float | None = None
    trade_count: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.high < self.low:
            raise ValueError(f"high {self.high} < low {self.low}")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError(f"open {self.open} / close {self.close} outside [low {self.low}, high {self.high}]")
        return self


class DatabentoRecord(MarketRecord):
    """Fields of every Databento record header."""

    instrument_id: int = Field(ge=0)
    publisher_id: int = Field(ge=0)


class DatabentoOHLCVRecord(DatabentoRecord, BarRecord):
    """``ohlcv-1d`` / ``ohlcv-1h`` / ``ohlcv-1m`` / ``ohlcv-1s``: one bar (``ts_event`` = bar start)."""


class DatabentoTradeRecord(DatabentoRecord):
    """``trades``: one trade. ``side`` A (ask, a buy hit the offer), B (bid) or N (none)."""

    ts_recv: UtcDatetime
    price: float = Field(gt=0)
    size: int = Field(ge=0)
    side: Literal["A", "B", "N"]
    action: str = Field(min_length=1, max_length=1)
    flags: int = Field(ge=0)
    depth: int = Field(ge=0)
    sequence: int = Field(ge=0)


class DatabentoTBBORecord(DatabentoTradeRecord):
    """``tbbo``: a trade plus the top of book just before it (``None`` price: empty side)."""

    bid_px: float | None = Field(default=None, gt=0)
    ask_px: float | None = Field(default=None, gt=0)
    bid_sz: int = Field(ge=0)
    ask_sz: int = Field(ge=0)
    bid_ct: int = Field(ge=0)
    ask_ct: int = Field(ge=0)

    @model_validator(mode="after")
    def _not_crossed(self):
        if self.bid_px is not None and self.ask_px is not None and self.bid_px > self.ask_px:
            raise ValueError(f"crossed quote: bid {self.bid_px} > ask {self.ask_px}")
        return self


class DatabentoStatisticsRecord(DatabentoRecord):
    """``statistics``: one venue statistic (opening/settlement price, session high/low, cleared
    volume, open interest, ...). ``stat_type`` is Databento's code, ``stat_name`` its name;
    ``price`` and ``quantity`` are ``None`` when the statistic has none; ``ts_ref`` is the
    reference time (e.g. the trading session) when given."""

    ts_recv: UtcDatetime
    ts_ref: UtcDatetime | None = None
    stat_type: int = Field(ge=0)
    stat_name: str
    price: float | None = None
    quantity: int | None = None
    sequence: int = Field(ge=0)
    update_action: Literal["new", "delete"]
    stat_flags: int = Field(ge=0)
    channel_id: int | None = None

    @field_validator("price")
    @classmethod
    def _finite(cls, value):
        if value is not None and not math.isfinite(value):
            raise ValueError("price must be finite")
        return value

    @model_validator(mode="after")
    def _has_a_value(self):
        if self.price is None and self.quantity is None and self.update_action == "new":
            raise ValueError(f"statistic {self.stat_name} has neither price nor quantity")
        return self
