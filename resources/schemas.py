"""Data contracts shared by sources, the lake and the transforms.

* Raw bars: one row per vendor bar, stamped with the UTC start of the bar.
* L2 snapshots: the TF_1 contract of DESIGN.md: ``timestamp`` (UTC) and four list columns of fixed
  length ``levels`` (default 10), zeros for missing levels. In memory a book is held as 2-D numpy
  arrays (``L2Book``); conversion to and from Arrow is vectorised (no per-row Python).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

DEFAULT_LEVELS = 10

RAW_BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]

RAW_BARS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("symbol", pa.string()),
        ("date", pa.date32()),
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
        ("vwap", pa.float64()),
        ("trade_count", pa.int64()),
        ("batch_id", pa.string()),
        ("ingestion_ts", pa.timestamp("ns", tz="UTC")),
    ]
)

L2_PRICE_TYPE = pa.list_(pa.float64())
L2_SIZE_TYPE = pa.list_(pa.int64())
L2_SNAPSHOT_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("bid_prices", L2_PRICE_TYPE),
        ("bid_sizes", L2_SIZE_TYPE),
        ("ask_prices", L2_PRICE_TYPE),
        ("ask_sizes", L2_SIZE_TYPE),
    ]
)


@dataclass(frozen=True)
class L2Book:
    """A sequence of order-book snapshots as arrays: ``n`` snapshots x ``levels`` levels.

    Missing levels hold price 0 and size 0. ``timestamp`` is ``datetime64[ns]`` in UTC.
    """

    timestamp: np.ndarray
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray

    @property
    def levels(self) -> int:
        return self.bid_prices.shape[1]

    def __len__(self) -> int:
        return len(self.timestamp)

    @classmethod
    def empty(cls, levels: int = DEFAULT_LEVELS) -> "L2Book":
        prices = np.zeros((0, levels), dtype=np.float64)
        sizes = np.zeros((0, levels), dtype=np.int64)
        return cls(np.array([], dtype="datetime64[ns]"), prices, sizes, prices.copy(), sizes.copy())

    @classmethod
    def concat(cls, books: Sequence[L2Book], levels: int = DEFAULT_LEVELS) -> "L2Book":
        """The snapshots of several books one after the other (e.g. a symbol's sessions)."""
        if not books:
            return cls.empty(levels)
        return cls(*(np.concatenate([getattr(b, name) for b in books]) for name in ("timestamp", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes")))

    def take(self, index: np.ndarray) -> "L2Book":
        return L2Book(
            self.timestamp[index],
            self.bid_prices[index],
            self.bid_sizes[index],
            self.ask_prices[index],
            self.ask_sizes[index],
        )

    def to_arrow(self, extra: dict[str, object] | None = None) -> pa.Table:
        """The contract table; ``extra`` adds constant columns (e.g. ``source``)."""
        n, levels = self.bid_prices.shape
        columns = {
            "timestamp": pa.array(self.timestamp.astype("datetime64[ns]"), type=pa.timestamp("ns", tz="UTC")),
            "bid_prices": _to_list_array(self.bid_prices.astype(np.float64), levels, L2_PRICE_TYPE),
            "bid_sizes": _to_list_array(self.bid_sizes.astype(np.int64), levels, L2_SIZE_TYPE),
            "ask_prices": _to_list_array(self.ask_prices.astype(np.float64), levels, L2_PRICE_TYPE),
            "ask_sizes": _to_list_array(self.ask_sizes.astype(np.int64), levels, L2_SIZE_TYPE),
        }
        for name, value in (extra or {}).items():
            columns[name] = pa.array([value] * n, type=pa.string())
        return pa.table(columns)

    @classmethod
    def from_arrow(cls, table: pa.Table, levels: int = DEFAULT_LEVELS) -> "L2Book":
        """Read the contract table back into arrays (validates the fixed list length)."""
        if table.num_rows == 0:
            return cls.empty(levels)
        timestamp = (
            table.column("timestamp").cast(pa.timestamp("ns", tz="UTC")).to_numpy().astype("datetime64[ns]")
        )
        return cls(
            timestamp,
            _from_list_array(table, "bid_prices", levels, np.float64),
            _from_list_array(table, "bid_sizes", levels, np.int64),
            _from_list_array(table, "ask_prices", levels, np.float64),
            _from_list_array(table, "ask_sizes", levels, np.int64),
        )


def _to_list_array(matrix: np.ndarray, levels: int, list_type: pa.DataType) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(matrix).reshape(-1), type=list_type.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, levels).cast(list_type)


def _from_list_array(table: pa.Table, name: str, levels: int, dtype: type) -> np.ndarray:
    array = table.column(name).combine_chunks()
    lengths = array.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != levels or lengths.max() != levels):
        raise ValueError(f"L2 column {name!r} is not a list of fixed length {levels}")
    return array.flatten().to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, levels)


def book_to_frame(book: L2Book) -> pd.DataFrame:
    """Top of book as a DataFrame indexed by snapshot (for joins): prices/sizes of level 0."""
    return pd.DataFrame(
        {
            "l2_ts": pd.to_datetime(book.timestamp).tz_localize("UTC"),
            "bid_px_0": book.bid_prices[:, 0],
            "bid_sz_0": book.bid_sizes[:, 0],
            "ask_px_0": book.ask_prices[:, 0],
            "ask_sz_0": book.ask_sizes[:, 0],
        }
    )
