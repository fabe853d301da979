"""The platform's wall clock (UTC): one function, so the offline source and the steps that cut a
session under way at "now" agree, and a test can move both at once (``monkeypatch`` this module's
``utc_now``)."""

from __future__ import annotations

import pandas as pd


def utc_now() -> pd.Timestamp:
    """Now, as a UTC timestamp."""
    return pd.Timestamp.now(tz="UTC")
