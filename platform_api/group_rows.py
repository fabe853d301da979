"""One feature group's rows for a training pull: read copies for closed months, Parquet for the rest.

A single-group pull (no joined groups, no labels) is the bulk path of model training. Closed
months come from each symbol's read copy (``resources.read_copy``: memory-mapped Arrow, sliced by
time with no copy or decode); the remaining files (open months, day files, months a copy does not
stand for) are read by DuckDB as before. Rows come out ordered by (symbol, ts) with the columns
``symbol, ts, available_ts, <feature columns>, _session`` (``_session`` = the partition's date),
exactly the rows and types the all-Parquet query returns (equivalence tested).
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from platform_api.arrow_rows import symbol_runs
from platform_api.lake_reader import LakeReader, SymbolSources, parquet_list, quote_identifier as _quote, to_pandas, utc_arrow
from resources.read_copy import ReadCopy

KEYS = ("symbol", "ts", "available_ts")
EPOCH = dt.date(1970, 1, 1)


def parquet_rows(reader: LakeReader, files: list, picked: list[tuple[str, str]], start: pd.Timestamp, end: pd.Timestamp) -> pa.Table:
    """The group's rows of ``files`` in ``[start, end)`` in file order (DuckDB keeps it)."""
    columns = ", ".join(f"{_quote(stored)} AS {_quote(out)}" for stored, out in picked)
    sql = (
        f"SELECT symbol, ts, available_ts, {columns}, CAST(date AS DATE) AS _session "
        "FROM read_parquet($files) WHERE ts >= $start AND ts < $end"
    )
    with reader.connect() as conn:
        return utc_arrow(conn, sql, {"files": parquet_list(files), "start": start, "end": end})


def _copy_piece(copy: ReadCopy, picked: list[tuple[str, str]], start: pd.Timestamp, end: pd.Timestamp) -> "Piece":
    rows, sessions = copy.time_slice(start.value, end.value)
    names = [*KEYS, *(out for _, out in picked), "_session"]
    arrays = [rows.column(c) for c in KEYS] + [rows.column(stored) for stored, _ in picked] + [rows.column("date").cast(pa.date32())]
    table = pa.table(arrays, names=names)
    return Piece(table, sessions.astype(np.int32)) if sessions is not None else Piece.of(table)


def _covers(copy: ReadCopy | None, picked: list[tuple[str, str]]) -> bool:
    return copy is not None and {*KEYS, "date", *(stored for stored, _ in picked)} <= set(copy.rows.column_names)


def _ts_ordered(pieces: list[pa.Table]) -> bool:
    """Whether one symbol's pieces, in order, are in ``ts`` order (ties allowed)."""
    values = [piece.column("ts").cast(pa.int64()).to_numpy() for piece in pieces if piece.num_rows]
    for index, ts in enumerate(values):
        if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
            return False
        if index and values[index - 1][-1] > ts[0]:
            return False
    return True


def _session_days(rows: pa.Table) -> np.ndarray:
    """The distinct session day numbers (days since 1970) of rows in time order (one run per session)."""
    if not rows.num_rows:
        return np.empty(0, dtype=np.int32)
    days = rows.column("_session").cast(pa.int32()).to_numpy()
    return days[np.flatnonzero(np.diff(days, prepend=days[0] - 1))]


@dataclass
class Piece:
    """Rows of one symbol in time order, and their session days."""

    rows: pa.Table
    sessions: np.ndarray

    @classmethod
    def of(cls, rows: pa.Table) -> "Piece":
        return cls(rows, _session_days(rows))


@dataclass
class GroupRows:
    """A single group's rows of a training pull, per symbol (ascending), each in ``ts`` order."""

    pieces: dict[str, list[Piece]]
    files_read: int
    mapped: bool  # some rows are memory-mapped read copies (pandas conversion can consolidate)

    def sessions_and_rows(self) -> tuple[dict[str, set[dt.date]], dict[str, int]]:
        """{symbol: session dates returned} and {symbol: rows}, for symbols with rows."""
        sessions, rows = {}, {}
        for symbol, pieces in self.pieces.items():
            count = sum(piece.rows.num_rows for piece in pieces)
            if count:
                rows[symbol] = count
                sessions[symbol] = {EPOCH + dt.timedelta(days=day) for piece in pieces for day in piece.sessions.tolist()}
        return sessions, rows

    def frame(self) -> pd.DataFrame:
        """The rows as pandas: ``symbol, ts, available_ts, <feature columns>`` (``_session`` dropped).

        Each piece holds one symbol, so the symbol column is filled per piece instead of converting
        millions of Arrow strings to Python objects one by one."""
        pieces = [piece.rows for symbol in self.pieces for piece in self.pieces[symbol]]
        body = pa.concat_tables([piece.drop_columns(["symbol", "_session"]) for piece in pieces])
        frame = body.to_pandas() if self.mapped else to_pandas(body)
        symbols = np.empty(len(frame), dtype=object)
        offset = 0
        for symbol, symbol_pieces in self.pieces.items():
            count = sum(piece.rows.num_rows for piece in symbol_pieces)
            symbols[offset:offset + count] = symbol
            offset += count
        if not self.mapped:  # split blocks (no second copy of DuckDB's result): a concat would consolidate them
            frame.insert(0, "symbol", symbols)
            return frame
        return pd.concat([pd.DataFrame({"symbol": symbols}, copy=False), frame], axis=1, copy=False)


def group_rows(
    reader: LakeReader, sources: dict[str, SymbolSources], picked: list[tuple[str, str]], start: pd.Timestamp, end: pd.Timestamp
) -> GroupRows:
    """The group's rows of ``[start, end)`` for the symbols of ``sources``.

    DuckDB reads the Parquet files in a second thread (it releases the GIL) while the read copies
    are sliced here."""
    symbols = sorted(sources)
    copies = {s: sources[s].read_copy for s in symbols if _covers(sources[s].read_copy, picked)}
    files = [f for s in symbols for f in (sources[s].files if s in copies else sources[s].all_files)]
    pieces: dict[str, list[Piece]] = {s: [] for s in symbols}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pull-parquet") as pool:
        pending = pool.submit(parquet_rows, reader, files, picked, start, end) if files else None
        schema = None
        for symbol, copy in copies.items():
            piece = _copy_piece(copy, picked, start, end)
            pieces[symbol].append(piece)
            schema = schema or piece.rows.schema
        rest = pending.result() if pending is not None else None
    if rest is not None:
        rest = rest.cast(schema) if schema is not None else rest
        for symbol, first, count in symbol_runs(rest):
            pieces.setdefault(symbol, []).append(Piece.of(rest.slice(first, count)))
    for symbol, symbol_pieces in pieces.items():
        if not _ts_ordered([piece.rows for piece in symbol_pieces]):  # e.g. a day file older than a month file: sorted
            pieces[symbol] = [Piece.of(pa.concat_tables([piece.rows for piece in symbol_pieces]).sort_by([("ts", "ascending")]))]
    return GroupRows(pieces, len(files) + len(copies), mapped=bool(copies))
