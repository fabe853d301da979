import datetime as dt

import pytest

from resources.settings import SettingsError, load_settings
from resources.validation import (
    InvalidDateRangeError,
    InvalidSymbolError,
    normalize_symbol,
    normalize_symbols,
    parse_date_range,
    validate_version,
)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("L2_MAX_WORKERS", "abc"),
        ("L2_MAX_WORKERS", "0"),
        ("L2_BACKFILL_WINDOW_ET", "16:00-09:30"),
        ("L2_TRADING_WINDOW_ET", "9.30-16"),
        ("LOG_LEVEL", "LOUD"),
        ("IB_PORT", "70000"),
        ("LEVEL2_DIRNAME", "../elsewhere"),
        ("PARTITIONS_START_DATE", "2021-02-30"),
        ("API_CORS_ORIGINS", "localhost:3000"),
    ],
)
def test_bad_setting_fails_naming_the_key(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=key):
        load_settings()


def test_secret_value_is_never_echoed(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-very-secret")
    monkeypatch.setenv("IB_PORT", "nope")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "db-very-secret" not in str(caught.value)
    assert "db-very-secret" not in repr(load_settings(IB_PORT="4002"))


def test_base_path_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("DATA_PATH_OVERRIDE", raising=False)
    monkeypatch.setenv("ML_BASE_PATH", str(tmp_path / "ml"))
    assert load_settings().base_path == tmp_path / "ml"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(tmp_path / "override"))
    settings = load_settings(LEVEL2_DIRNAME="l2")
    assert settings.base_path == tmp_path / "override"
    assert settings.level2_path == tmp_path / "override" / "l2"


def test_level2_folder_default_follows_the_base_style(monkeypatch, tmp_path):
    """The TF_1 guide: LEVEL2_DIRNAME defaults to `Level2` under ML_BASE_PATH; this repo's location
    is `${DATA_PATH_OVERRIDE}/level2/{SYMBOL}/`; an explicit LEVEL2_DIRNAME wins either way."""
    monkeypatch.delenv("DATA_PATH_OVERRIDE", raising=False)
    monkeypatch.delenv("LEVEL2_DIRNAME", raising=False)
    monkeypatch.setenv("ML_BASE_PATH", str(tmp_path / "ml"))
    assert load_settings().level2_path == tmp_path / "ml" / "Level2"
    assert load_settings(LEVEL2_DIRNAME="level2").level2_path == tmp_path / "ml" / "level2"
    monkeypatch.setenv("DATA_PATH_OVERRIDE", str(tmp_path / "data"))
    assert load_settings().level2_path == tmp_path / "data" / "level2"
    monkeypatch.delenv("ML_BASE_PATH")
    monkeypatch.delenv("DATA_PATH_OVERRIDE")
    assert load_settings().level2_path.name == "level2"  # the repo's ./data


def test_windows_are_parsed():
    settings = load_settings(L2_BACKFILL_WINDOW_ET="09:00-16:30")
    assert settings.backfill_window.start == dt.time(9, 0)
    assert settings.backfill_window.end == dt.time(16, 30)


@pytest.mark.parametrize("bad", ["../x", "AAPL;DROP", "a/b", "", " ", "AAPL MSFT", "..", "A" * 30, "ÄPPLE", None, 5])
def test_bad_symbols_are_rejected(bad):
    with pytest.raises(InvalidSymbolError):
        normalize_symbol(bad)


def test_symbols_are_normalized():
    assert normalize_symbol(" brk.b ") == "BRK.B"
    assert normalize_symbols("aapl,MSFT, aapl,BTC-USD") == ["AAPL", "MSFT", "BTC-USD"]
    with pytest.raises(InvalidSymbolError):
        normalize_symbols(",,")


def test_date_ranges():
    assert parse_date_range("2024-01-02", "2024-01-02") == (dt.date(2024, 1, 2), dt.date(2024, 1, 2))
    with pytest.raises(InvalidDateRangeError, match="before"):
        parse_date_range("2024-01-05", "2024-01-02")
    with pytest.raises(InvalidDateRangeError, match="YYYY-MM-DD"):
        parse_date_range("2024-13-01", "2024-12-01")


def test_versions():
    assert validate_version("v12") == "v12"
    for bad in ["1", "v", "v1;", "../v1", None]:
        with pytest.raises(ValueError):
            validate_version(bad)
