"""Retrieval for TF_1: curated bars, training sets and inference rows, point-in-time correct.

Range convention (every entry point of the platform): time ranges are half-open ``[start, end)``
in UTC; naive timestamps are UTC and a bare date is its midnight UTC, so
``start="2024-11-18", end="2024-11-19"`` is exactly the 2024-11-18 session. Numbers are refused
as times.

Point in time: a feature row stamped ``ts`` is computed from bars stamped ``<= ts`` and becomes
known at ``available_ts`` (``ts + 1 min``, when its bar closed). The look-ahead audit
(``platform_assets/audit/lookahead.py``, ``mdp audit-lookahead``) proves it for every column of
every registered table. Labels (which look ahead by design) come back in a separate frame from
their own versioned table with their own ``available_ts``.

Inference never returns a row whose ``available_ts`` is after the decision time:

* ``exact`` (the contract's default): the row known at ``ts``, i.e. the bar that closed at or just
  before ``ts`` (``floor(ts, 1 min) - 1 min``); at 18:03:00 that is the 18:02 row (known 18:03).
  A symbol without that row (market closed, not ingested) is listed in ``missing``; if no
  symbol has it, ``NoDataError``.
* ``latest``: the newest real (not imputed) row with ``available_ts <= ts``, at most
  ``max_staleness`` of *market time* old (``platform_api.freshness``; default 15 minutes, so
  Friday's close is fresh before Monday's open but not at Monday noon). Older rows raise
  ``StaleDataError`` (``on_stale="raise"``, default) or are returned and listed in
  ``metadata["stale"]`` (``on_stale="flag"``); ``max_staleness=None`` disables the limit.
* ``ts`` may be many timestamps (list, Series, DatetimeIndex) for batch scoring and backtests: one
  row per (symbol, decision time), the decision time in column ``as_of``.

NaN policy (training and inference): a feature is NaN where its definition has no value (windows
before ``w`` bars of the session, lags before ``k`` bars, L2 features with no snapshot within 5
minutes, log returns next to a missing price); NaN is never filled by the platform. Imputed minutes
(``is_imputed``) are real rows with forward-filled prices: ``bar_features`` v2 flags every window
that reads one (``imputed_in_window_*``). Labels ``fwd_ret_h`` are NaN wherever ``valid_h`` is
false (either bar imputed or missing, or past the session end). ``model_frame()`` applies the
usual choices (drop imputed rows and rows without a valid label) and says so in its docstring.

Training pulls say what they left out: ``metadata["coverage"]`` per symbol lists the expected
XNYS sessions of the range, the sessions returned, the missing ones and which of those were
blocked by an error DQ result; ``strict=True`` raises ``IncompleteCoverageError`` instead.

Errors (``platform_api.errors``): bad symbols, ranges, unknown groups/versions/label definitions
raise before any I/O; a symbol with no stored rows in the range raises ``NoDataError`` naming
it, never an empty frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from platform_api.adjustment import add_adjusted_close, adjust_curated, parse_adjustment
from platform_api.errors import IncompleteCoverageError, InvalidOptionError, NoDataError, StaleDataError, UnknownLabelDefinitionError
from platform_api.freshness import market_staleness
from platform_api.inputs import (
    RANGE_CONVENTION, design_document_order, normalize_symbols, parse_duration, parse_time_range, parse_timestamps, require_choice, resolve_feature_versions,
)
from platform_api.arrow_rows import sessions_and_rows, sorted_by_symbol_ts, symbol_session_runs
from platform_api.group_rows import group_rows
from platform_api.lake_reader import LakeReader, calendar_days, quote_identifier as _quote, frame as to_frame, parquet_list, to_pandas
from platform_api.resample import FREQUENCY_MINUTES, canonical_frequency, resample_bars
from platform_assets.calendars import STOCKS, session_bounds, sessions_in_range
from platform_assets.curation.gap_engine import CURATED_COLUMNS
from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from platform_assets.quality.checks import is_blocked, raw_dq_dataset
from platform_assets.universe import market_of
from resources.lake import CURATED_BARS, feature_table, labels_table
from resources.settings import PlatformSettings
from resources.validation import InvalidInputError, validate_version

LABEL_SOURCES = ("curated_bars", "labels")  # the labels are computed from the curated bars; "labels" names their table (list_datasets)
LABELS_KEY = "labels"  # in ``sessions_without_group``: sessions whose rows have no label rows
LABELS_PRESENT = "_has_labels"
DEFAULT_LABEL_DEF_VERSION = "v1"
INFERENCE_MODES = ("exact", "latest")
STALE_ACTIONS = ("raise", "flag")
DEFAULT_MAX_STALENESS = pd.Timedelta(minutes=15)
LATEST_LOOKBACK_DAYS = 10
MINUTE = pd.Timedelta(minutes=1)
# DQ datasets whose error result makes a (symbol, day) of a feature group vanish (the assets skip it).
BLOCKING_DATASETS = {
    "bar_features": ["curated_bars", *(raw_dq_dataset(s) for s in ("sim", "databento", "ib"))],
    "l2_features": ["l2_snapshots"],
}


@dataclass
class TrainingDataset:
    """Features (one row per symbol and ts) and the labels aligned row by row (same order)."""

    features: pd.DataFrame
    labels: pd.DataFrame | None
    metadata: dict = field(default_factory=dict)

    def model_frame(self, *, drop_imputed: bool = True, require_label: str | None = None) -> pd.DataFrame:
        """One model-ready frame: features and labels side by side with ``session_date``.

        Label columns keep their names; the label availability is ``label_available_ts`` (use it
        with ``platform_api.splits.purged_time_splits``). ``drop_imputed`` drops rows whose bar was
        imputed (``latest`` inference never serves them). ``require_label="fwd_ret_5"`` keeps only
        rows whose label is valid (not NaN). Feature NaNs are left as they are (see the NaN policy).
        """
        merged = self.features.copy()
        if self.labels is not None:
            labels = self.labels.drop(columns=["symbol", "ts"]).rename(columns={"available_ts": "label_available_ts"})
            merged = pd.concat([merged.reset_index(drop=True), labels.reset_index(drop=True)], axis=1)
        merged.insert(2, "session_date", pd.DatetimeIndex(merged["ts"]).tz_convert(STOCKS.timezone).date)
        if drop_imputed and "is_imputed" in merged.columns:
            merged = merged[~merged["is_imputed"].fillna(False).astype(bool)]
        if require_label is not None:
            if require_label not in merged.columns:
                raise InvalidOptionError(f"no label column {require_label!r}; have: {', '.join(c for c in merged.columns if c.startswith('fwd_ret'))}")
            merged = merged[merged[require_label].notna()]
        return merged.reset_index(drop=True)


@dataclass
class InferenceFeatures:
    """Feature rows indexed by (symbol, ts), and per-symbol freshness in ``metadata``."""

    features: pd.DataFrame
    metadata: dict = field(default_factory=dict)


def _missing_symbols_error(what: str, symbols: list[str], start, end) -> NoDataError:
    return NoDataError(f"no {what} stored for {', '.join(symbols)} in [{start.isoformat()}, {end.isoformat()})")


# --------------------------------------------------------------------------- curated bars
def get_curated_bars(
    symbols, start, end, frequency: str = "1min", *, adjustment: str = "none", adjustment_as_of=None, settings: PlatformSettings | None = None
) -> pd.DataFrame:
    """Curated bars of ``symbols`` in ``[start, end)`` (UTC, half-open) with gap indicators and ``dq_status``.

    ``frequency``: 1min (stored bars), or 5min/15min/30min/1h/1d resampled from them (see
    ``platform_api.resample``; pandas spellings such as ``"5T"``, ``"1H"``, ``"1D"`` are read as these). Rows are sorted by symbol, ts. Gap columns: ``gap_type`` and
    ``gap_run_minutes`` are point in time (as known when the bar closed);
    ``gap_type_retrospective`` / ``gap_run_minutes_total`` describe the whole day with hindsight
    (for analysis and DQ, never as model inputs).

    ``adjustment`` (default ``"none"``: prices as traded) ``"split"`` or ``"split_dividend"``
    back-adjusts prices (and volume for splits) for corporate actions known on ``adjustment_as_of``
    (default: the last session returned); see ``platform_api.adjustment``.

    ``result.attrs["missing_sessions"]``: ``{symbol: [YYYY-MM-DD]}`` of the range's sessions a
    symbol has no bars for (empty when every session is there).
    """
    symbols = normalize_symbols(symbols)
    start_ts, end_ts = parse_time_range(start, end)
    frequency = require_choice("frequency", canonical_frequency(frequency), FREQUENCY_MINUTES)
    adjustment, as_of = parse_adjustment(adjustment, adjustment_as_of)
    reader = LakeReader(settings)
    files = reader.files(CURATED_BARS, symbols, calendar_days(start_ts, end_ts))
    empty = [s for s, paths in files.items() if not paths]
    if empty:
        raise _missing_symbols_error("curated bars", empty, start_ts, end_ts)
    columns = ", ".join(_quote(c) for c in CURATED_COLUMNS)
    try:
        bars = reader.query(
            f"SELECT {columns} FROM read_parquet($files, union_by_name=true) WHERE ts >= $start AND ts < $end ORDER BY symbol, ts",
            {"files": parquet_list(p for paths in files.values() for p in paths), "start": start_ts, "end": end_ts},
        )
    except duckdb.BinderException as error:  # files written before the point-in-time gap columns existed
        raise NoDataError(
            f"stored curated bars of {', '.join(symbols)} lack columns of the current schema ({error}); "
            "curated bars are derived: re-run `mdp backfill` for these days to rebuild them"
        ) from error
    empty = sorted(set(symbols) - set(bars["symbol"].unique()))
    if empty:
        raise _missing_symbols_error("curated bars", empty, start_ts, end_ts)
    bars["ts"] = bars["ts"].dt.tz_convert("UTC")
    missing = _sessions_without_bars(bars, symbols, start_ts, end_ts)
    adjusted = adjust_curated(bars, reader.lake.root, adjustment, as_of)
    if frequency == "1min":
        out = adjusted.reset_index(drop=True)
    elif adjustment == "none":
        out = resample_bars(bars, frequency)
    else:
        labels = adjusted[["adjustment", "adjusted_as_of", "adjustment_view"]].iloc[0].to_dict()
        out = resample_bars(adjusted, frequency).assign(**labels)
    out.attrs["missing_sessions"] = missing
    return out


def _sessions_without_bars(bars: pd.DataFrame, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> dict[str, list[str]]:
    """{symbol: [YYYY-MM-DD]} of the sessions of its market with a minute in ``[start, end)`` for
    which no bar was returned (only symbols missing some): a partial answer is never silent."""
    returned = {symbol: set(days) for symbol, days in bars.groupby("symbol", sort=False)["date"]}
    sessions = {}  # per market, computed once
    out = {}
    for symbol in symbols:
        market = market_of(symbol)
        if market not in sessions:
            sessions[market] = expected_sessions(start, end) if market == STOCKS else sessions_in_range(market, start.date(), (end - pd.Timedelta(1)).date())
        expected = sessions[market]
        got = {pd.Timestamp(day).date() for day in returned.get(symbol, set())}
        missing = [day.isoformat() for day in expected if day not in got]
        if missing:
            out[symbol] = missing
    return out


# --------------------------------------------------------------------------- training
def _label_definition(version: str):
    try:
        validate_version(version)
    except InvalidInputError as error:
        raise UnknownLabelDefinitionError(str(error)) from error
    if version not in LABEL_DEFINITIONS:
        raise UnknownLabelDefinitionError(f"unknown label definition {version!r}; registered: {', '.join(sorted(LABEL_DEFINITIONS))}")
    return LABEL_DEFINITIONS[version]


def _group_columns(versions: Mapping[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Per group: (stored column, output column); a name used by two groups gets a group prefix."""
    seen: dict[str, int] = {}
    for group, version in versions.items():
        for column in FEATURE_GROUPS[group][version].columns:
            seen[column] = seen.get(column, 0) + 1
    return {
        group: [(c, c if seen[c] == 1 else f"{group}__{c}") for c in FEATURE_GROUPS[group][version].columns]
        for group, version in versions.items()
    }


