"""Seed 001 section 2: ``db_ingestor.py``, DB-based ingestion (optional / extendable).

    ingestor = DbIngestor("sqlite:///vendor.db")                    # or a DB-API connection
    ingestor.ingest_historical_range(["AAPL"], start, end)           # [start, end) UTC
    DbIngestor(connection, query="SELECT sym AS symbol, t AS ts, o AS open, ... FROM bars "
                                 "WHERE sym = :symbol AND t >= :start AND t < :end")

One query per instrument (default: every row of table ``bars`` for the symbol), with the named
parameters it uses of ``:symbol``, ``:start``, ``:end`` (ISO 8601 UTC text, e.g.
``2024-12-02T14:30:00+00:00``; ``paramstyle="pyformat"`` for drivers that take ``%(symbol)s``);
rows outside ``[start, end)`` are dropped after reading. The result needs the raw bar columns (``symbol``, ``ts``, OHLCV; ``vwap`` /
``trade_count`` optional; ``columns`` renames others); naive times are in ``timezone`` (UTC). The
rows go to ``RawStore`` as append-only batches under ``lake/raw_bars/source=<source>`` (default
``db``), the batch id a hash of the bars. ``sqlite:///path`` and ``duckdb:///path`` open
themselves (read-only); any other database: pass its DB-API connection (or a callable returning
one). Extending: subclass and override ``fetch(symbol, start, end) -> DataFrame``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from typing import Any

import pandas as pd

from platform_api.inputs import parse_time_range
from src.data_sources.base_ingestor import BaseIngestor, bars_frame, in_range, write_symbol_batches
from src.storage.raw_store import RawStore

DEFAULT_QUERY = "SELECT * FROM bars WHERE symbol = :symbol"  # the range is cut after reading: times stored as any text compare right


class DbIngestor(BaseIngestor):
    kind = "db"

    def __init__(self, connection: str | Any | Callable[[], Any], raw_store: RawStore | None = None, *, query: str = DEFAULT_QUERY,
                 paramstyle: str = "named", source: str = "db", columns: dict[str, str] | None = None, timezone: str = "UTC"):
        if paramstyle not in ("named", "pyformat"):
            raise ValueError(f"paramstyle must be 'named' or 'pyformat', got {paramstyle!r}")
        self.connection, self.query, self.paramstyle = connection, query, paramstyle
        self.columns, self.timezone = dict(columns or {}), timezone
        self.raw_store = raw_store or RawStore(source=source)
        self.rows_ingested = 0

    def connect(self):
        """A DB-API connection (opened here for a ``sqlite:///`` / ``duckdb:///`` URI)."""
        target = self.connection
        if isinstance(target, str):
            if target.startswith("sqlite:///"):
                return sqlite3.connect(f"file:{target[len('sqlite:///'):]}?mode=ro", uri=True)
            if target.startswith("duckdb:///"):
                import duckdb

                return duckdb.connect(target[len("duckdb:///"):], read_only=True)
            raise ValueError(f"unsupported database URI {target!r}: use sqlite:///path or duckdb:///path, or pass a DB-API connection")
        return target() if callable(target) and not hasattr(target, "cursor") else target

    def fetch(self, connection, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """One instrument's rows of ``[start, end)`` as the query returns them."""
        params = {"symbol": symbol, "start": start.isoformat(), "end": end.isoformat()}
        query = self.query
        params = {name: value for name, value in params.items() if f":{name}" in query}  # drivers refuse unused parameters
        if self.paramstyle == "pyformat":
            query = query.replace(":symbol", "%(symbol)s").replace(":start", "%(start)s").replace(":end", "%(end)s")
        if isinstance(connection, sqlite3.Connection) or self.paramstyle == "pyformat":
            cursor = connection.cursor()
            cursor.execute(query, params)
        else:  # duckdb and drivers with $name parameters
            cursor = connection.execute(query.replace(":symbol", "$symbol").replace(":start", "$start").replace(":end", "$end"), params)
        names = [d[0] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=names)

    def ingest_historical_range(self, instruments: list, start: dt.datetime, end: dt.datetime) -> None:
        first, last = parse_time_range(start, end)
        symbols = [i if isinstance(i, str) else i.symbol for i in instruments]
        connection = self.connect()
        owned = connection is not self.connection
        try:
            frames = []
            for symbol in symbols:
                rows = self.fetch(connection, symbol.upper(), first, last)
                if not rows.empty:
                    frames.append(in_range(bars_frame(rows, columns=self.columns, timezone=self.timezone, what=f"query for {symbol}"),
                                           [symbol], first, last))
        finally:
            if owned:
                connection.close()
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if not frame.empty:
            self.rows_ingested += write_symbol_batches(self.raw_store, frame, "db")
