"""Seed 001 section 3.2.1: ``TwsClient`` is the platform's IB resource (``resources.ib_source.IBSource``,
on ``ib_async``): ``connect``, ``disconnect``, ``is_connected``, ``request_historical_bars``
(paged and paced by IB's rules), ``subscribe_market_data`` / ``unsubscribe_market_data``;
``BarEvent`` and ``SubscriptionHandle`` as the design names them.

    client = TwsClient(host="127.0.0.1", port=7497, client_id=1)
    client.connect()
    events = client.request_historical_bars("AAPL", start, end, "1 min", "TRADES", True)
"""

from resources.ib_source import BarEvent, SubscriptionHandle
from resources.ib_source import IBSource as TwsClient

__all__ = ["BarEvent", "SubscriptionHandle", "TwsClient"]