def expected_sessions(start: pd.Timestamp, end: pd.Timestamp) -> list[dt.date]:
    """XNYS sessions with at least one minute in ``[start, end)``."""
    days = sessions_in_range(STOCKS, (start - pd.Timedelta(days=1)).date(), end.date())
    out = []
    for day in days:
        open_, close = session_bounds(STOCKS, day)
        if open_ < end and close > start:
            out.append(day)
    return out


def _coverage(
    reader: LakeReader, returned: dict[str, set[dt.date]], counts: dict[str, int], symbols: list[str], groups: list[str], start, end, presence: dict
) -> dict:
    """Per symbol: expected vs returned sessions, missing ones and the DQ-blocked among them
    (``returned``/``counts``: the sessions and rows each symbol got)."""
    expected = expected_sessions(start, end)
    coverage = {}
    for symbol in symbols:
        got = set(returned.get(symbol, []))
        missing = [d for d in expected if d not in got]
        blocked = {}
        for day in missing:
            datasets = [ds for g in groups for ds in BLOCKING_DATASETS.get(g, []) if is_blocked(reader.lake, ds, symbol, day)]
            if datasets:
                blocked[day.isoformat()] = sorted(set(datasets))
        partial_groups = {
            group: sorted(d.isoformat() for d in days) for group, by_symbol in presence.items() if (days := set(expected) & got - by_symbol.get(symbol, set()))
        }
        coverage[symbol] = {
            "expected_sessions": len(expected),
            "returned_sessions": len(got & set(expected)),
            "missing_sessions": [d.isoformat() for d in missing],
            "dq_blocked_sessions": blocked,
            "sessions_without_group": partial_groups,
            "rows": int(counts.get(symbol, 0)),
        }
    return coverage


