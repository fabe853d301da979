"""Seed 001 section 5: "New sources: implement ``BaseIngestor`` interface and register in config."

    class MyIngestor(BaseIngestor):
        kind = "my_source"                                  # registered under this name
        def ingest_historical_range(self, instruments, start, end) -> None: ...

    get_ingestor("files", path="bars.csv").ingest_historical_range(["AAPL"], start, end)
    get_ingestor("my_package.ingest:MyIngestor", ...)      # a config file's "module:Class" works too

An ingestor fetches a source's bars and hands them to the raw store (``RawStore``: append-only
batches per (symbol, trading date) under ``lake/raw_bars/source=<label>``). ``TwsIngestor`` (IB),
``FileIngestor`` (CSV / Parquet) and ``DbIngestor`` (SQL) implement it. ``run_live_stream`` is
optional (``NotImplementedError`` by default). Sources that the Dagster graph ingests on its own
(a generated ``raw_bars_<source>`` asset) are ``BaseAdapter`` classes registered in the adapter
registry (``resources.adapters.registry``, ``INGESTION_ADAPTERS_FILE``).

``bars_frame`` is what the file and DB ingestors share: a source's rows -> the raw bar columns,
checked (``ValueError`` naming the problem: a missing column, an unparseable time or number).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from platform_api.inputs import parse_time_range
from resources.validation import normalize_symbols

REQUIRED_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("vwap", "trade_count")
INGESTORS: dict[str, type["BaseIngestor"]] = {}


class BaseIngestor(ABC):
    """A source's historical (and optionally live) bars into the raw store."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            INGESTORS[cls.kind] = cls

    @abstractmethod
    def ingest_historical_range(self, instruments: list, start: dt.datetime, end: dt.datetime) -> None:
        """Fetch ``[start, end)`` (UTC; naive = UTC) for every instrument into the raw store."""

    def run_live_stream(self, instruments: list) -> None:
        """Subscribe to live data and hand it to the raw store (not every source has one)."""
        raise NotImplementedError(f"{type(self).__name__} has no live stream")


def register_ingestor(kind: str, cls: type[BaseIngestor] | None = None):
    """Register ``cls`` under ``kind`` (also usable as a class decorator: ``@register_ingestor("x")``)."""

    def add(target: type[BaseIngestor]) -> type[BaseIngestor]:
        if not (isinstance(target, type) and issubclass(target, BaseIngestor)):
            raise ValueError(f"{target!r} is not a BaseIngestor subclass")
        INGESTORS[kind] = target
        return target

    return add(cls) if cls is not None else add


def get_ingestor(kind: str, *args: Any, **kwargs: Any) -> BaseIngestor:
    """An ingestor by registered name (``tws``, ``files``, ``db``, or one registered) or by
    ``"module:Class"`` (what a config file names); ``ValueError`` for an unknown one."""
    import src.data_sources.db_ingestor  # noqa: F401  (the built-in ingestors register on import)
    import src.data_sources.file_ingestor  # noqa: F401
    import src.data_sources.tws_ingestor  # noqa: F401

    cls = INGESTORS.get(kind)
    if cls is None and isinstance(kind, str) and ":" in kind:
        module, _, name = kind.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import ingestor {kind!r}: {error}") from None
        if not (isinstance(cls, type) and issubclass(cls, BaseIngestor)):
            raise ValueError(f"{kind!r} is not a BaseIngestor subclass")
    if cls is None:
        raise ValueError(f"Unknown ingestor: {kind!r} (known: {', '.join(sorted(INGESTORS))}, or module:Class)")
    return cls(*args, **kwargs)


def bars_frame(rows: pd.DataFrame, *, columns: dict[str, str] | None = None, timezone: str = "UTC", what: str = "input") -> pd.DataFrame:
    """``rows`` renamed by ``columns`` ({source name: our name}) -> ``symbol``, ``ts`` (UTC; naive
    times are in ``timezone``), OHLCV and, when present, ``vwap`` / ``trade_count``."""
    frame = rows.rename(columns=columns or {})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)} (have {', '.join(map(str, frame.columns))}; rename with columns={{...}})")
    frame = frame[[*REQUIRED_COLUMNS, *[c for c in OPTIONAL_COLUMNS if c in frame.columns]]].copy()
    try:
        ts = pd.to_datetime(frame["ts"], format="ISO8601") if not pd.api.types.is_datetime64_any_dtype(frame["ts"]) else frame["ts"]
    except (ValueError, TypeError) as error:
        raise ValueError(f"{what}: column ts does not parse as times: {error}") from None
    if ts.isna().any():
        raise ValueError(f"{what}: {int(ts.isna().sum())} row(s) without a time")
    frame["ts"] = ts.dt.tz_localize(timezone).dt.tz_convert("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    for column in ("open", "high", "low", "close", "volume", *[c for c in OPTIONAL_COLUMNS if c in frame.columns]):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            raise ValueError(f"{what}: column {column} has {int(bad.sum())} value(s) that are not numbers, e.g. {frame[column][bad].iloc[0]!r}")
        frame[column] = values
    for column in ("volume", "trade_count"):
        if column in frame.columns:
            if frame[column].isna().any() or not np.all(np.isfinite(frame[column])):
                raise ValueError(f"{what}: column {column} has missing values")
            frame[column] = frame[column].astype("int64")
    frame["symbol"] = frame["symbol"].astype(str).str.strip().str.upper()
    return frame.reset_index(drop=True)


def in_range(frame: pd.DataFrame, instruments: list, start, end) -> pd.DataFrame:
    """The rows of ``instruments`` (symbols) in ``[start, end)``."""
    first, last = parse_time_range(start, end)
    symbols = normalize_symbols([i if isinstance(i, str) else i.symbol for i in instruments])
    keep = frame["symbol"].isin(symbols) & (frame["ts"] >= first) & (frame["ts"] < last)
    return frame[keep].sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def write_symbol_batches(raw_store, frame: pd.DataFrame, prefix: str) -> int:
    """One ``RawStore.write_bars`` per symbol, the batch id ``<prefix>-<symbol>-<hash of its bars>``
    (a re-run of the same data writes nothing new). Returns the rows handed over."""
    for symbol, bars in frame.groupby("symbol", sort=True):
        digest = hashlib.sha256(pd.util.hash_pandas_object(bars.reset_index(drop=True), index=False).values.tobytes()).hexdigest()[:16]
        raw_store.write_bars(bars, f"{prefix}-{symbol}-{digest}", pd.Timestamp.now(tz="UTC"))
    return len(frame)
