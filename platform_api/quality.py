"""Data-quality answers from stored results: per-metric summaries and dataset health (contract 000, 6).

    get_data_quality_summary(dataset_name, start_date, end_date, symbols=None) -> DataQualitySummary
    get_dataset_health(dataset_name, as_of_date) -> DatasetHealthStatus

Both read ``lake/dq_metrics`` (written by the assets' DQ checks), never recompute. Dataset names
are the catalog's (``raw_bars``, ``l2_snapshots``, ``curated_bars``, ``bar_features``,
``l2_features``); a raw dataset covers every source (``raw_bars_sim``, ...) and a feature group
every version (``bar_features_v1``, ...); those stored names are accepted too.

Dates: the summary covers the half-open ``[start_date, end_date)`` (the platform's range
convention), ``date_range`` echoes it. Each ``DataQualityMetric`` is one rule over that range:
``value`` is its worst (highest) value over the (symbol, date) partitions checked, ``status`` the
worst status, ``thresholds`` the rule's ``{"warn": ..., "error": ...}`` (a status is reached when
value >= threshold; None when the rule has no such level). The per-partition rows stay available
(``to_frame()``, ``partitions``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from platform_api.coverage import check_calendar_range
from platform_api.errors import InvalidDateRangeError, NoDataError, UnknownDatasetError
from platform_assets.calendars import CRYPTO, STOCKS, Market, sessions_in_range
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.quality.metrics import DQ_METRICS_SCHEMA, STATUS_ERROR, STATUS_OK, STATUS_RANK, STATUS_WARN, STATUSES
from platform_assets.universe import market_of
from resources.l2_store import L2SnapshotStore
from resources.lake import (
    ALIGNED_BARS, CURATED_BARS, CorruptLakeFileError, ParquetLake, feature_table, labels_table, layout_files, parquet_file_ok, raw_bars_table, read_parquet_files, symbol_layout,
)
from resources.settings import PlatformSettings, get_settings
from resources.validation import normalize_symbols, parse_date, parse_half_open_dates

QUALITY_DATASETS = ("raw_bars", "l2_snapshots", "curated_bars", "aligned_bars", "bar_features", "l2_features", "labels")  # every list_datasets() name
MISSING_METRIC = "partitions_missing"  # the summary's metric for sessions in the range without results
GREEN, YELLOW, RED = "GREEN", "YELLOW", "RED"
STALE_RED_SESSIONS = 5  # results this many sessions behind as_of_date make a dataset RED
LOOKBACK_SESSIONS = 10  # sessions looked at to know which symbols a dataset normally covers


@dataclass
class DataQualityMetric:
    """One rule over the summary's range (contract 6.1): ``metric_name`` (e.g. ``gap_count``),
    ``value`` (worst over the partitions), ``status`` ok | warn | error, ``thresholds``.

    Extras: ``dataset`` (the stored dataset, e.g. ``raw_bars_sim``), ``partitions`` checked,
    ``status_counts`` (partitions per status), ``worst`` (``SYMBOL@DATE`` of the worst value).
    """

    metric_name: str
    value: float
    status: str
    thresholds: dict
    dataset: str = ""
    partitions: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    worst: str = ""


@dataclass
class DataQualitySummary:
    """Contract 6.1: ``dataset_name``, ``date_range`` (start_date, end_date) of ``[start, end)``,
    ``metrics`` (one ``DataQualityMetric`` per rule).

    Extras: ``status`` (the worst), ``status_counts`` (partitions per worst status), ``partitions``
    (DataFrame: dataset, symbol, date, status, failing_rules), ``details`` (DataFrame, one row
    per stored result: dataset, symbol, date, metric, value, status, thresholds ...) and
    ``missing_partitions`` (``SYMBOL@DATE`` of the range's sessions with no results for a symbol
    asked for, or seen in the range or tracked in a market the results hold: also the ``partitions_missing`` metric, status warn).
    """

    dataset_name: str
    date_range: tuple[dt.date, dt.date]
    metrics: list[DataQualityMetric]
    status: str = STATUS_OK
    status_counts: dict[str, int] = field(default_factory=dict)
    partitions: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    details: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    missing_partitions: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The per-partition results behind the metrics (a DataFrame view)."""
        return self.details

    def to_dict(self) -> dict:
        return {
            "dataset_name": self.dataset_name,
            "date_range": [d.isoformat() for d in self.date_range],
            "metrics": [asdict(m) for m in self.metrics],
            "status": self.status,
            "status_counts": self.status_counts,
            "partitions": _records(self.partitions),
            "missing_partitions": self.missing_partitions,
        }


