"""Pure parts behind the HTTP service: the default universe files, first-start seeding, symbol
formats, coverage status per layer, and the refresh estimate (no server needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_api.coverage import coverage_report, coverage_stats
from platform_api.service.refresh_report import estimate_seconds
from platform_assets.calendars import STOCKS, sessions_in_range
from platform_assets.universe import (
    InvalidSymbolFormatError,
    add_symbols,
    check_symbol_format,
    default_universe,
    remove_symbol,
    seed_default_universe,
    universe_table,
)
from resources.validation import InvalidInputError

UNIVERSE_DATA = Path(__file__).resolve().parent.parent / "platform_assets" / "universe_data"


def test_default_universe_is_the_sp500_and_top_20_crypto_from_dated_files():
    universe = default_universe()
    assert 495 <= len(universe["stock"]) <= 510 and len(set(universe["stock"])) == len(universe["stock"])
    assert {"AAPL", "MSFT", "NVDA", "BRK.B", "GOOG", "GOOGL"} <= set(universe["stock"])
    assert len(universe["crypto"]) == 20 and universe["crypto"][:2] == ["BTC-USD", "ETH-USD"]
    names = sorted(p.name for p in UNIVERSE_DATA.glob("*.csv"))
    assert all(any(ch.isdigit() for ch in name) for name in names)  # dated lists
    assert all(p.read_text().startswith("#") for p in UNIVERSE_DATA.glob("*.csv"))


def test_universe_file_formats(tmp_path):
    (tmp_path / "list.csv").write_text("# as of 2026-11\nsymbol\nAAPL\nMSFT\n")
    (tmp_path / "u.yaml").write_text("stock: [SPY]\nstock_file: list.csv\ncrypto: [ETH-USD]\n")
    assert default_universe(tmp_path / "u.yaml") == {"stock": ["SPY", "AAPL", "MSFT"], "crypto": ["ETH-USD"]}
    (tmp_path / "bad.csv").write_text("AAPL\n")
    (tmp_path / "bad.yaml").write_text("stock_file: bad.csv\n")
    with pytest.raises(InvalidInputError, match="header"):
        default_universe(tmp_path / "bad.yaml")
    (tmp_path / "wrong.yaml").write_text("crypto: [AAPL]\n")
    with pytest.raises(InvalidSymbolFormatError, match="Invalid symbol format: AAPL"):
        default_universe(tmp_path / "wrong.yaml")
    with pytest.raises(InvalidInputError, match="cannot read"):
        default_universe(tmp_path / "missing.yaml")


def test_first_start_seeding_happens_once_and_never_undoes_a_removal(platform, tmp_path):
    (tmp_path / "u.yaml").write_text("stock: [AAPL, MSFT]\ncrypto: [BTC-USD]\n")
    assert sorted(seed_default_universe(platform.instance, tmp_path / "u.yaml")) == ["AAPL", "BTC-USD", "MSFT"]
    assert seed_default_universe(platform.instance, tmp_path / "u.yaml") == []
    for symbol in ("AAPL", "MSFT", "BTC-USD"):
        remove_symbol(platform.instance, symbol)
    assert seed_default_universe(platform.instance, tmp_path / "u.yaml") == []  # emptied by hand: stays empty
    assert universe_table(platform.instance).empty


def test_first_start_adds_the_defaults_beside_symbols_tracked_before_but_not_removed_ones(platform, tmp_path):
    """``make run`` tracks its symbols, then ``make serve`` starts: the service still tracks the
    default universe (the HTTP guide's stocks and crypto) beside them, once; a symbol removed by
    hand before the first start is not brought back."""
    from platform_assets.universe import add_symbols, tracked_symbols

    (tmp_path / "u.yaml").write_text("stock: [AAPL, MSFT, TSLA]\ncrypto: [BTC-USD]\n")
    add_symbols(platform.instance, ["AAPL", "NVDA", "TSLA"])  # a backfill's symbols
    remove_symbol(platform.instance, "TSLA")
    assert sorted(seed_default_universe(platform.instance, tmp_path / "u.yaml")) == ["BTC-USD", "MSFT"]
    assert sorted(tracked_symbols(platform.instance)) == ["AAPL", "BTC-USD", "MSFT", "NVDA"]
    assert seed_default_universe(platform.instance, tmp_path / "u.yaml") == []  # once


def test_seeding_the_real_default_universe_is_fast(platform):
    started = pd.Timestamp.now()
    added = seed_default_universe(platform.instance)
    assert len(added) == len(default_universe()["stock"]) + 20
    assert (pd.Timestamp.now() - started).total_seconds() < 30


@pytest.mark.parametrize(
    ("symbol", "asset_type", "expected"),
    [
        ("NVDA", "auto", ("NVDA", "stock")),
        (" brk.b ", "auto", ("BRK.B", "stock")),
        ("SOL-USD", "auto", ("SOL-USD", "crypto")),
        ("SOL-USD", "crypto", ("SOL-USD", "crypto")),
        ("TSLA", "stock", ("TSLA", "stock")),
    ],
)
def test_symbol_formats_accepted(symbol, asset_type, expected):
    assert check_symbol_format(symbol, asset_type) == expected


@pytest.mark.parametrize(
    ("symbol", "asset_type"),
    [("INVALID_SYMBOL", "auto"), ("../etc", "auto"), ("", "auto"), ("TOOLONGX", "auto"), ("SOL-USD", "stock"), ("NVDA", "crypto"), (42, "auto")],
)
def test_symbol_formats_refused_with_the_guides_message(symbol, asset_type):
    with pytest.raises(InvalidSymbolFormatError, match="^Invalid symbol format: "):
        check_symbol_format(symbol, asset_type)


def _write(root: Path, table: str, symbol: str, day: dt.date, rows: int = 3) -> None:
    folder = root / "lake" / table / f"symbol={symbol}" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), folder / "part.parquet")


def test_features_count_only_when_every_feature_group_holds_the_day(platform):
    """Issue 13.5: l2_features alone must not make the features layer look complete."""
    root = platform.settings.base_path
    days = sessions_in_range(STOCKS, dt.date(2024, 12, 2), dt.date(2024, 12, 4))
    for day in days:
        _write(root, "raw_bars/source=sim", "AAPL", day)
        _write(root, "curated_bars", "AAPL", day)
        _write(root, "features/l2_features/version=v1", "AAPL", day)
    _write(root, "features/bar_features/version=v1", "AAPL", days[0])
    stats = coverage_stats(days[0], days[-1], ["AAPL"], settings=platform.settings)[0]["layers"]
    assert stats["curated"]["status"] == "full" and stats["features"]["status"] == "partial" and stats["features"]["stored_days"] == 1
    report = coverage_report({"AAPL": "stock"}, days[0], days[-1], settings=platform.settings)
    assert report["coverage_stats"] == {"full_coverage": 0, "partial_coverage": 1, "no_coverage": 0}
    assert report["stocks"]["AAPL"]["processed"] == {"earliest": "2024-12-02", "latest": "2024-12-04", "file_count": 3, "total_rows": 9}
    for day in days[1:]:
        _write(root, "features/bar_features/version=v1", "AAPL", day)
    report = coverage_report({"AAPL": "stock", "MSFT": "stock"}, days[0], days[-1], settings=platform.settings)
    assert report["coverage_stats"] == {"full_coverage": 1, "partial_coverage": 0, "no_coverage": 1}
    weekend = coverage_stats("2024-12-07", "2024-12-09", ["AAPL"], settings=platform.settings)[0]["layers"]  # no session: nothing missing
    assert weekend["curated"] == {"expected_days": 0, "stored_days": 0, "missing_days": [], "status": "full"}


def test_a_day_whose_file_does_not_read_is_not_covered(platform):
    """A garbage or torn newest raw batch (readers fail on it) is counted as a file, not as a stored day."""
    root = platform.settings.base_path
    days = sessions_in_range(STOCKS, dt.date(2024, 12, 2), dt.date(2024, 12, 3))
    for day in days:
        _write(root, "raw_bars/source=sim", "AAPL", day)
    garbage = Path(root) / "lake" / "raw_bars" / "source=sim" / "symbol=AAPL" / f"date={days[1].isoformat()}" / "part.parquet"
    garbage.write_bytes(b"garbage" * 20)
    raw = coverage_stats(days[0], days[-1] + dt.timedelta(days=1), ["AAPL"], settings=platform.settings)[0]["layers"]["raw"]  # [start, end)
    assert raw["status"] == "partial" and raw["missing_days"] == [days[1].isoformat()]


def test_crypto_is_full_without_features(platform):
    root = platform.settings.base_path
    day = dt.date(2024, 12, 7)  # a Saturday: a crypto day, no XNYS session
    _write(root, "raw_bars/source=sim", "BTC-USD", day)
    _write(root, "curated_bars", "BTC-USD", day)
    report = coverage_report({"BTC-USD": "crypto"}, day, day, settings=platform.settings)
    assert report["symbol_status"] == {"BTC-USD": "full"} and set(report["crypto"]) == {"BTC-USD"}


def test_coverage_dates_outside_the_calendar_are_input_errors(platform):
    add_symbols(platform.instance, ["AAPL"])
    with pytest.raises(InvalidInputError, match="calendar"):
        coverage_stats("1900-01-01", "1900-12-31", ["AAPL"], settings=platform.settings)
    with pytest.raises(InvalidInputError, match="calendar"):
        coverage_stats("2024-01-01", "2999-12-31", settings=platform.settings)  # no symbol stored: still refused


def test_estimate_grows_with_symbols_and_days():
    types = {"AAPL": "stock", "BTC-USD": "crypto"}
    one = estimate_seconds(["AAPL"], types, dt.date(2024, 12, 2), dt.date(2024, 12, 6))
    both = estimate_seconds(["AAPL", "BTC-USD"], types, dt.date(2024, 12, 2), dt.date(2024, 12, 6))
    month = estimate_seconds(["AAPL"], types, dt.date(2024, 11, 1), dt.date(2024, 11, 30))
    assert 5 <= one < both and one < month


def test_a_failed_refresh_run_fails_only_the_symbols_and_days_it_covered():
    import datetime as dt

    from platform_api.service.refresh_report import FailedRun
    from platform_assets.calendars import CRYPTO, STOCKS

    days = [dt.date(2024, 12, 2), dt.date(2024, 12, 3)]
    every_stock = FailedRun(STOCKS, dt.date(2024, 12, 3), dt.date(2024, 12, 6), None, "vendor down")
    assert every_stock.covers("AAPL", STOCKS, days)
    assert not every_stock.covers("BTC-USD", CRYPTO, days)  # the crypto pipeline's runs are other runs
    assert not every_stock.covers("AAPL", STOCKS, [dt.date(2024, 11, 29)])  # a day outside the run's range
    subset = FailedRun(STOCKS, days[0], days[-1], frozenset({"MSFT"}), "vendor down")
    assert subset.covers("MSFT", STOCKS, days) and not subset.covers("AAPL", STOCKS, days)
