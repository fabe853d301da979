"""Records a Databento client handed back as Python objects, as the record models take them (pure).

The adapter streams every ``get_range`` into a DBN file and decodes it as numpy record arrays.
A client that returns its data instead of writing the file (a test double such as the ingestion
guide's ``unittest.mock`` example, whose ``get_range`` returns an iterable store) yields record
objects: a record model instance is taken as it is; any other object (``databento``'s
``OHLCVMsg`` and friends, or a stand-in with the same attributes) is read attribute by attribute.

* prices: ``pretty_<field>`` when it is a number, else ``<field>``: a float as it is, an integer
  as Databento's 1e-9 fixed point when at least ``FIXED_POINT_MIN`` (a cent), else as dollars;
* times (``ts_event``, ``ts_recv``, ``ts_ref``): integer ns since the epoch, or a datetime;
* ``symbol``: the record's own string, else the chunk's instrument mapping, else the one symbol
  the job asked for; ``instrument_id`` / ``publisher_id`` 0 when the object has none.

A field the object does not hold as a number stays out, so the model rejects the record and the
adapter counts it (``validation_errors``) like any invalid record.
"""

from __future__ import annotations

import datetime as dt
import numbers
from typing import Any

import pandas as pd
from pydantic import BaseModel

FIXED_POINT_MIN = 10_000_000  # 1e-9 fixed point of $0.01
PRICE_FIELDS = {"open", "high", "low", "close", "vwap", "price", "bid_px", "ask_px"}
TIME_FIELDS = {"ts_event", "ts_recv", "ts_ref"}
HEADER_DEFAULTS = {"instrument_id": 0, "publisher_id": 0}


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _price(record: Any, name: str) -> float | None:
    pretty = getattr(record, f"pretty_{name}", None)
    if _number(pretty):
        return float(pretty)
    value = getattr(record, name, None)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value) / 1e9 if abs(int(value)) >= FIXED_POINT_MIN else float(value)
    return float(value) if _number(value) else None


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return pd.Timestamp(int(value), unit="ns", tz="UTC").to_pydatetime()
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return pd.Timestamp(value).to_pydatetime()
    return None


def _symbol(record: Any, id_to_symbol: dict[int, str], requested: list[str]) -> str | None:
    own = getattr(record, "symbol", None)
    if isinstance(own, str) and own:
        return own
    instrument = getattr(record, "instrument_id", None)
    if _number(instrument) and int(instrument) in id_to_symbol:
        return id_to_symbol[int(instrument)]
    return requested[0] if len(requested) == 1 else None


def object_record_fields(model: type[BaseModel], record: Any, id_to_symbol: dict[int, str], requested: list[str]) -> dict:
    """The fields of ``model`` read from ``record`` (see the module docstring); values it does not
    hold as numbers, times or strings are left out for the model to reject."""
    row: dict[str, Any] = {}
    for name in model.model_fields:
        if name == "symbol":
            value = _symbol(record, id_to_symbol, requested)
        elif name in PRICE_FIELDS:
            value = _price(record, name)
        elif name in TIME_FIELDS:
            value = _time(getattr(record, name, None))
        else:
            raw = getattr(record, name, None)
            value = raw if isinstance(raw, str) or _number(raw) else HEADER_DEFAULTS.get(name)
        if value is not None:
            row[name] = value
    return row
