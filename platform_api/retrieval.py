"""Retrieval for TF_1: curated bars, training sets and inference rows, point-in-time correct.

Time ranges are half-open ``[start, end)`` in UTC (naive = UTC, a bare date = midnight UTC).
Point in time: a feature row stamped ``ts`` is computed from bars stamped ``<= ts`` and becomes
known at ``available_ts`` (``ts + 1 min``, when its bar closed). Training sets return each row
with its ``available_ts``; labels (which look ahead by design) come back in a separate frame from
their own versioned table. ``get_features_for_inference(mode="latest")`` returns, per symbol, the
newest real (not imputed) row whose ``available_ts <= ts``: never a row from after ``ts``, and
its staleness is reported.

Errors (``platform_api.errors``): bad symbols, ranges, unknown groups/versions/label definitions
raise before any I/O; a symbol with no stored rows in the range raises ``NoDataError`` naming
it, never an empty frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from platform_api.errors import InvalidOptionError, NoDataError, UnknownLabelDefinitionError
from platform_api.inputs import normalize_symbols, parse_time_range, parse_timestamp, require_choice, resolve_feature_versions
from platform_api.lake_reader import LakeReader, calendar_days, frame as to_frame, parquet_list
from platform_api.resample import FREQUENCY_MINUTES, resample_bars
from platform_assets.curation.gap_engine import CURATED_COLUMNS
from platform_assets.features.labels import LABEL_DEFINITIONS
from platform_assets.features.registry import FEATURE_GROUPS
from resources.lake import CURATED_BARS, feature_table, labels_table
from resources.settings import PlatformSettings
from resources.validation import InvalidInputError, validate_version

LABEL_SOURCES = ("curated_bars",)
INFERENCE_MODES = ("exact", "latest")
LATEST_LOOKBACK_DAYS = 10


@dataclass
class TrainingDataset:
    """Features (one row per symbol and ts) and the labels aligned row by row (same order)."""

    features: pd.DataFrame
    labels: pd.DataFrame | None
    metadata: dict = field(default_factory=dict)


@dataclass
class InferenceFeatures:
    """Feature rows indexed by (symbol, ts), and per-symbol freshness in ``metadata``."""

    features: pd.DataFrame
    metadata: dict = field(default_factory=dict)


def _missing_symbols_error(what: str, symbols: list[str], start, end) -> NoDataError:
    return NoDataError(f"no {what} stored for {', '.join(symbols)} in [{start.isoformat()}, {end.isoformat()})")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- curated bars
def get_curated_bars(symbols, start, end, frequency: str = "1min", *, settings: PlatformSettings | None = None) -> pd.DataFrame:
    """Curated bars of ``symbols`` in ``[start, end)`` with gap indicators and ``dq_status``.

    ``frequency``: 1min (stored bars), or 5min/15min/30min/1h/1d resampled from them (see
    ``platform_api.resample``). Rows are sorted by symbol, ts.
    """
    symbols = normalize_symbols(symbols)
    start_ts, end_ts = parse_time_range(start, end)
    require_choice("frequency", frequency, FREQUENCY_MINUTES)
    reader = LakeReader(settings)
    files = reader.files(CURATED_BARS, symbols, calendar_days(start_ts, end_ts))
    empty = [s for s, paths in files.items() if not paths]
    if empty:
        raise _missing_symbols_error("curated bars", empty, start_ts, end_ts)
    columns = ", ".join(_quote(c) for c in CURATED_COLUMNS)
    bars = reader.query(
        f"SELECT {columns} FROM read_parquet($files) WHERE ts >= $start AND ts < $end ORDER BY symbol, ts",
        {"files": parquet_list(p for paths in files.values() for p in paths), "start": start_ts, "end": end_ts},
    )
    empty = sorted(set(symbols) - set(bars["symbol"].unique()))
    if empty:
        raise _missing_symbols_error("curated bars", empty, start_ts, end_ts)
    bars["ts"] = bars["ts"].dt.tz_convert("UTC")
    if frequency == "1min":
        return bars.reset_index(drop=True)
    return resample_bars(bars, frequency)


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


def get_features_for_training(
    feature_groups,
    feature_versions,
    symbols,
    start,
    end,
    include_labels: bool = True,
    label_source: str = "curated_bars",
    label_def_version: str = "v1",
    *,
    settings: PlatformSettings | None = None,
) -> TrainingDataset:
    """Feature rows of the groups (at the given versions) for ``[start, end)``, joined on (symbol, ts).

    The first group defines the rows; other groups are left-joined (null where they have no row).
    ``available_ts`` is the latest of the groups' ``available_ts``: the time the whole row was
    known. With ``include_labels`` the labels of ``label_def_version`` come aligned row by row.
    """
    versions = resolve_feature_versions(feature_groups, feature_versions)
    symbols = normalize_symbols(symbols)
    start_ts, end_ts = parse_time_range(start, end)
    require_choice("label_source", label_source, LABEL_SOURCES)
    definition = _label_definition(label_def_version) if include_labels else None
    reader = LakeReader(settings)
    days = calendar_days(start_ts, end_ts)
    columns = _group_columns(versions)
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
        ctes.append(
            f"g{index} AS (SELECT symbol, ts, available_ts, {picked} FROM read_parquet($files_{index}) "
            f"WHERE ts >= $start AND ts < $end)"
        )
        selects.append(", ".join(f"g{index}.{_quote(out)}" for _, out in columns[group]))
        availability.append(f"g{index}.available_ts")
        if index:
            joins.append(f"LEFT JOIN g{index} ON g{index}.symbol = g0.symbol AND g{index}.ts = g0.ts")
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
    available = availability[0] if len(availability) == 1 else f"greatest({', '.join(availability)})"
    sql = (
        f"WITH {', '.join(ctes)} SELECT g0.symbol, g0.ts, {available} AS available_ts, {', '.join(selects)} "
        f"FROM g0 {' '.join(joins)} ORDER BY g0.symbol, g0.ts"
    )
    frame = reader.query(sql, params)
    empty = sorted(set(symbols) - set(frame["symbol"].unique()))
    if empty:
        raise _missing_symbols_error("features", empty, start_ts, end_ts)
    keys = ["symbol", "ts"]
    labels = None
    if definition is not None:
        labels = frame[keys + ["label_available_ts", *label_columns]].rename(columns={"label_available_ts": "available_ts"})
        frame = frame.drop(columns=["label_available_ts", *label_columns])
    metadata = {
        "feature_versions": dict(versions),
        "label_def_version": definition.version if definition else None,
        "label_source": label_source if definition else None,
        "label_horizons_minutes": list(definition.horizons) if definition else None,
        "symbols": symbols,
        "start": start_ts.isoformat(),
        "end": end_ts.isoformat(),
        "rows": len(frame),
        "files_read": files_read,
        "extraction_ts": pd.Timestamp.now(tz="UTC").isoformat(),
        "lake": str(reader.lake.root),
        "point_in_time": "feature row at ts uses bars stamped <= ts; known at available_ts = ts + 1 min",
    }
    return TrainingDataset(features=frame, labels=labels, metadata=metadata)


# --------------------------------------------------------------------------- inference
def _recent_dates(reader: LakeReader, table, symbol: str, day: dt.date, limit: int) -> list[dt.date]:
    """The newest stored partition dates <= ``day`` (newest first)."""
    dates = [d for d in reader.stored_dates(table, symbol) if d <= day]
    return dates[::-1][:limit]


def _join_group_rows(conn, reader: LakeReader, rows: pd.DataFrame, group: str, version: str, columns) -> pd.DataFrame:
    """Left-join another group's rows at the same (symbol, ts) onto ``rows``; availability = the later."""
    table = feature_table(group, version)
    paths = sorted(
        {str(path) for r in rows.itertuples() if (path := reader.day_file(table, r.symbol, pd.Timestamp(r.date).date())) is not None}
    )
    names = [out for _, out in columns]
    if paths:
        conn.register("wanted_keys", rows[["symbol", "ts"]])
        picked = ", ".join(f"g.{_quote(stored)} AS {_quote(out)}" for stored, out in columns)
        extra = to_frame(conn, f"SELECT g.symbol, g.ts, g.available_ts AS _available_ts, {picked} FROM read_parquet($files) g "
            "SEMI JOIN wanted_keys k ON g.symbol = k.symbol AND g.ts = k.ts",
            {"files": paths},)
        conn.unregister("wanted_keys")
        extra["ts"] = extra["ts"].dt.tz_convert("UTC")
        extra["_available_ts"] = extra["_available_ts"].dt.tz_convert("UTC")
    else:
        extra = pd.DataFrame(columns=["symbol", "ts", "_available_ts", *names])
    merged = rows.merge(extra, on=["symbol", "ts"], how="left")
    merged["available_ts"] = merged[["available_ts", "_available_ts"]].max(axis=1)
    return merged.drop(columns="_available_ts")


