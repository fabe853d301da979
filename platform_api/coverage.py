"""Coverage: what is stored per symbol and layer, and how complete it is against the calendar.

Layers: ``raw`` (vendor bars of every source, ``raw_bars``), ``curated`` (``curated_bars``; called
``processed`` in the HTTP answers, the guide's name) and ``features`` (our extra: the feature groups; a day counts as
stored only when EVERY registered feature group holds it, so a missing ``bar_features`` can never
hide behind ``l2_features``). ``cache`` (the guide's third layer) is the Arrow read copies of closed
feature and label months (``resources.read_copy``, what training pulls read first): its dates,
files and rows; a cache is an accelerator, so it never counts for ``full`` / ``partial`` / ``none``.

* ``get_coverage(symbol=None)``: per symbol and layer the earliest and latest date, file_count and
  total_rows (row counts from Parquet footers, cached by file size and mtime: no data read).
* ``coverage_report(symbols, window)``: the HTTP ``/data/coverage`` body, with per-symbol status
  ``full`` / ``partial`` / ``none`` over a window (see ``symbol_status``).
* ``coverage_stats(start, end)``: per symbol and layer, the expected days (XNYS sessions for
  stocks, every UTC day for crypto) against the stored ones: ``full`` / ``partial`` / ``none``.

A file that disappears while being scanned (compaction swapping day files for a month file) makes
the symbol's scan start again, so readers never see an error from a concurrent swap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from platform_assets.calendars import CRYPTO, STOCKS, Market, sessions_in_range
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.universe import market_of
from resources.lake import layout_lock, month_file_dates
from resources.read_copy import read_copy_summary
from resources.settings import PlatformSettings, get_settings
from resources.validation import InvalidDateRangeError, normalize_symbol, parse_half_open_dates

LAYERS = ("raw", "curated", "features")  # the layers a complete symbol holds (statuses are judged on these)
CACHE = "cache"
REPORTED_LAYERS = (*LAYERS, CACHE)
HTTP_LAYER_NAMES = {"raw": "raw", "curated": "processed", "features": "features", CACHE: CACHE}
FULL, PARTIAL, NONE = "full", "partial", "none"
_SCAN_ATTEMPTS = 3


@dataclass
class LayerCoverage:
    earliest: str | None = None
    latest: str | None = None
    file_count: int = 0
    total_rows: int = 0
    dates: set = field(default_factory=set, repr=False)

    def to_dict(self) -> dict:
        return {"earliest": self.earliest, "latest": self.latest, "file_count": self.file_count, "total_rows": self.total_rows}

    def add(self, other: "LayerCoverage") -> None:
        self.file_count += other.file_count
        self.total_rows += other.total_rows
        self.dates |= other.dates

    def finish(self) -> "LayerCoverage":
        if self.dates:
            self.earliest, self.latest = min(self.dates), max(self.dates)
        return self


class _Vanished(Exception):
    """A file listed a moment ago is gone (a concurrent compaction swap): scan again."""


def _dirs(path: Path, prefix: str) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(path) if e.is_dir() and e.name.startswith(prefix)]
    except FileNotFoundError:
        return []


@lru_cache(maxsize=200_000)
def _num_rows(path: str, size: int, mtime_ns: int) -> int:
    return pq.read_metadata(path).num_rows


def _rows(path: str) -> int | None:
    """The file's rows from its footer; None when the footer does not read (a torn or garbage file)."""
    try:
        info = os.stat(path)
        return _num_rows(path, info.st_size, info.st_mtime_ns)
    except FileNotFoundError:
        raise _Vanished(path) from None
    except (OSError, pa.ArrowException):  # unreadable footer: counted as a file, its rows unknown, its day not stored
        return None


def _month_dates(path: Path) -> set[str]:
    try:
        return {d.isoformat() for d in month_file_dates(path)}
    except FileNotFoundError:
        raise _Vanished(str(path)) from None
    except (OSError, pa.ArrowException):
        return set()


def _scan_symbol(symbol_dir: Path) -> LayerCoverage:
    cover = LayerCoverage()
    for month_dir in _dirs(symbol_dir, "month="):  # compacted closed months
        month_file = Path(month_dir.path) / "part.parquet"
        if month_file.exists():
            cover.dates |= _month_dates(month_file)
            cover.file_count += 1
            cover.total_rows += _rows(str(month_file)) or 0
    for date_dir in _dirs(symbol_dir, "date="):
        try:
            files = [f for f in os.scandir(date_dir.path) if f.name.endswith(".parquet") and not f.name.startswith(".")]
        except FileNotFoundError:
            raise _Vanished(date_dir.path) from None
        if not files:
            continue
        cover.file_count += len(files)
        newest = max(files, key=lambda f: f.name)  # raw: the newest batch is the one readers use
        rows = _rows(newest.path)
        if rows is not None:  # a day whose file readers would fail on is not covered
            cover.dates.add(date_dir.name.split("=", 1)[1])
            cover.total_rows += rows
    return cover


