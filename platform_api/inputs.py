"""Parsing and validating the consumer API's arguments (symbols, times, versions, options).

Range convention of the whole platform: a time range is half-open ``[start, end)`` in UTC. Naive
timestamps are UTC; a bare date is that date's midnight UTC, so ``end="2024-11-19"`` stops before
the 2024-11-19 session. Numbers are refused as times (``pd.Timestamp(20241118)`` would silently be
epoch nanoseconds in 1970).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from platform_api.errors import InvalidDateRangeError, InvalidOptionError, UnknownFeatureGroupError, UnknownFeatureVersionError
from platform_assets.features.registry import FEATURE_GROUPS
from resources.validation import InvalidInputError, normalize_symbols, validate_version

__all__ = [
    "normalize_symbols", "parse_timestamp", "parse_timestamps", "parse_time_range", "parse_duration",
    "resolve_feature_versions", "require_choice", "RANGE_CONVENTION",
]
RANGE_CONVENTION = "half-open [start, end) in UTC; naive = UTC; a bare date = its midnight UTC"


def parse_timestamp(value: object, *, name: str) -> pd.Timestamp:
    """A point in time as a UTC ``Timestamp``; naive values are UTC, a bare date is its midnight UTC."""
    if isinstance(value, (bool, int, float, np.integer, np.floating)) or value is None:
        raise InvalidDateRangeError(f"invalid {name} {value!r}: expected a date or ISO timestamp (numbers are not accepted as times)")
    try:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            stamp = pd.Timestamp(value.isoformat())
        else:
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise InvalidDateRangeError(f"invalid {name} {value!r}: expected YYYY-MM-DD or an ISO timestamp") from error
    if stamp is pd.NaT:
        raise InvalidDateRangeError(f"invalid {name} {value!r}: expected a date or timestamp")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_timestamps(value: object, *, name: str) -> tuple[list[pd.Timestamp], bool]:
    """One or many points in time (a list, tuple, Series, DatetimeIndex or array) as UTC
    ``Timestamp``s, and whether many were given. Duplicates are kept once, order is sorted."""
    if isinstance(value, (list, tuple, set, pd.Series, pd.Index, np.ndarray)):
        stamps = sorted({parse_timestamp(v, name=name) for v in value})
        if not stamps:
            raise InvalidDateRangeError(f"no {name} given")
        return stamps, True
    return [parse_timestamp(value, name=name)], False


def parse_duration(value: object, *, name: str) -> pd.Timedelta | None:
    """A non-negative duration: a ``Timedelta``/``timedelta``, seconds (number) or a string such as
    ``"15min"``; ``None`` stays ``None`` (no limit)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        duration = pd.Timedelta(seconds=float(value)) if isinstance(value, (int, float, np.number)) else pd.Timedelta(value)
    except (ValueError, TypeError) as error:
        raise InvalidOptionError(f"invalid {name} {value!r}: expected a duration such as '15min' or seconds") from error
    if duration is pd.NaT or duration < pd.Timedelta(0):
        raise InvalidOptionError(f"invalid {name} {value!r}: must be a non-negative duration")
    return duration


def parse_time_range(start: object, end: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A half-open ``[start, end)`` interval in UTC; ``start >= end`` is an error.

    A bare date means midnight UTC, so ``start="2024-11-18", end="2024-11-19"`` is the whole
    2024-11-18 session.
    """
    start_ts, end_ts = parse_timestamp(start, name="start"), parse_timestamp(end, name="end")
    if start_ts >= end_ts:
        raise InvalidDateRangeError(f"start {start_ts.isoformat()} must be before end {end_ts.isoformat()} (the range is [start, end))")
    return start_ts, end_ts


def require_choice(name: str, value: object, allowed: Iterable[object]) -> object:
    allowed = list(allowed)
    if value not in allowed:
        raise InvalidOptionError(f"invalid {name} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def resolve_feature_versions(feature_groups: Iterable[str] | str, feature_versions: Mapping[str, str] | Iterable[str] | str) -> dict[str, str]:
    """``{group: version}`` for the requested groups, every one registered.

    ``feature_versions`` is one version for all groups (``"v1"``), a list parallel to the groups,
    or a mapping group -> version.
    """
    groups = [feature_groups] if isinstance(feature_groups, str) else list(feature_groups)
    if not groups:
        raise InvalidOptionError("no feature groups given")
    if feature_versions is None or not isinstance(feature_versions, (str, Mapping, Iterable)):
        raise InvalidOptionError(
            f"feature_versions must name a version per group, e.g. {{{groups[0]!r}: 'v1'}} or 'v1' for all; got {feature_versions!r}"
        )
    if isinstance(feature_versions, str):
        versions = dict.fromkeys(groups, feature_versions)
    elif isinstance(feature_versions, Mapping):
        versions = {group: feature_versions.get(group) for group in groups}
    else:
        listed = list(feature_versions)
        if len(listed) != len(groups):
            raise InvalidOptionError(f"{len(groups)} feature groups but {len(listed)} versions; give one version per group")
        versions = dict(zip(groups, listed))
    resolved: dict[str, str] = {}
    for group, version in versions.items():
        if group not in FEATURE_GROUPS:
            raise UnknownFeatureGroupError(f"unknown feature group {group!r}; registered: {', '.join(sorted(FEATURE_GROUPS))}")
        if version is None:
            raise InvalidOptionError(f"no version given for feature group {group!r}")
        try:
            validate_version(version)
        except InvalidInputError as error:
            raise UnknownFeatureVersionError(str(error)) from error
        if version not in FEATURE_GROUPS[group]:
            raise UnknownFeatureVersionError(
                f"unknown version {version!r} of feature group {group!r}; registered: {', '.join(sorted(FEATURE_GROUPS[group]))}"
            )
        resolved[group] = version
    return resolved


def is_single_time(value: object) -> bool:
    """Whether ``value`` is one point in time (a datetime, date, Timestamp or a string that parses
    as one): never a symbol or a list of symbols."""
    if isinstance(value, (dt.date, pd.Timestamp, np.datetime64)):
        return True
    if isinstance(value, str):
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            return False
        return True
    return False


def design_document_order(symbols: object, *times: object) -> tuple[object, ...]:
    """Seed 001 lists the feature functions with the symbols last (``get_features_for_training(
    feature_group, version, start, end, symbols)``, ``get_features_for_inference(feature_group,
    version, ts, symbols)``); contract 000, which they follow, puts the symbols before the times. A
    call in 001's order has a time where 000 has the symbols (a symbol never parses as a time), so
    it is read in that order: returns ``(symbols, *times)`` in 000's order either way."""
    if is_single_time(symbols) and times and not is_single_time(times[-1]):
        return (times[-1], symbols, *times[:-1])
    return (symbols, *times)