def get_features_for_inference(
    feature_groups,
    feature_versions,
    symbols,
    ts,
    mode: str = "latest",
    *,
    settings: PlatformSettings | None = None,
) -> InferenceFeatures:
    """Feature rows for a decision at ``ts``, per symbol.

    * ``exact``: the row stamped exactly ``ts`` (replaying a known bar); symbols without it are
      listed in ``metadata["missing_symbols"]``.
    * ``latest``: the newest row with ``available_ts <= ts`` that is a real bar (not imputed, when
      the first group has an ``is_imputed`` column), searched back over up to
      ``LATEST_LOOKBACK_DAYS`` stored sessions. ``metadata["freshness"][symbol]`` gives its ``ts``,
      ``available_ts`` and ``staleness_seconds`` (``ts`` requested minus the row's ``ts``).
    """
    versions = resolve_feature_versions(feature_groups, feature_versions)
    symbols = normalize_symbols(symbols)
    at = parse_timestamp(ts, name="ts")
    require_choice("mode", mode, INFERENCE_MODES)
    reader = LakeReader(settings)
    columns = _group_columns(versions)
    groups = list(versions.items())
    first_group, first_version = groups[0]
    first_table = feature_table(first_group, first_version)
    real_filter = "AND NOT is_imputed" if "is_imputed" in FEATURE_GROUPS[first_group][first_version].columns else ""
    found: list[pd.DataFrame] = []
    pending = list(symbols)
    searched = 0
    with reader.connect() as conn:
        if mode == "exact":
            files = reader.files(first_table, symbols, [at.date()])
            paths = parquet_list(p for ps in files.values() for p in ps)
            if paths:
                found.append(to_frame(conn, "SELECT * FROM read_parquet($files) WHERE ts = $at", {"files": paths, "at": at}))
        else:
            candidates = {s: _recent_dates(reader, first_table, s, at.date(), LATEST_LOOKBACK_DAYS) for s in symbols}
            depth = 0
            while pending and depth < LATEST_LOOKBACK_DAYS:
                paths = sorted({
                    str(reader.day_file(first_table, s, candidates[s][depth]))
                    for s in pending
                    if depth < len(candidates[s])
                })
                if not paths:
                    break
                searched += len(paths)
                rows = to_frame(conn, f"SELECT * FROM read_parquet($files) WHERE available_ts <= $at {real_filter} "
                    "QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) = 1",
                    {"files": paths, "at": at},)
                found.append(rows)
                pending = [s for s in pending if s not in set(rows["symbol"])]
                depth += 1
        frame = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else pd.DataFrame()
        if frame.empty:
            raise NoDataError(f"no {first_group} {first_version} rows for {', '.join(symbols)} at {at.isoformat()} (mode={mode})")
        frame["ts"] = frame["ts"].dt.tz_convert("UTC")
        frame["available_ts"] = frame["available_ts"].dt.tz_convert("UTC")
        out = frame[["symbol", "date", "ts", "available_ts"] + [stored for stored, _ in columns[first_group]]]
        out = out.rename(columns=dict(columns[first_group]))
        for group, version in groups[1:]:
            out = _join_group_rows(conn, reader, out, group, version, columns[group])
        out = out.drop(columns="date")
    freshness = {
        r.symbol: {
            "ts": r.ts.isoformat(),
            "available_ts": r.available_ts.isoformat(),
            "staleness_seconds": (at - r.ts).total_seconds(),
        }
        for r in out.itertuples()
    }
    metadata = {
        "feature_versions": dict(versions),
        "mode": mode,
        "requested_ts": at.isoformat(),
        "freshness": freshness,
        "missing_symbols": sorted(set(symbols) - set(out["symbol"])),
        "files_searched": searched,
        "extraction_ts": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    return InferenceFeatures(features=out.set_index(["symbol", "ts"]).sort_index(), metadata=metadata)