def _symbol_dirs(table: Path, symbol: str | None) -> list[tuple[str, Path]]:
    """``(symbol, folder)`` of a table's symbol folders (only ``symbol``'s when given)."""
    named = [(entry.name.split("=", 1)[1], Path(entry.path)) for entry in _dirs(table, "symbol=")]
    return [(name, path) for name, path in named if symbol is None or name == symbol]


def _scan_table(table: Path, symbol: str | None) -> dict[str, LayerCoverage]:
    out: dict[str, LayerCoverage] = {}
    for name, folder in _symbol_dirs(table, symbol):
        for attempt in range(_SCAN_ATTEMPTS):
            try:
                out[name] = _scan_symbol(folder)
                break
            except _Vanished:
                if attempt == _SCAN_ATTEMPTS - 1:
                    out[name] = LayerCoverage()
    return out


def _merge(parts: list[dict[str, LayerCoverage]], *, every: bool) -> dict[str, LayerCoverage]:
    """Union of tables (raw sources); with ``every``, a date counts only when all tables hold it."""
    out: dict[str, LayerCoverage] = {}
    for symbol in {s for part in parts for s in part}:
        cover = LayerCoverage()
        dates = None
        for part in parts:
            layer = part.get(symbol, LayerCoverage())
            cover.add(layer)
            dates = set(layer.dates) if dates is None else (dates & layer.dates if every else dates | layer.dates)
        cover.dates = dates or set()
        out[symbol] = cover
    return out


def _scan_read_copies(table: Path, symbol: str | None) -> dict[str, LayerCoverage]:
    """Per symbol: the read copy of ``table`` (``read_copy.arrow`` in its symbol folder), its dates and rows."""
    out: dict[str, LayerCoverage] = {}
    for name, folder in _symbol_dirs(table, symbol):
        copy = read_copy_summary(folder)
        if copy is not None:
            rows, dates = copy
            out[name] = LayerCoverage(file_count=1, total_rows=rows, dates={d.isoformat() for d in dates})
    return out


def _scanned_tables(root: Path) -> list[Path]:
    """Every table folder the coverage scan reads (raw per source, curated, each feature version)."""
    tables = [Path(e.path) for e in _dirs(root / "raw_bars", "source=")] + [root / "curated_bars"]
    for group in FEATURE_GROUPS:
        tables += [Path(v.path) for v in _dirs(root / "features" / group, "version=")]
    return [t for t in tables if t.is_dir()]


def _coverage(settings: PlatformSettings, symbol: str | None) -> dict[str, dict[str, LayerCoverage]]:
    root = Path(settings.base_path) / "lake"
    with contextlib.ExitStack() as locks:  # shared layout locks: no compaction swap mid-scan (README "Reliability")
        for table in _scanned_tables(root):
            locks.enter_context(layout_lock(table, shared=True))
        raw = [_scan_table(Path(e.path), symbol) for e in _dirs(root / "raw_bars", "source=")]
        processed = _scan_table(root / "curated_bars", symbol)
        features, copies = [], []
        for group in FEATURE_GROUPS:  # a group counts when any of its versions holds the day
            versions = [Path(v.path) for v in _dirs(root / "features" / group, "version=")]
            features.append(_merge([_scan_table(v, symbol) for v in versions], every=False))
            copies += [_scan_read_copies(v, symbol) for v in versions]
        copies += [_scan_read_copies(Path(v.path), symbol) for v in _dirs(root / "labels", "version=")]
        per_layer = {"raw": _merge(raw, every=False), "curated": processed, "features": _merge(features, every=True)}
        symbols = sorted({s for layer in per_layer.values() for s in layer})
        per_layer[CACHE] = _merge(copies, every=False)
    return {s: {layer: per_layer[layer].get(s, LayerCoverage()).finish() for layer in REPORTED_LAYERS} for s in symbols}


def expected_layers(market: Market) -> tuple[str, ...]:
    """Layers a complete symbol holds: crypto pairs have no feature groups (raw and processed)."""
    return ("raw", "curated") if market == CRYPTO else LAYERS


def get_coverage(symbol: str | None = None, *, settings: PlatformSettings | None = None) -> list[dict]:
    """``[{symbol, asset_type, layers: {raw|curated|features|cache: {earliest, latest, file_count, total_rows}}}]``."""
    settings = settings or get_settings()
    wanted = normalize_symbol(symbol) if symbol is not None else None
    return [
        {"symbol": s, "asset_type": "crypto" if market_of(s) == CRYPTO else "stock", "layers": {k: v.to_dict() for k, v in layers.items()}}
        for s, layers in _coverage(settings, wanted).items()
    ]