def _raise_if_without_rows(symbols: list[str], returned: dict, start_ts, end_ts) -> None:
    empty = sorted(set(symbols) - set(returned))
    if empty:
        raise _missing_symbols_error("features", empty, start_ts, end_ts)


def _single_group_rows(reader: LakeReader, versions, columns, symbols, days, start_ts, end_ts):
    """One group alone (the bulk training path): read copies for closed months, Parquet for the rest."""
    (group, version), = versions.items()
    sources = reader.sources(feature_table(group, version), symbols, days)
    empty = [s for s in symbols if sources[s].empty]
    if empty:
        raise _missing_symbols_error(f"features {group} {version}", empty, start_ts, end_ts)
    return group_rows(reader, sources, columns[group], start_ts, end_ts)


def _joined_rows(reader: LakeReader, versions, columns, definition, symbols, days, start_ts, end_ts):
    """Several groups and/or labels, left-joined on (symbol, ts) by DuckDB over the Parquet files:
    (rows ordered by symbol then ts, files read, label columns)."""
    ctes, selects, joins, availability, params = [], [], [], [], {"start": start_ts, "end": end_ts}
    files_read = 0
    for index, (group, version) in enumerate(versions.items()):
        files = reader.files(feature_table(group, version), symbols, days)
        empty = [s for s, paths in files.items() if not paths]
        if empty:
            raise _missing_symbols_error(f"features {group} {version}", empty, start_ts, end_ts)
        paths = parquet_list(p for group_paths in files.values() for p in group_paths)
        files_read += len(paths)
        params[f"files_{index}"] = paths
        picked = ", ".join(f"{_quote(stored)} AS {_quote(out)}" for stored, out in columns[group])
        session = "" if index else ", CAST(date AS DATE) AS _session"  # the partition's session date, for coverage
        ctes.append(
            f"g{index} AS (SELECT symbol, ts, available_ts{session}, {picked} FROM read_parquet($files_{index}) "
            f"WHERE ts >= $start AND ts < $end)"
        )
        selects.append(", ".join(f"g{index}.{_quote(out)}" for _, out in columns[group]))
        availability.append(f"g{index}.available_ts")
        if index:
            joins.append(f"LEFT JOIN g{index} ON g{index}.symbol = g0.symbol AND g{index}.ts = g0.ts")
            selects.append(f"g{index}.available_ts IS NOT NULL AS _has_{index}")
    label_columns: list[str] = []
    if definition is not None:
        label_files = reader.files(labels_table(definition.version), symbols, days)
        empty = [s for s, paths in label_files.items() if not paths]
        if empty:
            raise _missing_symbols_error(f"labels {definition.version}", empty, start_ts, end_ts)
        params["label_files"] = parquet_list(p for paths in label_files.values() for p in paths)
        files_read += len(params["label_files"])
        label_columns = definition.columns
        picked = ", ".join(_quote(c) for c in label_columns)
        ctes.append(
            "lab AS (SELECT symbol, ts, available_ts AS label_available_ts, "
            f"{picked} FROM read_parquet($label_files) WHERE ts >= $start AND ts < $end)"
        )
        joins.append("LEFT JOIN lab ON lab.symbol = g0.symbol AND lab.ts = g0.ts")
        selects.append("lab.label_available_ts, " + ", ".join(f"lab.{_quote(c)}" for c in label_columns))
        selects.append(f"lab.label_available_ts IS NOT NULL AS {LABELS_PRESENT}")
    available = availability[0] if len(availability) == 1 else f"greatest({', '.join(availability)})"
    # A join scrambles file order: sorted here (a single group streams out in order, group_rows).
    sql = (
        f"WITH {', '.join(ctes)} SELECT g0.symbol, g0.ts, {available} AS available_ts, {', '.join(selects)}, g0._session "
        f"FROM g0 {' '.join(joins)} ORDER BY g0.symbol, g0.ts"
    )
    return reader.query_arrow(sql, params), files_read, label_columns


