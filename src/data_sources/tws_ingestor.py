"""Seed 001 section 3.2.2: ``TwsIngestor``, historical and live TWS bars into the raw store.

    ingestor = TwsIngestor(TwsClient(port=7497), RawStore())
    ingestor.ingest_historical_range(["AAPL", "MSFT"], start, end)      # [start, end) UTC
    ingestor.run_live_stream(["AAPL"], duration_s=3600)                  # 1-minute bars as they close

Historical: per instrument, ``request_historical_bars`` (paged and paced by the client) and one
``RawStore.write_tws_bars`` per instrument, batch id a hash of the bars (a re-run writes nothing
new); a transient connection error is retried with exponential backoff (``retries``). Live: the
platform's live bar recorder (``mdp record-bars``: 5-second real-time bars built into 1-minute bars,
flushed as append-only raw batches of source ``ib_live``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pandas as pd
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from src.config.settings import TwsSourceConfig
from src.data_sources.base_ingestor import BaseIngestor
from src.storage.raw_store import RawStore


class TwsIngestor(BaseIngestor):
    kind = "tws"

    def __init__(self, client=None, raw_store: RawStore | None = None, config: TwsSourceConfig | None = None, retries: int = 3):
        self.config = config or TwsSourceConfig()
        self.client = client if client is not None else self.config.to_resource()
        self.raw_store = raw_store or RawStore()
        self.retries = retries

    def _request(self, instrument, start, end):
        for attempt in Retrying(retry=retry_if_exception_type((ConnectionError, TimeoutError, OSError)), stop=stop_after_attempt(self.retries + 1),
                                wait=wait_exponential(multiplier=1, max=30), reraise=True):
            with attempt:
                if not self.client.is_connected():
                    self.client.connect()
                return self.client.request_historical_bars(instrument, start, end, self.config.historical_bar_size, "TRADES", True)

    def ingest_historical_range(self, instruments: list, start: dt.datetime, end: dt.datetime) -> None:
        """Fetch ``[start, end)`` for every instrument (a symbol or an ib_async contract) into the raw store."""
        for instrument in instruments:
            symbol = instrument if isinstance(instrument, str) else instrument.symbol
            events = list(self._request(instrument, start, end))
            if not events:
                continue
            digest = hashlib.sha256(repr([(e.ts, e.open, e.high, e.low, e.close, e.volume) for e in events]).encode()).hexdigest()[:16]
            self.raw_store.write_tws_bars(events, f"tws-{symbol}-{digest}", pd.Timestamp.now(tz="UTC"),
                                          symbol_of={str(e.contract_id): symbol for e in events})

    def run_live_stream(self, instruments: list[str], duration_s: float | None = None, flush_s: float = 60.0):
        """Record live 1-minute bars of ``instruments`` until ``duration_s`` (None: until stopped);
        returns the recorder's statistics."""
        from platform_assets.ingestion.live_bars import record_bars

        return asyncio.run(record_bars(self.client, self.raw_store.lake, list(instruments), flush_s=flush_s, duration_s=duration_s))