def expected_days(market: Market, start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions in ``[start, end]`` (inclusive); a range outside the calendar is a 400-type error."""
    check_calendar_range(market, start, end)
    return sessions_in_range(market, start, end)


def check_calendar_range(market: Market, start: dt.date, end: dt.date) -> None:
    """Raise ``InvalidDateRangeError`` when ``[start, end]`` leaves the market calendar's range."""
    first, last = market.calendar.first_session.date(), market.calendar.last_session.date()
    if start < first or end > last:
        raise InvalidDateRangeError(f"dates must be between {first} and {last} (the {market.calendar_name} calendar's range), got {start} to {end}")


def symbol_status(layers: dict[str, LayerCoverage], expected: list[dt.date], market: Market) -> str:
    """``full``: every expected day of the window is stored in every expected layer (raw,
    curated and, for stocks, every feature group); ``none``: no layer holds any day of the
    window; ``partial``: anything in between. A window with no session is ``full``."""
    wanted = {d.isoformat() for d in expected}
    held = [layers.get(layer, LayerCoverage()).dates & wanted for layer in expected_layers(market)]
    if all(h == wanted for h in held):
        return FULL
    return PARTIAL if any(held) else NONE


def _http_layers(layers: dict[str, LayerCoverage]) -> dict[str, dict]:
    return {HTTP_LAYER_NAMES[k]: v.to_dict() for k, v in layers.items()}


def coverage_report(symbols: dict[str, str], start: dt.date, end: dt.date, *, settings: PlatformSettings | None = None) -> dict:
    """The ``GET /data/coverage`` body for tracked ``{symbol: stock|crypto}`` over ``[start, end]``:
    ``{stocks: {SYM: {raw, processed, cache, features}}, crypto: {...}, total_symbols, coverage_stats,
    symbol_status, window}`` (the last two are our extras)."""
    settings = settings or get_settings()
    stored = _coverage(settings, None)
    body = {"stocks": {}, "crypto": {}, "total_symbols": len(symbols), "coverage_stats": {"full_coverage": 0, "partial_coverage": 0, "no_coverage": 0}}
    statuses = {}
    counts = {FULL: "full_coverage", PARTIAL: "partial_coverage", NONE: "no_coverage"}
    for symbol, kind in sorted(symbols.items()):
        market = market_of(symbol, {symbol: kind})
        layers = stored.get(symbol) or {layer: LayerCoverage() for layer in REPORTED_LAYERS}
        statuses[symbol] = symbol_status(layers, expected_days(market, start, end), market)
        body["coverage_stats"][counts[statuses[symbol]]] += 1
        body["crypto" if kind == "crypto" else "stocks"][symbol] = _http_layers(layers)
    body["symbol_status"] = statuses
    body["window"] = {"start": start.isoformat(), "end": end.isoformat()}
    return body


def symbol_coverage(symbol: str, kind: str, start: dt.date, end: dt.date, *, settings: PlatformSettings | None = None) -> dict | None:
    """``{symbol, coverage: {raw, processed, cache, features}, status, window}``; None when nothing is stored."""
    settings = settings or get_settings()
    stored = _coverage(settings, symbol).get(symbol)
    if stored is None:
        return None
    market = market_of(symbol, {symbol: kind})
    return {
        "symbol": symbol,
        "coverage": _http_layers(stored),
        "status": symbol_status(stored, expected_days(market, start, end), market),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
    }


def coverage_stats(start, end, symbols=None, *, settings: PlatformSettings | None = None) -> list[dict]:
    """Per symbol and layer: expected days in ``[start, end)`` (end excluded), stored days, missing days,
    full/partial/none (a range without a session, e.g. a weekend, expects nothing: full, as ``symbol_status``)."""
    settings = settings or get_settings()
    start_date, end_date = parse_half_open_dates(start, end)
    expected_days(STOCKS, start_date, end_date)  # the range must lie inside the calendars, whatever the symbols
    names = [normalize_symbol(s) for s in symbols] if symbols is not None else None
    coverage = _coverage(settings, None)
    out = []
    for name in names if names is not None else sorted(coverage):
        expected = {d.isoformat() for d in expected_days(market_of(name), start_date, end_date)}
        layers = {}
        for layer in LAYERS:
            stored = coverage.get(name, {}).get(layer, LayerCoverage()).dates & expected
            status = FULL if stored == expected else (NONE if not stored else PARTIAL)  # no session expected: nothing missing
            layers[layer] = {"expected_days": len(expected), "stored_days": len(stored), "missing_days": sorted(expected - stored)[:50], "status": status}
        out.append({"symbol": name, "start": start_date.isoformat(), "end": (end_date + dt.timedelta(days=1)).isoformat(), "layers": layers})  # end excluded
    return out


def coverage_summary(stats: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of full / partial / none per layer over ``coverage_stats`` rows."""
    out = {layer: {FULL: 0, PARTIAL: 0, NONE: 0} for layer in LAYERS}
    for row in stats:
        for layer, values in row["layers"].items():
            out[layer][values["status"]] += 1
    return out