def get_features_for_training(
    feature_groups,
    feature_versions,
    symbols,
    start,
    end,
    include_labels: bool = False,
    label_source: str | None = None,
    label_def_version: str | None = None,
    *,
    strict: bool = False,
    adjustment: str = "none",
    adjustment_as_of=None,
    settings: PlatformSettings | None = None,
) -> TrainingDataset:
    """Feature rows of the groups (at the given versions) for ``[start, end)`` (UTC, half-open), joined on (symbol, ts).

    The first group defines the rows; other groups and the labels are left-joined (null where they
    have no row; ``metadata["coverage"][symbol]["sessions_without_group"]`` says where, the labels
    under ``"labels"``; ``valid_h`` is False there). ``available_ts`` is
    the latest of the groups' ``available_ts``: the time the whole row was known. With
    ``include_labels`` the labels of ``label_def_version`` (default v1, from ``label_source``
    ``curated_bars``; ``"labels"``, the name ``list_datasets`` gives their table, is the same) come aligned row by row, NaN where not valid. ``strict=True`` raises
    ``IncompleteCoverageError`` when any expected session of any symbol has no rows, or lacks a
    requested group or the labels; ``metadata["complete"]`` is False then.
    ``TrainingDataset.model_frame()`` merges features and labels with the session date.
    ``adjustment="split"|"split_dividend"`` adds ``close_adj`` / ``adj_factor_pit`` (point in time:
    only corporate actions announced by the row's session); ``adjustment_as_of`` gives the research
    back-adjustment instead (``metadata["adjustment"]["point_in_time"]`` is then false).
    """
    versions = resolve_feature_versions(feature_groups, feature_versions)
    symbols, start, end = design_document_order(symbols, start, end)
    symbols = normalize_symbols(symbols)
    start_ts, end_ts = parse_time_range(start, end)
    adjustment, as_of = parse_adjustment(adjustment, adjustment_as_of)
    require_choice("label_source", label_source or LABEL_SOURCES[0], LABEL_SOURCES)
    definition = _label_definition(label_def_version or DEFAULT_LABEL_DEF_VERSION)  # validated even when unused
    definition = definition if include_labels else None
    reader = LakeReader(settings)
    days = calendar_days(start_ts, end_ts)
    columns = _group_columns(versions)
    if len(versions) == 1 and definition is None:
        rows = _single_group_rows(reader, versions, columns, symbols, days, start_ts, end_ts)
        returned, row_counts = rows.sessions_and_rows()
        _raise_if_without_rows(symbols, returned, start_ts, end_ts)
        files_read, label_columns, presence = rows.files_read, [], {}
        frame = rows.frame()
    else:
        table, files_read, label_columns = _joined_rows(reader, versions, columns, definition, symbols, days, start_ts, end_ts)
        table = sorted_by_symbol_ts(table)
        returned, row_counts = sessions_and_rows(symbol_session_runs(table, "_session"))
        _raise_if_without_rows(symbols, returned, start_ts, end_ts)
        presence = {}
        flags = {group: f"_has_{index}" for index, group in enumerate(versions) if index}
        if definition is not None:
            flags[LABELS_KEY] = LABELS_PRESENT
        for name, flag in flags.items():
            has = table.column(flag).to_numpy(zero_copy_only=False).astype(bool)
            presence[name] = sessions_and_rows(symbol_session_runs(table, "_session", mask=has))[0]
        helpers = ["_session", *flags.values()]
        frame = to_pandas(table.drop_columns(helpers))
    keys = ["symbol", "ts"]
    labels = None
    if definition is not None:
        labels = frame[keys + ["label_available_ts", *label_columns]].rename(columns={"label_available_ts": "available_ts"})
        for column in label_columns:
            if column.startswith("valid_") and labels[column].dtype != bool:  # rows without a stored label: not valid
                labels[column] = labels[column].astype("boolean").fillna(False).astype(bool)
        frame = frame.drop(columns=["label_available_ts", *label_columns])
    adjustment_info = None
    if adjustment != "none":
        frame, adjustment_info = add_adjusted_close(frame, _closes(reader, symbols, start_ts, end_ts), reader.lake.root, adjustment, as_of)
    coverage = _coverage(reader, returned, row_counts, symbols, list(versions), start_ts, end_ts, presence)
    incomplete = {s: c for s, c in coverage.items() if c["missing_sessions"] or c["sessions_without_group"]}
    if strict and incomplete:
        raise IncompleteCoverageError(f"incomplete coverage in [{start_ts.isoformat()}, {end_ts.isoformat()}): {_incomplete_detail(incomplete)}")
    metadata = {
        "feature_versions": dict(versions),
        "label_def_version": definition.version if definition else None,
        "label_source": (label_source or LABEL_SOURCES[0]) if definition else None,
        "label_horizons_minutes": list(definition.horizons) if definition else None,
        "symbols": symbols,
        "start": start_ts.isoformat(),
        "end": end_ts.isoformat(),
        "range": RANGE_CONVENTION,
        "rows": len(frame),
        "coverage": coverage,
        "complete": not incomplete,
        "files_read": files_read,
        **_extraction_stamp(),
        "lake": str(reader.lake.root),
        "point_in_time": "feature row at ts uses bars stamped <= ts; known at available_ts = ts + 1 min",
        "nan_policy": "features NaN where undefined (short windows, no L2 snapshot); labels NaN where valid_h is false; nothing filled",
    }
    if adjustment_info:
        metadata["adjustment"] = adjustment_info
    return TrainingDataset(features=frame, labels=labels, metadata=metadata)


