"""``PartitionKey``: one (symbol, trading date) partition of a lake table (the design's partition key)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from resources.validation import normalize_symbol, parse_date


@dataclass(frozen=True)
class PartitionKey:
    symbol: str
    date: dt.date

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", normalize_symbol(self.symbol))
        object.__setattr__(self, "date", parse_date(self.date, name="date"))

    @classmethod
    def of(cls, key: "PartitionKey | tuple | str") -> "PartitionKey":
        """A key from a ``PartitionKey``, ``(symbol, date)`` or ``"SYMBOL/YYYY-MM-DD"`` (``|`` works too)."""
        if isinstance(key, PartitionKey):
            return key
        if isinstance(key, str):
            for separator in ("/", "|"):
                if separator in key:
                    symbol, day = key.split(separator, 1)
                    return cls(symbol, day)
            raise ValueError(f"partition key {key!r}: expected 'SYMBOL/YYYY-MM-DD'")
        symbol, day = key
        return cls(symbol, day)