@dataclass
class DatasetHealthStatus:
    """Contract 6.2: GREEN / YELLOW / RED for a dataset as of a date, with the human-readable reasons.

    Extras: ``checked_date`` (the latest session with results), ``symbols_checked``,
    ``error_partitions`` / ``warn_partitions`` (``SYMBOL@DATE``).
    """

    dataset_name: str
    as_of_date: dt.date
    status: str
    reasons: list[str]
    checked_date: dt.date | None = None
    symbols_checked: int = 0
    error_partitions: list[str] = field(default_factory=list)
    warn_partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["as_of_date"] = self.as_of_date.isoformat()
        out["checked_date"] = self.checked_date.isoformat() if self.checked_date else None
        return out


DatasetHealth = DatasetHealthStatus  # the earlier name


def stored_datasets(dataset_name: str, settings: PlatformSettings) -> list[str]:
    """The stored DQ dataset folders behind a catalog dataset name (or a stored name itself)."""
    if not isinstance(dataset_name, str) or not dataset_name:
        raise UnknownDatasetError(f"unknown dataset {dataset_name!r}; known: {', '.join(QUALITY_DATASETS)}")
    root = _metrics_root(settings)
    stored = sorted(e.name.split("=", 1)[1] for e in _scandir(root) if e.name.startswith("dataset="))
    if dataset_name in QUALITY_DATASETS:
        return [name for name in stored if name == dataset_name or name.startswith(f"{dataset_name}_")]
    if dataset_name in stored and any(dataset_name.startswith(base) for base in QUALITY_DATASETS):
        return [dataset_name]
    raise UnknownDatasetError(f"unknown dataset {dataset_name!r}; known: {', '.join(QUALITY_DATASETS)} (stored: {', '.join(stored) or 'none'})")


def _half_open_dates(start_date: object, end_date: object) -> tuple[dt.date, dt.date]:
    start, end = parse_date(start_date, name="start_date"), parse_date(end_date, name="end_date")
    if start >= end:
        raise InvalidDateRangeError(f"start_date {start} must be before end_date {end} (the range is [start, end): end_date excluded)")
    return start, end