def _extraction_stamp() -> dict[str, str]:
    """When the rows were extracted (UTC, ISO 8601): ``extraction_ts``, and ``extraction_timestamp``
    as seed 000 section 4.1 words it ("feature versions, label def version, extraction timestamp")."""
    stamp = pd.Timestamp.now(tz="UTC").isoformat()
    return {"extraction_ts": stamp, "extraction_timestamp": stamp}


def _incomplete_detail(incomplete: dict[str, dict]) -> str:
    """Per symbol: the sessions without rows (and the DQ-blocked among them), and the sessions whose
    rows lack a joined group or the labels."""
    parts = []
    for symbol, c in incomplete.items():
        days = c["missing_sessions"]
        text = []
        if days:
            text.append(f"{len(days)} of {c['expected_sessions']} sessions missing ({_first_days(days)})"
                        + (f", DQ-blocked: {', '.join(c['dq_blocked_sessions'])}" if c["dq_blocked_sessions"] else ""))
        text += [f"{name} missing on {len(without)} session(s) ({_first_days(without)})" for name, without in c["sessions_without_group"].items()]
        parts.append(f"{symbol}: {'; '.join(text)}")
    return "; ".join(parts)


def _first_days(days: list[str]) -> str:
    return ", ".join(days[:5]) + (" ..." if len(days) > 5 else "")


