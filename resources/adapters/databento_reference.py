"""Databento reference data (corporate actions) through the official client, ``databento.Reference``.

``DatabentoReferenceFetcher.fetch(symbols, start, end)`` returns normalized corporate-action
records (``platform_assets.reference.actions.ACTION_COLUMNS``) for ``[start, end)`` of ex dates:

* ``adjustment_factors.get_range`` gives each event's ``factor`` (multiply earlier prices by it),
  ``ex_date``, ``event`` code and ``status``;
* ``corporate_actions.get_range(index="ex_date")`` gives the announcement date of the same
  ``event_id`` (``event_created_date``; the factor record's ``ts_created`` date, then the ex date,
  when absent): what point in time means here.

Like the historical path (``databento_adapter``): the key comes from the environment variable
``key_env`` (never logged, scrubbed from errors), ``gateway`` points the client at another server
(the platform setting ``DATABENTO_GATEWAY`` by default), the range is split into chunks of
``chunk_days``, and each request is retried (tenacity) on 429 (honouring Retry-After), 408, 5xx,
connection errors and timeouts with capped exponential backoff; other 4xx fail at once with
``DatabentoError`` (``DatabentoAuthError`` for 401/403).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from platform_assets.reference.actions import ACTION_COLUMNS, DATABENTO_CANCELLED, DATABENTO_EVENTS, empty_actions, normalize
from resources.adapters.databento_adapter import (
    MissingApiKeyError, _retry_after, _retryable, client_errors_translated,
)
from resources.adapters.ranges import chunk_range
from resources.settings import get_settings

LOG = logging.getLogger("DatabentoReference")
REFERENCE_SOURCE = "databento"
DEFAULT_CHUNK_DAYS = 365


@dataclass
class DatabentoReferenceFetcher:
    """Corporate actions of Databento's reference API, chunked and retried."""

    key_env: str = "DATABENTO_API_KEY"
    gateway: str | None = None
    timeout_s: float = 100.0
    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    backoff_multiplier: float = 2.0
    chunk_days: float = DEFAULT_CHUNK_DAYS
    stype_in: str = "raw_symbol"
    api_calls: int = field(default=0, init=False)
    retry_attempts: int = field(default=0, init=False)

    def client(self):
        """A ``databento.Reference`` client (key from the environment)."""
        import databento as db

        key = os.environ.get(self.key_env, "")
        if not key:
            raise MissingApiKeyError(f"no Databento API key: set the environment variable {self.key_env}")
        gateway = self.gateway or get_settings().databento_gateway
        client = db.Reference(key=key, gateway=gateway) if gateway else db.Reference(key=key)
        client.adjustment_factors.TIMEOUT = client.corporate_actions.TIMEOUT = self.timeout_s
        return client

    # ------------------------------------------------------------------ requests
    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.key_env, "")
        return text.replace(key, "***") if key else text

    def _wait(self, state: RetryCallState) -> float:
        backoff = self.base_delay * self.backoff_multiplier ** (state.attempt_number - 1)
        error = state.outcome.exception() if state.outcome else None
        return min(self.max_delay, max(backoff, _retry_after(error)))

    def _before_sleep(self, state: RetryCallState, what: str) -> None:
        self.retry_attempts += 1
        error = state.outcome.exception() if state.outcome else None
        LOG.warning("Databento %s failed (attempt %s), retrying: %s", what, state.attempt_number,
                    self._scrub(f"{type(error).__name__}: {error}"))

    def _call(self, what: str, request: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        retrying = Retrying(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(self.max_retries + 1), wait=self._wait,
            before_sleep=lambda state: self._before_sleep(state, what), reraise=True,
        )
        with client_errors_translated(f"{what} request", self.max_retries, self._scrub):
            for attempt in retrying:
                with attempt:
                    self.api_calls += 1
                    return request()
        raise AssertionError("unreachable")

    def fetch(self, symbols: dict[str, str] | list[str], start, end) -> pd.DataFrame:
        """Normalized records of ``symbols`` (local -> vendor mapping, or a list) with ex dates in [start, end)."""
        mapping = dict(symbols) if isinstance(symbols, dict) else {s: s for s in symbols}
        if not mapping:
            return empty_actions()
        vendor = sorted(set(mapping.values()))
        to_local = {v: k for k, v in mapping.items()}
        client = self.client()
        factors, actions = [], []
        for a, b in chunk_range(pd.Timestamp(start), pd.Timestamp(end), self.chunk_days):
            window = {"start": a.date().isoformat(), "end": b.date().isoformat(), "symbols": vendor, "stype_in": self.stype_in}
            factors.append(self._call("adjustment_factors.get_range", lambda: client.adjustment_factors.get_range(**window)))
            actions.append(self._call("corporate_actions.get_range",
                                      lambda: client.corporate_actions.get_range(index="ex_date", **window)))
        return databento_to_actions(_concat(factors), _concat(actions), to_local)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    records = [r for f in frames if f is not None and not f.empty for r in f.reset_index().to_dict("records")]
    return pd.DataFrame(records)


def _date(value) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    stamp = pd.Timestamp(value)
    return None if pd.isna(stamp) else stamp.date()


def databento_to_actions(factors: pd.DataFrame, actions: pd.DataFrame, to_local: dict[str, str]) -> pd.DataFrame:
    """Normalized records from the client's adjustment-factor and corporate-action frames (pure)."""
    if factors.empty:
        return empty_actions()
    announced: dict[str, object] = {}
    if not actions.empty and "event_id" in actions.columns:
        for column in ("event_created_date", "ts_created"):
            if column in actions.columns:
                for event_id, value in zip(actions["event_id"], actions[column]):
                    day = _date(value)
                    if day is not None and event_id not in announced:
                        announced[str(event_id)] = day
    rows = []
    for record in factors.to_dict("records"):
        ex = _date(record.get("ex_date"))
        symbol = to_local.get(str(record.get("symbol")), str(record.get("symbol")))
        event = DATABENTO_EVENTS.get(str(record.get("event", "")).upper(), "other")
        event_id = str(record.get("event_id"))
        status = "cancelled" if str(record.get("status", "")).upper() in DATABENTO_CANCELLED else "apply"
        # The announcement as the reference gives it; without one, the record's creation date, at
        # the latest the ex date (the market knows a split the day the price moves).
        known = announced.get(event_id) or min(_date(record.get("ts_created")) or ex, ex)
        created = pd.Timestamp(record.get("ts_created") or ex)
        dividend = record.get("gross_dividend")
        factor = float(record.get("factor"))
        rows.append({
            "symbol": symbol, "event_id": event_id, "event": event, "kind": "dividend" if event == "cash_dividend" else "split",
            "ex_date": ex, "announced_date": known, "factor": factor,
            "split_ratio": (1.0 / factor) if event != "cash_dividend" and factor > 0 else np.nan,
            "dividend": float(dividend) if dividend is not None and not pd.isna(dividend) else np.nan,
            "status": status, "source": REFERENCE_SOURCE, "recorded_ts": created.tz_localize("UTC") if created.tzinfo is None else created,
        })
    return normalize(pd.DataFrame(rows, columns=ACTION_COLUMNS))