def _threshold(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _rule_metrics(details: pd.DataFrame) -> list[DataQualityMetric]:
    """One ``DataQualityMetric`` per (stored dataset, rule): worst value and status over the range."""
    out = []
    frame = details.assign(_rank=details["status"].map(STATUS_RANK))
    for (dataset, metric), rows in frame.groupby(["dataset", "metric"], sort=True):
        worst = rows.sort_values(["_rank", "value"], ascending=False, kind="stable").iloc[0]
        counts = {status: int((rows["status"] == status).sum()) for status in STATUSES}
        out.append(DataQualityMetric(
            metric_name=str(metric), value=float(rows["value"].max()), status=STATUSES[int(rows["_rank"].max())],
            thresholds={"warn": _threshold(rows["warn_threshold"].iloc[0]), "error": _threshold(rows["error_threshold"].iloc[0])},
            dataset=str(dataset), partitions=len(rows), status_counts=counts, worst=f"{worst['symbol']}@{worst['date']}",
        ))
    return out


def get_data_quality_summary(
    dataset_name: str, start_date: dt.date, end_date: dt.date, symbols: list[str] | None = None, *, settings: PlatformSettings | None = None
) -> DataQualitySummary:
    """Stored DQ metrics of ``dataset_name`` for the trading dates of ``[start_date, end_date)``.

    Raises ``UnknownDatasetError``, ``InvalidDateRangeError``, ``InvalidSymbolError``, and
    ``NoDataError`` when nothing was checked in the range.
    """
    settings = settings or get_settings()
    start, end = _half_open_dates(start_date, end_date)
    wanted = set(normalize_symbols(symbols)) if symbols is not None else None
    details = _read_metrics(settings, stored_datasets(dataset_name, settings), start, end - dt.timedelta(days=1), wanted)
    if details.empty:
        raise NoDataError(f"no data-quality results for {dataset_name} in [{start}, {end})" + (f" for {sorted(wanted)}" if wanted else ""))
    partitions = _partition_status(details)
    counts = {status: int((partitions["status"] == status).sum()) for status in STATUSES}
    worst = max((s for s, n in counts.items() if n), key=STATUS_RANK.__getitem__)
    metrics = _rule_metrics(details)
    expected = _expected_partitions(sorted(wanted) if wanted is not None else _summary_symbols(details), start, end - dt.timedelta(days=1))
    missing = sorted(expected - set(zip(details["symbol"], details["date"])), key=lambda key: (key[1], key[0]))
    if missing:  # sessions in the range without any checked data: never an all-ok summary over them
        metrics.append(DataQualityMetric(
            metric_name=MISSING_METRIC, value=float(len(missing)), status=STATUS_WARN, thresholds={"warn": 1.0, "error": None},
            dataset=dataset_name, partitions=len(expected), status_counts={STATUS_OK: len(expected) - len(missing), STATUS_WARN: len(missing), STATUS_ERROR: 0},
            worst=f"{missing[0][0]}@{missing[0][1]}",
        ))
        worst = max(worst, STATUS_WARN, key=STATUS_RANK.__getitem__)
    return DataQualitySummary(dataset_name, (start, end), metrics, worst, counts, partitions, details, [f"{symbol}@{day}" for symbol, day in missing])


def _summary_symbols(details: pd.DataFrame) -> list[str]:
    """The symbols a summary asked for every symbol expects: those with results in the range plus the
    universe's tracked symbols of each market the results hold (as health expects them): a tracked
    symbol whose results are all gone from the range is missing, not left out of an all-ok summary."""
    seen = set(details["symbol"])
    markets = {market_of(symbol).name for symbol in seen}
    tracked = _tracked_symbols()
    return sorted(seen.union(*(tracked.get(market, []) for market in markets)))


def _expected_partitions(symbols: list[str], first: dt.date, last: dt.date) -> set[tuple[str, dt.date]]:
    """(symbol, session) pairs of ``[first, last]``, each symbol on its market's sessions."""
    sessions = {market: sessions_in_range(market, first, last) for market in (STOCKS, CRYPTO)}
    return {(symbol, day) for symbol in symbols for day in sessions[market_of(symbol)]}


def get_dataset_health(dataset_name: str, as_of_date: dt.date, *, settings: PlatformSettings | None = None) -> DatasetHealthStatus:
    """GREEN (every expected symbol has results, its data stored, and passed every rule on the
    latest session), YELLOW (warnings, a symbol missing, or results a few sessions behind) or RED
    (an error rule failed, no results, every expected symbol missing, or results
    ``STALE_RED_SESSIONS`` or more sessions behind), with reasons.

    Each market the dataset holds results for is judged on its own latest session up to
    ``as_of_date`` (stocks on XNYS sessions, crypto on UTC days), so a weekend's crypto day never
    stands in for the stocks' last session. Expected on that session: the symbols with results in
    the ``LOOKBACK_SESSIONS`` sessions before, plus the universe's tracked symbols of that market
    (``DAGSTER_HOME``'s instance). A symbol is missing when it has no results that day, or when the
    data its results judged is no longer stored (a result alone never makes a dataset green)."""
    settings = settings or get_settings()
    as_of = parse_date(as_of_date, name="as_of_date")
    stored = stored_datasets(dataset_name, settings)
    check_calendar_range(STOCKS, as_of, as_of)
    first = max(as_of - dt.timedelta(days=LOOKBACK_SESSIONS * 2 + 10), STOCKS.calendar.first_session.date())
    if not sessions_in_range(STOCKS, first, as_of):
        raise NoDataError(f"no trading sessions up to {as_of}")
    metrics = _read_metrics(settings, stored, first, as_of, None)
    if metrics.empty:
        return DatasetHealthStatus(dataset_name, as_of, RED, [f"no data-quality results for {dataset_name} in the {LOOKBACK_SESSIONS} sessions up to {as_of}"])
    markets = metrics["symbol"].map(lambda symbol: market_of(symbol).name)
    tracked = _tracked_symbols()
    stores = (ParquetLake(base_path=str(settings.base_path), fsync=False), L2SnapshotStore(level2_path=str(settings.level2_path)))
    judged = [
        _market_health(stores, market, metrics[markets == market.name], tracked.get(market.name, []), first, as_of)
        for market in (STOCKS, CRYPTO) if (markets == market.name).any()
    ]
    labelled = len(judged) > 1
    status = max((j.status for j in judged), key=[GREEN, YELLOW, RED].index)
    reasons = [f"{j.market}: {reason}" if labelled else reason for j in judged for reason in j.reasons]
    return DatasetHealthStatus(
        dataset_name, as_of, status, reasons, judged[0].checked, sum(j.symbols for j in judged),
        sorted(p for j in judged for p in j.errors), sorted(p for j in judged for p in j.warns),
    )


@dataclass
class _MarketHealth:
    market: str
    status: str
    reasons: list[str]
    checked: dt.date | None
    symbols: int
    errors: list[str]
    warns: list[str]


def _market_health(
    stores: tuple[ParquetLake, L2SnapshotStore], market: Market, metrics: pd.DataFrame, tracked: list[str], first: dt.date, as_of: dt.date
) -> _MarketHealth:
    """One market's health on its latest session with results (``get_dataset_health``)."""
    sessions = sessions_in_range(market, first, as_of)[-LOOKBACK_SESSIONS:]
    metrics = metrics[metrics["date"].isin(set(sessions))]
    label = market.calendar_name
    if metrics.empty:
        return _MarketHealth(label, RED, [f"no data-quality results in the {len(sessions)} {label} sessions up to {as_of}"], None, 0, [], [])
    checked = max(metrics["date"])
    behind = len([s for s in sessions if s > checked])
    day = metrics[metrics["date"] == checked]
    partitions = _partition_status(day)
    errors = partitions[partitions["status"] == STATUS_ERROR]
    warns = partitions[partitions["status"] == STATUS_WARN]
    reasons, status = [], GREEN
    if behind:
        status = RED if behind >= STALE_RED_SESSIONS else YELLOW
        reasons.append(f"latest checked session is {checked}, {behind} session(s) before {sessions[-1]}")
    expected = set(metrics["symbol"]) | set(tracked)
    without_results = sorted(expected - set(day["symbol"]))
    if without_results:
        status = RED if status == RED or len(without_results) == len(expected) else YELLOW
        reasons.append(f"{len(without_results)} of {len(expected)} symbols have no results on {checked}: {', '.join(without_results[:10])}")
    gone = sorted({symbol for dataset, symbol in set(zip(day["dataset"], day["symbol"])) if not _data_stored(stores, dataset, symbol, checked)})
    if gone:
        status = RED if status == RED or len(gone) + len(without_results) == len(expected) else YELLOW
        reasons.append(f"{len(gone)} of {len(expected)} symbols have results but no stored data on {checked}: {', '.join(gone[:10])}")
    if len(errors):
        status = RED
        reasons += _rule_reasons(day, STATUS_ERROR, checked)
    if len(warns) or (day["status"] == STATUS_WARN).any():
        status = status if status == RED else YELLOW
        reasons += _rule_reasons(day, STATUS_WARN, checked)
    if status == GREEN:
        reasons.append(f"all {day['symbol'].nunique()} symbols passed all {day['metric'].nunique()} rules on {checked}")
    return _MarketHealth(
        label, status, reasons, checked, int(day["symbol"].nunique()),
        [f"{s}@{checked}" for s in errors["symbol"].unique()], [f"{s}@{checked}" for s in warns["symbol"].unique()],
    )


def _tracked_symbols() -> dict[str, list[str]]:
    """The universe's tracked symbols by market name; {} without a Dagster instance configured."""
    if not os.environ.get("DAGSTER_HOME"):
        return {}
    from platform_api.instance import get_instance
    from platform_assets.universe import tracked_symbols

    with get_instance() as instance:
        return {market.name: tracked_symbols(instance, market) for market in (STOCKS, CRYPTO)}


def _data_stored(stores: tuple[ParquetLake, L2SnapshotStore], dataset: str, symbol: str, day: dt.date) -> bool:
    """Whether the data a stored DQ result of ``dataset`` (a stored name: ``raw_bars_sim``,
    ``bar_features_v1`` ...) judged for (symbol, day) is still stored in a file whose footer reads
    (a torn, emptied or garbage file is not stored data)."""
    lake, l2_store = stores
    if dataset == "l2_snapshots":
        files = l2_store.day_files(symbol, day)  # a reader of the day reads every file: one torn file fails it
        return bool(files) and all(parquet_file_ok(path) for path in files)
    if dataset.startswith("raw_bars_"):
        batches = lake.batch_files(raw_bars_table(dataset[len("raw_bars_"):]), symbol, day)
        return bool(batches) and parquet_file_ok(batches[-1])
    group, _, version = dataset.rpartition("_")
    table = (feature_table(group, version) if group in FEATURE_GROUPS else labels_table(version) if group == "labels"
             else {"curated_bars": CURATED_BARS, "aligned_bars": ALIGNED_BARS}.get(dataset))
    if table is None:
        return True  # a dataset whose data we cannot locate is judged by its results alone
    try:
        path = lake.day_source(table, symbol, day)  # only the day's own month file is read: a torn other month does not count
    except CorruptLakeFileError:
        return False
    return path is not None and parquet_file_ok(path)


def _rule_reasons(day: pd.DataFrame, status: str, checked: dt.date) -> list[str]:
    failing = day[day["status"] == status]
    reasons = []
    for (dataset, metric), rows in failing.groupby(["dataset", "metric"], sort=True):
        threshold = rows["error_threshold" if status == STATUS_ERROR else "warn_threshold"].iloc[0]
        worst = rows.sort_values("value", ascending=False).iloc[0]
        symbols = sorted(rows["symbol"].unique())
        reasons.append(
            f"{dataset}: rule {metric} is {status} for {len(symbols)} symbol(s) on {checked} "
            f"({', '.join(symbols[:5])}{'...' if len(symbols) > 5 else ''}); worst {worst['symbol']} value {worst['value']:g} >= {threshold:g}"
        )
    return reasons


def _partition_status(metrics: pd.DataFrame) -> pd.DataFrame:
    rank = metrics["status"].map(STATUS_RANK)
    frame = metrics.assign(_rank=rank)
    worst = frame.groupby(["dataset", "symbol", "date"], sort=True)["_rank"].max()
    failing = frame[frame["_rank"] > 0].groupby(["dataset", "symbol", "date"])["metric"].agg(lambda s: ",".join(sorted(s)))
    out = worst.map(dict(enumerate(STATUSES))).rename("status").to_frame().join(failing.rename("failing_rules"))
    return out.fillna({"failing_rules": ""}).reset_index()


def _read_metrics(settings: PlatformSettings, stored: list[str], start: dt.date, end: dt.date, symbols: set[str] | None) -> pd.DataFrame:
    root = _metrics_root(settings)
    files = []
    for dataset in stored:
        for symbol_dir in _scandir(root / f"dataset={dataset}"):
            symbol = symbol_dir.name.split("=", 1)[-1]
            if symbols is not None and symbol not in symbols:
                continue
            # per-date files or month files (a batched run writes a month's dates as one file)
            layout = symbol_layout(Path(symbol_dir.path))
            files += layout_files(layout, {day for day in layout if start <= day <= end})
    if not files:
        return pd.DataFrame(columns=DQ_METRICS_SCHEMA.names)
    frame = read_parquet_files(files)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    frame = frame[(frame["date"] >= start) & (frame["date"] <= end)]  # a month file holds other dates too
    return frame.sort_values(["dataset", "symbol", "date", "metric"], kind="stable").reset_index(drop=True)


def _metrics_root(settings: PlatformSettings) -> Path:
    return Path(settings.base_path) / "lake" / "dq_metrics"


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        return sorted((e for e in os.scandir(path) if e.is_dir()), key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.copy()
    for column in out.columns:
        if column in ("date",):
            out[column] = out[column].astype(str)
        elif str(out[column].dtype).startswith("datetime"):
            out[column] = out[column].astype(str)
    return out.astype(object).where(out.notna(), None).to_dict("records")