def _closes(reader: LakeReader, symbols: list[str], start_ts: pd.Timestamp, end_ts: pd.Timestamp) -> pd.DataFrame:
    """(symbol, ts, close) of the stored curated bars in [start, end) (empty when none)."""
    files = reader.files(CURATED_BARS, symbols, calendar_days(start_ts, end_ts))
    paths = parquet_list(p for group_paths in files.values() for p in group_paths)
    if not paths:
        return pd.DataFrame(columns=["symbol", "ts", "close"])
    closes = reader.query("SELECT symbol, ts, close FROM read_parquet($files) WHERE ts >= $start AND ts < $end",
                          {"files": paths, "start": start_ts, "end": end_ts})
    closes["ts"] = closes["ts"].dt.tz_convert("UTC")
    return closes


# --------------------------------------------------------------------------- inference
def _join_group_rows(conn, reader: LakeReader, rows: pd.DataFrame, group: str, version: str, columns) -> pd.DataFrame:
    """Left-join another group's rows at the same (symbol, ts) onto ``rows``; availability = the later."""
    table = feature_table(group, version)
    wanted = rows[["symbol", "date"]].drop_duplicates()
    paths = sorted(
        {str(path) for r in wanted.itertuples() if (path := reader.day_file(table, r.symbol, pd.Timestamp(r.date).date())) is not None}
    )
    names = [out for _, out in columns]
    if paths:
        conn.register("wanted_keys", rows[["symbol", "ts"]].drop_duplicates())
        picked = ", ".join(f"g.{_quote(stored)} AS {_quote(out)}" for stored, out in columns)
        extra = to_frame(conn, f"SELECT DISTINCT ON (g.symbol, g.ts) g.symbol, g.ts, g.available_ts AS _available_ts, {picked} "
            "FROM read_parquet($files) g SEMI JOIN wanted_keys k ON g.symbol = k.symbol AND g.ts = k.ts",
            {"files": paths},)
        conn.unregister("wanted_keys")
        extra["ts"] = extra["ts"].dt.tz_convert("UTC")
        extra["_available_ts"] = extra["_available_ts"].dt.tz_convert("UTC")
    else:
        extra = pd.DataFrame(columns=["symbol", "ts", "_available_ts", *names])
    merged = rows.merge(extra, on=["symbol", "ts"], how="left")
    merged["available_ts"] = merged[["available_ts", "_available_ts"]].max(axis=1)
    return merged.drop(columns="_available_ts")


