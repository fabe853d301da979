"""The tracked symbol universe, held in the Dagster instance as the ``symbols`` dynamic partitions.

Each symbol also has a row in a small metadata table next to the instance
(``$DAGSTER_HOME/platform_universe.sqlite3``): its asset type (``stock`` or ``crypto``; ``auto``
detects crypto pairs such as ``BTC-USD``), when it was added and, once removed, when. Stocks follow
the XNYS calendar, crypto a 24/7 UTC calendar. Adding or removing a symbol never touches stored
data; removing only stops future refreshes. A run processes every tracked symbol of its market
unless the ``platform/symbols`` run tag names a subset (which must be tracked).

The repo's default universe (``platform_assets/default_universe.yaml``: the S&P 500 constituents
and the top 20 crypto pairs, from the dated lists in ``platform_assets/universe_data/``) is loaded
by the HTTP service on its first start (when the universe table is empty: no symbol was ever added),
and on demand with ``mdp symbols add --defaults`` or ``POST /data/symbols`` ``{"defaults": true}``.
``DEFAULT_UNIVERSE_FILE`` points to another YAML of the same format (tests use a small one).
Nothing else loads it: ``make run`` and ``mdp backfill --symbols ...`` keep their explicit lists.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from platform_assets.calendars import CRYPTO, STOCKS, Market
from platform_assets.partitions import SYMBOLS_PARTITION_NAME, SYMBOLS_TAG
from resources.validation import InvalidInputError, normalize_symbol, normalize_symbols

_CRYPTO_RE = re.compile(r"-(USD|USDT|USDC|BTC|ETH|EUR)$")
# Formats a tracked symbol must have (stricter than ``normalize_symbol``, which guards paths):
# exchange tickers with an optional share class (AAPL, BRK.B, BF-B) and crypto pairs (BTC-USD).
_STOCK_FORMAT = re.compile(r"^[A-Z]{1,6}(?:[.-][A-Z]{1,2})?$")
_CRYPTO_FORMAT = re.compile(r"^[A-Z0-9]{2,12}-(?:USD|USDT|USDC|BTC|ETH|EUR)$")
ASSET_TYPES = ("stock", "crypto")
DEFAULT_UNIVERSE_FILE = Path(__file__).with_name("default_universe.yaml")
_SCHEMA = """CREATE TABLE IF NOT EXISTS symbols (
    symbol TEXT PRIMARY KEY, asset_type TEXT NOT NULL, added_at TEXT NOT NULL, removed_at TEXT);
