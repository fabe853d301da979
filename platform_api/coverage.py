"""Coverage: what is stored per symbol and layer, and how complete it is against the calendar.

* ``get_coverage(symbol=None)``: per symbol and layer (raw / curated / features) the earliest and
  latest date, file_count and total_rows (row counts from Parquet footers, no data read).
* ``coverage_stats(start, end)``: per symbol and layer, the expected days (XNYS sessions for
  stocks, every UTC day for crypto) against the stored ones: ``full`` / ``partial`` / ``none``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from platform_assets.calendars import sessions_in_range
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.universe import market_of
from resources.lake import layout_lock, month_file_dates
from resources.settings import PlatformSettings, get_settings
from resources.validation import normalize_symbol, parse_half_open_dates

LAYERS = ("raw", "curated", "features")
FULL, PARTIAL, NONE = "full", "partial", "none"


@dataclass
class LayerCoverage:
    earliest: str | None = None
    latest: str | None = None
    file_count: int = 0
    total_rows: int = 0
    dates: set = field(default_factory=set, repr=False)

    def to_dict(self) -> dict:
        return {"earliest": self.earliest, "latest": self.latest, "file_count": self.file_count, "total_rows": self.total_rows}


def _dirs(path: Path, prefix: str) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(path) if e.is_dir() and e.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _layer_tables(root: Path) -> dict[str, list[Path]]:
    """Table folders (holding symbol=*/date=*) per layer."""
    raw = [Path(e.path) for e in _dirs(root / "raw_bars", "source=")]
    features = [Path(v.path) for group in FEATURE_GROUPS for v in _dirs(root / "features" / group, "version=")]
    return {"raw": raw, "curated": [root / "curated_bars"], "features": features}


def _scan(tables: list[Path], symbol: str | None) -> dict[str, LayerCoverage]:
    out: dict[str, LayerCoverage] = {}
    for table in tables:
        for symbol_dir in _dirs(table, "symbol="):
            name = symbol_dir.name.split("=", 1)[1]
            if symbol is not None and name != symbol:
                continue
            cover = out.setdefault(name, LayerCoverage())
            for month_dir in _dirs(Path(symbol_dir.path), "month="):  # compacted closed months
                month_file = Path(month_dir.path) / "part.parquet"
                if month_file.exists():
                    cover.dates |= {d.isoformat() for d in month_file_dates(month_file)}
                    cover.file_count += 1
                    cover.total_rows += pq.read_metadata(month_file).num_rows
            for date_dir in _dirs(Path(symbol_dir.path), "date="):
                files = [f for f in os.scandir(date_dir.path) if f.name.endswith(".parquet") and not f.name.startswith(".")]
                if not files:
                    continue
                cover.dates.add(date_dir.name.split("=", 1)[1])
                cover.file_count += len(files)
                newest = max(files, key=lambda f: f.name)  # raw: the newest batch is the one readers use
                cover.total_rows += pq.read_metadata(newest.path).num_rows
    for cover in out.values():
        if cover.dates:
            cover.earliest, cover.latest = min(cover.dates), max(cover.dates)
    return out


def _coverage(settings: PlatformSettings, symbol: str | None) -> dict[str, dict[str, LayerCoverage]]:
    root = Path(settings.base_path) / "lake"
    with contextlib.ExitStack() as locks:  # shared layout locks: no compaction swap mid-scan (README "Reliability")
        for table in (t for tables in _layer_tables(root).values() for t in tables):
            locks.enter_context(layout_lock(table, shared=True))
        per_layer = {layer: _scan(tables, symbol) for layer, tables in _layer_tables(root).items()}
    symbols = sorted({s for layer in per_layer.values() for s in layer})
    return {s: {layer: per_layer[layer].get(s, LayerCoverage()) for layer in LAYERS} for s in symbols}


def get_coverage(symbol: str | None = None, *, settings: PlatformSettings | None = None) -> list[dict]:
    """``[{symbol, asset_type, layers: {raw|curated|features: {earliest, latest, file_count, total_rows}}}]``."""
    settings = settings or get_settings()
    wanted = normalize_symbol(symbol) if symbol is not None else None
    return [
        {"symbol": s, "asset_type": "crypto" if market_of(s).name == "crypto" else "stock", "layers": {k: v.to_dict() for k, v in layers.items()}}
        for s, layers in _coverage(settings, wanted).items()
    ]


def coverage_stats(start, end, symbols=None, *, settings: PlatformSettings | None = None) -> list[dict]:
    """Per symbol and layer: expected days in ``[start, end)`` (end excluded), stored days, missing days, full/partial/none."""
    settings = settings or get_settings()
    start_date, end_date = parse_half_open_dates(start, end)
    coverage = _coverage(settings, None)
    names = [normalize_symbol(s) for s in symbols] if symbols is not None else sorted(coverage)
    out = []
    for name in names:
        expected = {d.isoformat() for d in sessions_in_range(market_of(name), start_date, end_date)}
        layers = {}
        for layer in LAYERS:
            stored = coverage.get(name, {}).get(layer, LayerCoverage()).dates & expected
            status = NONE if not stored else (FULL if stored == expected else PARTIAL)
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


def expected_days(symbol: str, start: dt.date, end: dt.date) -> list[dt.date]:
    return sessions_in_range(market_of(symbol), start, end)