def _exact_rows(conn, reader: LakeReader, table, wanted: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per decision: the row stamped ``want_ts`` (the bar that closed at or before the decision)."""
    days = sorted({ts.date() for ts in wanted["want_ts"]})
    paths = parquet_list(dict.fromkeys(p for ps in reader.files(table, sorted(set(wanted["symbol"])), days).values() for p in ps))
    if not paths:
        return pd.DataFrame(), 0
    conn.register("decisions", wanted)
    rows = to_frame(conn, "SELECT d.as_of, f.* FROM decisions d JOIN read_parquet($files) f "
                    "ON f.symbol = d.symbol AND f.ts = d.want_ts AND f.available_ts <= d.as_of", {"files": paths})
    conn.unregister("decisions")
    return rows, len(paths)


def _latest_rows(conn, reader: LakeReader, table, wanted: pd.DataFrame, real_filter: str) -> tuple[pd.DataFrame, int]:
    """Per decision: the newest (real) row known at it. Reads the stored days between the first and
    last decision, then, only for decisions still without a row, one older stored day at a time
    (up to ``LATEST_LOOKBACK_DAYS``): one file per symbol for a single live decision."""
    first, last = wanted["as_of"].min().date(), wanted["as_of"].max().date()
    stored = {s: [d for d in reader.stored_dates(table, s) if d <= last] for s in wanted["symbol"].unique()}
    pending, found, searched = wanted, [], 0
    for depth in range(LATEST_LOOKBACK_DAYS + 1):
        days: dict[str, list] = {}
        for symbol in pending["symbol"].unique():
            before = [d for d in stored[symbol] if d < first]
            if depth == 0:
                days[symbol] = [d for d in stored[symbol] if d >= first]
            elif len(before) >= depth:
                days[symbol] = [before[-depth]]
        paths = parquet_list(dict.fromkeys(p for s, ds in days.items() if ds for p in reader.files(table, [s], ds)[s]))
        if not paths:
            if depth:
                break  # no pending symbol has a stored day this far back (nor further)
            continue
        searched += len(paths)
        conn.register("decisions", pending)
        rows = to_frame(conn, f"SELECT d.as_of, f.* FROM decisions d ASOF JOIN (SELECT * FROM read_parquet($files) {real_filter}) f "
                        "ON f.symbol = d.symbol AND d.as_of >= f.available_ts", {"files": paths})
        conn.unregister("decisions")
        if len(rows):
            found.append(rows)
            done = set(zip(rows["symbol"], rows["as_of"]))
            pending = pending[[(s, a) not in done for s, a in zip(pending["symbol"], pending["as_of"])]]
        if pending.empty:
            break
    return (pd.concat(found, ignore_index=True) if found else pd.DataFrame()), searched


def get_features_for_inference(
    feature_groups,
    feature_versions,
    symbols,
    ts,
    mode: str = "exact",
    *,
    max_staleness=DEFAULT_MAX_STALENESS,
    on_stale: str = "raise",
    adjustment: str = "none",
    settings: PlatformSettings | None = None,
) -> InferenceFeatures:
    """Feature rows for decisions at ``ts`` (one timestamp or many; UTC, naive = UTC), per symbol.

    No row is ever returned whose ``available_ts`` is after its decision time (``as_of``).

    * ``exact`` (default): the row known at ``ts``: the bar stamped ``floor(ts, 1 min) - 1 min``
      (closed at or before ``ts``), imputed or not (see ``is_imputed``). Pairs without it are
      listed in ``metadata["missing"]`` (and ``missing_symbols`` for one ``ts``).
    * ``latest``: the newest real (not imputed, when the first group has ``is_imputed``) row with
      ``available_ts <= ts``, searched back over up to ``LATEST_LOOKBACK_DAYS`` stored sessions.
      ``max_staleness`` (default 15 min of market time; a Timedelta, seconds or "15min"; ``None``
      = no limit) bounds how old it may be: ``on_stale="raise"`` raises ``StaleDataError``,
      ``"flag"`` returns it and lists it in ``metadata["stale"]``.

    ``features`` is indexed by (symbol, ts) of the rows, with ``as_of`` (the decision time) and
    ``available_ts`` columns. ``metadata["freshness"][symbol]`` (one ``ts``) or
    ``metadata["freshness"][symbol][as_of]`` (many) gives ``ts``, ``available_ts``,
    ``staleness_seconds`` (wall clock, decision time minus the row's ts),
    ``market_staleness_seconds`` and ``stale``. ``adjustment="split"|"split_dividend"`` adds
    ``close_adj`` / ``adj_factor_pit`` (the row's close times the factor known on its session).
    """
    versions = resolve_feature_versions(feature_groups, feature_versions)
    symbols, ts = design_document_order(symbols, ts)
    symbols = normalize_symbols(symbols)
    decisions, many = parse_timestamps(ts, name="ts")
    adjustment, _ = parse_adjustment(adjustment, None)
    require_choice("mode", mode, INFERENCE_MODES)
    require_choice("on_stale", on_stale, STALE_ACTIONS)
    limit = parse_duration(max_staleness, name="max_staleness")
    reader = LakeReader(settings)
    columns = _group_columns(versions)
    groups = list(versions.items())
    first_group, first_version = groups[0]
    first_table = feature_table(first_group, first_version)
    real_filter = "WHERE NOT is_imputed" if "is_imputed" in FEATURE_GROUPS[first_group][first_version].columns else ""
    wanted = pd.DataFrame([(s, at) for s in symbols for at in decisions], columns=["symbol", "as_of"])
    wanted["want_ts"] = wanted["as_of"].dt.floor("1min") - MINUTE
    with reader.connect() as conn:
        if mode == "exact":
            frame, searched = _exact_rows(conn, reader, first_table, wanted)
        else:
            frame, searched = _latest_rows(conn, reader, first_table, wanted.drop(columns="want_ts"), real_filter)
        if frame.empty:
            hint = " (no bar closed then: market closed or not ingested; try mode='latest')" if mode == "exact" else ""
            raise NoDataError(f"no {first_group} {first_version} rows for {', '.join(symbols)} known at "
                              f"{', '.join(at.isoformat() for at in decisions[:5])}{' ...' if len(decisions) > 5 else ''} (mode={mode}){hint}")
        for column in ("as_of", "ts", "available_ts"):
            frame[column] = frame[column].dt.tz_convert("UTC")
        out = frame[["symbol", "as_of", "date", "ts", "available_ts"] + [stored for stored, _ in columns[first_group]]]
        out = out.rename(columns=dict(columns[first_group]))
        for group, version in groups[1:]:
            out = _join_group_rows(conn, reader, out, group, version, columns[group])
        out = out.drop(columns="date")
    if (out["available_ts"] > out["as_of"]).any():  # another group known later than the decision: not usable
        out = out[out["available_ts"] <= out["as_of"]]
    out["mkt_staleness_"] = [market_staleness(a, at) for a, at in zip(out["available_ts"], out["as_of"])]
    out["stale_"] = (out["mkt_staleness_"] > limit) if (limit is not None and mode == "latest") else False
    stale = out[out["stale_"]]
    if len(stale) and on_stale == "raise":
        detail = ", ".join(f"{r.symbol} at {r.as_of.isoformat()}: newest row {r.ts.isoformat()} ({r.mkt_staleness_} of market time)"
                           for r in stale.head(5).itertuples())
        raise StaleDataError(f"{len(stale)} row(s) older than max_staleness {limit}: {detail} (pass on_stale='flag' to get them flagged)")

    def info(r) -> dict:
        return {"ts": r.ts.isoformat(), "available_ts": r.available_ts.isoformat(), "staleness_seconds": (r.as_of - r.ts).total_seconds(),
                "market_staleness_seconds": r.mkt_staleness_.total_seconds(), "stale": bool(r.stale_)}

    if many:
        freshness: dict = {}
        for r in out.itertuples():
            freshness.setdefault(r.symbol, {})[r.as_of.isoformat()] = info(r)
    else:
        freshness = {r.symbol: info(r) for r in out.itertuples()}
    found = set(zip(out["symbol"], out["as_of"]))
    missing = [(s, at.isoformat()) for s in symbols for at in decisions if (s, at) not in found]
    metadata = {
        "feature_versions": dict(versions),
        "mode": mode,
        "requested_ts": [at.isoformat() for at in decisions] if many else decisions[0].isoformat(),
        "max_staleness_seconds": limit.total_seconds() if limit is not None else None,
        "on_stale": on_stale,
        "freshness": freshness,
        "stale": [{"symbol": r.symbol, "as_of": r.as_of.isoformat(), "ts": r.ts.isoformat()} for r in stale.itertuples()],
        "missing": missing,
        "missing_symbols": sorted({s for s, _ in missing}) if not many else sorted(set(symbols) - set(out["symbol"])),
        "files_searched": searched,
        **_extraction_stamp(),
    }
    out = out.drop(columns=["mkt_staleness_", "stale_"])
    if adjustment != "none" and len(out):
        window = (out["ts"].min(), out["ts"].max() + MINUTE)
        out, metadata["adjustment"] = add_adjusted_close(out, _closes(reader, sorted(out["symbol"].unique()), *window), reader.lake.root, adjustment, None)
    return InferenceFeatures(features=out.set_index(["symbol", "ts"]).sort_index(), metadata=metadata)