CREATE TABLE IF NOT EXISTS universe_flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);"""
DEFAULTS_LOADED_FLAG = "default_universe_loaded_at"


class UnknownSymbolError(InvalidInputError):
    """A symbol is not in the tracked universe."""


class InvalidSymbolFormatError(InvalidInputError):
    """A symbol does not have the format of a stock ticker or a crypto pair."""


def check_symbol_format(symbol: object, asset_type: str = "auto") -> tuple[str, str]:
    """``(SYMBOL, stock|crypto)`` for a symbol to track, or ``InvalidSymbolFormatError``
    ("Invalid symbol format: X", the HTTP guide's wording). ``asset_type`` auto detects crypto
    pairs; an explicit type must fit the format (``SOL-USD`` is no stock, ``NVDA`` no crypto pair)."""
    shown = symbol.strip()[:64] if isinstance(symbol, str) else repr(symbol)[:64]
    if asset_type not in ("auto", *ASSET_TYPES):
        raise InvalidInputError(f"invalid asset_type {asset_type!r}: expected auto, stock or crypto")
    try:
        name = normalize_symbol(symbol)
    except InvalidInputError:
        raise InvalidSymbolFormatError(f"Invalid symbol format: {shown}") from None
    kind = detect_asset_type(name) if asset_type == "auto" else asset_type
    if not (_CRYPTO_FORMAT if kind == "crypto" else _STOCK_FORMAT).fullmatch(name):
        raise InvalidSymbolFormatError(f"Invalid symbol format: {shown}")
    return name, kind


def detect_asset_type(symbol: str) -> str:
    """``crypto`` for pairs such as BTC-USD, else ``stock``."""
    return "crypto" if _CRYPTO_RE.search(normalize_symbol(symbol)) else "stock"


def resolve_asset_type(symbol: str, asset_type: str = "auto") -> str:
    if asset_type == "auto":
        return detect_asset_type(symbol)
    if asset_type not in ASSET_TYPES:
        raise InvalidInputError(f"invalid asset_type {asset_type!r}: expected auto, stock or crypto")
    return asset_type


def _db_path(instance: dg.DagsterInstance) -> Path | None:
    root = getattr(instance, "root_directory", None)
    return Path(root) / "platform_universe.sqlite3" if root else None


@contextlib.contextmanager
def _metadata(instance: dg.DagsterInstance):
    path = _db_path(instance)
    conn = sqlite3.connect(str(path) if path else ":memory:", timeout=30)
    try:
        conn.executescript(_SCHEMA)
        with conn:
            yield conn
    finally:
        conn.close()


def asset_types(instance: dg.DagsterInstance) -> dict[str, str]:
    """Stored asset type per symbol (symbols without a row fall back to detection)."""
    with _metadata(instance) as conn:
        return dict(conn.execute("SELECT symbol, asset_type FROM symbols").fetchall())


def asset_type_of(symbol: str, instance: dg.DagsterInstance | None = None) -> str:
    if instance is not None:
        stored = asset_types(instance).get(normalize_symbol(symbol))
        if stored:
            return stored
    return detect_asset_type(symbol)


def market_of(symbol: str, types: dict[str, str] | None = None) -> Market:
    kind = (types or {}).get(symbol) or detect_asset_type(symbol)
    return CRYPTO if kind == "crypto" else STOCKS


def tracked_symbols(instance: dg.DagsterInstance, market: Market | None = None) -> list[str]:
    symbols = instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
    if market is None:
        return list(symbols)
    types = asset_types(instance)
    return [s for s in symbols if market_of(s, types) == market]


def universe_table(instance: dg.DagsterInstance, include_removed: bool = False) -> pd.DataFrame:
    """symbol, asset_type, market, added_at, removed_at, tracked: one row per symbol ever added."""
    tracked = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    with _metadata(instance) as conn:
        rows = conn.execute("SELECT symbol, asset_type, added_at, removed_at FROM symbols ORDER BY symbol").fetchall()
    known = {row[0] for row in rows}
    rows += [(s, detect_asset_type(s), None, None) for s in sorted(tracked - known)]
    frame = pd.DataFrame(rows, columns=["symbol", "asset_type", "added_at", "removed_at"])
    frame["tracked"] = frame["symbol"].isin(tracked)
    frame["market"] = frame["asset_type"].map({"stock": STOCKS.calendar_name, "crypto": CRYPTO.calendar_name})
    if not include_removed:
        frame = frame[frame["tracked"]]
    return frame.sort_values("symbol").reset_index(drop=True)


def add_symbols(instance: dg.DagsterInstance, symbols, asset_type: str = "auto") -> list[str]:
    """Track symbols (validated, with their asset type); returns the ones that were new."""
    wanted = normalize_symbols(symbols)
    types = {s: resolve_asset_type(s, asset_type) for s in wanted}
    existing = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    new = [s for s in wanted if s not in existing]
    now = pd.Timestamp.now(tz="UTC").isoformat()
    with _metadata(instance) as conn:
        conn.executemany(  # new (or re-added) symbols: a fresh row
            "INSERT INTO symbols (symbol, asset_type, added_at, removed_at) VALUES (?, ?, ?, NULL) "
            "ON CONFLICT(symbol) DO UPDATE SET asset_type = excluded.asset_type, added_at = excluded.added_at, removed_at = NULL",
            [(s, types[s], now) for s in new],
        )
        conn.executemany(  # already tracked: keep the row, change the type only when given explicitly
            "INSERT OR IGNORE INTO symbols (symbol, asset_type, added_at, removed_at) VALUES (?, ?, ?, NULL)",
            [(s, types[s], now) for s in wanted if s not in new],
        )
        if asset_type != "auto":
            conn.executemany("UPDATE symbols SET asset_type = ? WHERE symbol = ?", [(types[s], s) for s in wanted])
    if new:
        instance.add_dynamic_partitions(SYMBOLS_PARTITION_NAME, new)
    return new


def remove_symbol(instance: dg.DagsterInstance, symbol: str) -> None:
    """Stop tracking a symbol; its stored data and its metadata row (marked removed) stay."""
    symbol = normalize_symbol(symbol)
    if not instance.has_dynamic_partition(SYMBOLS_PARTITION_NAME, symbol):
        raise UnknownSymbolError(f"symbol {symbol} is not tracked")
    instance.delete_dynamic_partition(SYMBOLS_PARTITION_NAME, symbol)
    with _metadata(instance) as conn:
        conn.execute(
            "INSERT INTO symbols (symbol, asset_type, added_at, removed_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET removed_at = excluded.removed_at",
            (symbol, detect_asset_type(symbol), pd.Timestamp.now(tz="UTC").isoformat(), pd.Timestamp.now(tz="UTC").isoformat()),
        )


def _symbol_list(path: Path) -> list[str]:
    """Symbols of a universe CSV: a ``symbol`` column; ``#`` lines are comments (the list's date)."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    rows = [line.split(",", 1)[0].strip() for line in lines if line and not line.startswith("#")]
    if not rows or rows[0].lower() != "symbol":
        raise InvalidInputError(f"{path}: expected a header line 'symbol' (after # comments)")
    return rows[1:]


def default_universe(path: Path | None = None) -> dict[str, list[str]]:
    """The default universe: ``{"stock": [...], "crypto": [...]}`` (validated).

    The YAML lists symbols inline (``stock: [AAPL]``) and/or names CSV lists relative to itself
    (``stock_file: universe_data/sp500_2026-11.csv``)."""
    path = Path(path or DEFAULT_UNIVERSE_FILE)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInputError(f"cannot read the universe file {path}: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInputError(f"{path}: expected a mapping with stock/crypto lists")
    out = {}
    for asset_type in ASSET_TYPES:
        symbols = list(document.get(asset_type) or [])
        if document.get(f"{asset_type}_file"):
            symbols += _symbol_list(path.parent / document[f"{asset_type}_file"])
        out[asset_type] = [check_symbol_format(s, asset_type)[0] for s in symbols]
    return out


def add_default_universe(instance: dg.DagsterInstance, path: Path | None = None, skip: set[str] | None = None) -> list[str]:
    """Track the default universe (but the ``skip`` symbols); returns the symbols that were new."""
    added = []
    for asset_type, symbols in default_universe(path).items():
        symbols = [symbol for symbol in symbols if symbol not in (skip or set())]
        if symbols:
            added += add_symbols(instance, symbols, asset_type)
    return added


def seed_default_universe(instance: dg.DagsterInstance, path: Path | None = None) -> list[str]:
    """Load the default universe once per instance (the service's first start): the symbols a
    backfill or ``mdp symbols add`` tracked before are kept and the defaults added beside them (the
    HTTP guide: the service tracks the S&P 500 and the top 20 crypto by default); never again after
    (a symbol removed later stays removed; one removed before is not brought back). Returns the
    symbols added."""
    with _metadata(instance) as conn:
        if conn.execute("SELECT 1 FROM universe_flags WHERE name = ?", (DEFAULTS_LOADED_FLAG,)).fetchone():
            return []
        removed = {row[0] for row in conn.execute("SELECT symbol FROM symbols WHERE removed_at IS NOT NULL")}
    added = add_default_universe(instance, path, skip=removed)
    with _metadata(instance) as conn:
        conn.execute("INSERT OR IGNORE INTO universe_flags (name, value) VALUES (?, ?)", (DEFAULTS_LOADED_FLAG, pd.Timestamp.now(tz="UTC").isoformat()))
    return added


def require_tracked(instance: dg.DagsterInstance, symbols: list[str]) -> None:
    tracked = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    unknown = [s for s in symbols if s not in tracked]
    if unknown:
        raise UnknownSymbolError(f"symbols not tracked: {', '.join(unknown)} (add them to the universe first)")


def removed_symbols(instance: dg.DagsterInstance, symbols: list[str]) -> list[str]:
    """Those of ``symbols`` that were tracked once and have been removed since (``remove_symbol``)."""
    tracked = set(instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME))
    candidates = [s for s in symbols if s not in tracked]
    if not candidates:
        return []
    with _metadata(instance) as conn:
        removed = {row[0] for row in conn.execute("SELECT symbol FROM symbols WHERE removed_at IS NOT NULL")}
    return [s for s in candidates if s in removed]


def run_symbols(context: dg.AssetExecutionContext, market: Market = STOCKS) -> list[str]:
    """Symbols a run of a date-partitioned asset processes (tag subset or the whole universe).

    A tagged symbol removed from the universe after the run was planned (a refresh under way when
    ``DELETE /data/symbols/X`` came) is skipped with a warning: the run goes on with the others
    (it failed whole, refreshing none). A tagged symbol never tracked still fails the run."""
    tagged = context.run.tags.get(SYMBOLS_TAG)
    if tagged:
        symbols = normalize_symbols(tagged)
        gone = removed_symbols(context.instance, symbols)
        if gone:
            context.log.warning(f"skipping {', '.join(gone)}: removed from the universe since this run was planned")
            symbols = [s for s in symbols if s not in gone]
            if not symbols:
                raise dg.Failure(f"nothing to process: every symbol of this run ({', '.join(gone)}) was removed from the universe since it was planned")
        require_tracked(context.instance, symbols)
        types = asset_types(context.instance)
        symbols = [s for s in symbols if market_of(s, types) == market]
    else:
        symbols = tracked_symbols(context.instance, market)
    if not symbols:
        raise dg.Failure(
            f"no {market.name} symbols to process: the universe is empty "
            f"(add symbols, e.g. `mdp symbols add AAPL MSFT`)"
        )
    return symbols
