"""The tracked symbol universe, held in the Dagster instance as the ``symbols`` dynamic partitions.

Adding or removing a symbol never touches stored data; removing only stops future refreshes. A
run processes every tracked symbol of its market unless the ``platform/symbols`` run tag names a
subset (which must be tracked).
"""

from __future__ import annotations

import re

import dagster as dg

from platform_assets.calendars import CRYPTO, STOCKS, Market
from platform_assets.partitions import SYMBOLS_PARTITION_NAME, SYMBOLS_TAG
from resources.validation import InvalidInputError, normalize_symbol, normalize_symbols

_CRYPTO_RE = re.compile(r"-(USD|USDT|USDC|BTC|ETH|EUR)$")


class UnknownSymbolError(InvalidInputError):
    """A symbol is not in the tracked universe."""


def asset_type_of(symbol: str) -> str:
    """``crypto`` for pairs such as BTC-USD, else ``stock``."""
    return "crypto" if _CRYPTO_RE.search(normalize_symbol(symbol)) else "stock"


def market_of(symbol: str) -> Market:
    return CRYPTO if asset_type_of(symbol) == "crypto" else STOCKS


def tracked_symbols(instance: dg.DagsterInstance, market: Market | None = None) -> list[str]:
    symbols = instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
    return [s for s in symbols if market is None or market_of(s) == market]


def add_symbols(instance: dg.DagsterInstance, symbols) -> list[str]:
    """Track symbols (validated); returns the ones that were new."""
    wanted = normalize_symbols(symbols)
    existing = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    new = [s for s in wanted if s not in existing]
    if new:
        instance.add_dynamic_partitions(SYMBOLS_PARTITION_NAME, new)
    return new


def remove_symbol(instance: dg.DagsterInstance, symbol: str) -> None:
    """Stop tracking a symbol; its stored data stays."""
    symbol = normalize_symbol(symbol)
    if not instance.has_dynamic_partition(SYMBOLS_PARTITION_NAME, symbol):
        raise UnknownSymbolError(f"symbol {symbol} is not tracked")
    instance.delete_dynamic_partition(SYMBOLS_PARTITION_NAME, symbol)


def require_tracked(instance: dg.DagsterInstance, symbols: list[str]) -> None:
    tracked = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    unknown = [s for s in symbols if s not in tracked]
    if unknown:
        raise UnknownSymbolError(f"symbols not tracked: {', '.join(unknown)} (add them to the universe first)")


def run_symbols(context: dg.AssetExecutionContext, market: Market = STOCKS) -> list[str]:
    """Symbols a run of a date-partitioned asset processes (tag subset or the whole universe)."""
    tagged = context.run.tags.get(SYMBOLS_TAG)
    if tagged:
        symbols = normalize_symbols(tagged)
        require_tracked(context.instance, symbols)
        symbols = [s for s in symbols if market_of(s) == market]
    else:
        symbols = tracked_symbols(context.instance, market)
    if not symbols:
        raise dg.Failure(
            f"no {market.name} symbols to process: the universe is empty "
            f"(add symbols, e.g. `mdp symbols add AAPL MSFT`)"
        )
    return symbols
