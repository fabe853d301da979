"""Pure Arrow helpers for bulk results ordered by (symbol, ts): order check, per-symbol sessions.

A training pull returns millions of rows; these work on the Arrow result before it becomes pandas,
in vectorised passes (no Python object per row).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _same_as_previous(values: pa.Array) -> np.ndarray:
    """Per row after the first: equal to the row before."""
    return pc.equal(values[1:], values[:-1]).to_numpy(zero_copy_only=False)


def is_sorted_by_symbol_ts(table: pa.Table) -> bool:
    """Whether rows are ordered by symbol, then ts (ties allowed), in one vectorised pass."""
    if table.num_rows < 2:
        return True
    symbol, ts = _flat(table.column("symbol")), _flat(table.column("ts"))
    if not pc.all(pc.less_equal(symbol[:-1], symbol[1:])).as_py():
        return False
    same = _same_as_previous(symbol)
    ts_up = pc.less_equal(ts[:-1], ts[1:]).to_numpy(zero_copy_only=False)
    return bool(np.all(ts_up | ~same))


def sorted_by_symbol_ts(table: pa.Table) -> pa.Table:
    """``table`` ordered by (symbol, ts): as it is when already ordered (the usual case: files are
    read in symbol then time order), else sorted."""
    if is_sorted_by_symbol_ts(table):
        return table
    return table.sort_by([("symbol", "ascending"), ("ts", "ascending")])


def _runs(symbol: pa.Array, other_change: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first row, rows) of each run of equal ``symbol`` (and, when given, rows where
    ``other_change[i - 1]`` marks a change of a second key at row i)."""
    n = len(symbol)
    change = np.ones(n, dtype=bool)
    if n > 1:
        change[1:] = ~_same_as_previous(symbol)
        if other_change is not None:
            change[1:] |= other_change
    starts = np.flatnonzero(change)
    return starts, np.diff(np.append(starts, n))


def symbol_runs(table: pa.Table) -> list[tuple[str, int, int]]:
    """(symbol, first row, rows) for each run of equal symbols, in table order."""
    if table.num_rows == 0:
        return []
    symbol = _flat(table.column("symbol"))
    starts, counts = _runs(symbol)
    names = symbol.take(pa.array(starts)).to_pylist()
    return [(name, int(start), int(count)) for name, start, count in zip(names, starts, counts)]


def symbol_session_runs(table: pa.Table, session_column: str, mask: np.ndarray | None = None) -> list[tuple[str, dt.date, int]]:
    """(symbol, session date, rows) for each run of equal (symbol, session) in a table ordered by
    (symbol, ts); ``mask`` keeps only some rows. Sessions are dates (``date32``)."""
    symbol, session = _flat(table.column("symbol")), _flat(table.column(session_column))
    if mask is not None:
        keep = pa.array(mask)
        symbol, session = symbol.filter(keep), session.filter(keep)
    n = len(symbol)
    if n == 0:
        return []
    days = session.cast(pa.int32()).to_numpy(zero_copy_only=False)
    starts, counts = _runs(symbol, days[1:] != days[:-1])
    names = symbol.take(pa.array(starts)).to_pylist()
    epoch = dt.date(1970, 1, 1)
    return [(name, epoch + dt.timedelta(days=int(day)), int(count)) for name, day, count in zip(names, days[starts], counts)]


def sessions_and_rows(runs: list[tuple[str, dt.date, int]]) -> tuple[dict[str, set[dt.date]], dict[str, int]]:
    """{symbol: its session dates} and {symbol: rows} from ``symbol_session_runs``."""
    sessions: dict[str, set[dt.date]] = {}
    rows: dict[str, int] = {}
    for symbol, day, count in runs:
        sessions.setdefault(symbol, set()).add(day)
        rows[symbol] = rows.get(symbol, 0) + count
    return sessions, rows
