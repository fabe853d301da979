"""Order check and per-symbol session runs used by the training pull (pure Arrow)."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from platform_api.arrow_rows import is_sorted_by_symbol_ts, sessions_and_rows, sorted_by_symbol_ts, symbol_runs, symbol_session_runs


def _table(rows: list[tuple[str, str, str]], chunks: int = 1) -> pa.Table:
    frame = pd.DataFrame(rows, columns=["symbol", "ts", "_session"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["_session"] = pd.to_datetime(frame["_session"]).dt.date
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if chunks > 1:  # a query result arrives in batches: the helpers must see across them
        size = -(-len(frame) // chunks)
        table = pa.concat_tables([table.slice(i, size) for i in range(0, len(frame), size)])
    return table


ROWS = [
    ("AAPL", "2024-11-26 14:30", "2024-11-26"),
    ("AAPL", "2024-11-26 14:31", "2024-11-26"),
    ("AAPL", "2024-11-27 14:30", "2024-11-27"),
    ("MSFT", "2024-11-26 14:30", "2024-11-26"),
    ("MSFT", "2024-11-27 14:30", "2024-11-27"),
    ("MSFT", "2024-11-27 14:31", "2024-11-27"),
]


@pytest.mark.parametrize("chunks", [1, 2, 6])
def test_runs_give_each_symbols_sessions_and_rows(chunks):
    table = _table(ROWS, chunks)
    assert is_sorted_by_symbol_ts(table)
    runs = symbol_session_runs(table, "_session")
    d26, d27 = dt.date(2024, 11, 26), dt.date(2024, 11, 27)
    assert runs == [("AAPL", d26, 2), ("AAPL", d27, 1), ("MSFT", d26, 1), ("MSFT", d27, 2)]
    sessions, rows = sessions_and_rows(runs)
    assert sessions == {"AAPL": {d26, d27}, "MSFT": {d26, d27}} and rows == {"AAPL": 3, "MSFT": 3}
    masked = symbol_session_runs(table, "_session", mask=np.array([False, False, True, True, False, False]))
    assert masked == [("AAPL", d27, 1), ("MSFT", d26, 1)]
    assert symbol_runs(table) == [("AAPL", 0, 3), ("MSFT", 3, 3)]
    assert symbol_runs(_table([ROWS[i] for i in (0, 3, 1)], chunks)) == [("AAPL", 0, 1), ("MSFT", 1, 1), ("AAPL", 2, 1)]


@pytest.mark.parametrize("order", [[3, 4, 5, 0, 1, 2], [1, 0, 2, 3, 4, 5], [0, 1, 2, 3, 5, 4]])
def test_rows_out_of_order_are_sorted_in_order_ones_kept(order):
    shuffled = _table([ROWS[i] for i in order], chunks=2)
    assert not is_sorted_by_symbol_ts(shuffled)
    fixed = sorted_by_symbol_ts(shuffled)
    assert fixed.equals(_table(ROWS).cast(fixed.schema))
    ordered = _table(ROWS, chunks=3)
    assert sorted_by_symbol_ts(ordered) is ordered  # no copy, no sort


def test_empty_and_single_row_tables():
    empty = _table(ROWS).slice(0, 0)
    assert is_sorted_by_symbol_ts(empty) and symbol_session_runs(empty, "_session") == [] and symbol_runs(empty) == []
    one = _table(ROWS[:1])
    assert symbol_session_runs(one, "_session") == [("AAPL", dt.date(2024, 11, 26), 1)]
