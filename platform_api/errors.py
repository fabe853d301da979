"""Exceptions of the consumer API: one type per way a request can be wrong (all ``ValueError``s).

=============================  ==============================================================
``InvalidSymbolError``         a symbol fails validation (path separators, bad characters ...)
``InvalidDateRangeError``      a date cannot be parsed, or start >= end / start > end
``UnknownSymbolError``         a valid symbol is not in the tracked universe
``UnknownDatasetError``        no dataset of that name (see ``list_datasets()``)
``UnknownFeatureGroupError``   no feature group of that name (see ``list_feature_groups()``)
``UnknownFeatureVersionError`` the group exists, the version does not
``UnknownLabelDefinitionError`` no label definition of that version
``InvalidOptionError``         an option value is out of its allowed set or range
``NoDataError``                the request is valid but nothing is stored for it
``StaleDataError``             (a ``NoDataError``) the newest row is older than ``max_staleness``
``IncompleteCoverageError``    (a ``NoDataError``) ``strict=True`` and sessions are missing
``UnknownJobError``            no ingestion/backfill job with that id
=============================  ==============================================================

Every message names the offending value and, where it helps, what is allowed.
"""

from __future__ import annotations

from platform_assets.universe import UnknownSymbolError
from resources.validation import InvalidDateRangeError, InvalidInputError, InvalidSymbolError


class PlatformAPIError(InvalidInputError):
    """Base class of the API's own errors (a ``ValueError``)."""


class UnknownDatasetError(PlatformAPIError):
    """No dataset of that name."""


class UnknownFeatureGroupError(PlatformAPIError):
    """No feature group of that name."""


class UnknownFeatureVersionError(PlatformAPIError):
    """The feature group has no such version."""


class UnknownLabelDefinitionError(PlatformAPIError):
    """No label definition of that version."""


class InvalidOptionError(PlatformAPIError):
    """An option is outside its allowed values."""


class NoDataError(PlatformAPIError, LookupError):
    """The request is valid but no stored data matches it."""


class StaleDataError(NoDataError):
    """The newest row known at the decision time is older than the allowed staleness."""


class IncompleteCoverageError(NoDataError):
    """A strict training pull found expected sessions without rows (the message lists them)."""


class UnknownJobError(PlatformAPIError, LookupError):
    """No job with that id on this instance."""


__all__ = [
    "IncompleteCoverageError",
    "InvalidDateRangeError",
    "InvalidInputError",
    "InvalidOptionError",
    "InvalidSymbolError",
    "NoDataError",
    "PlatformAPIError",
    "StaleDataError",
    "UnknownDatasetError",
    "UnknownFeatureGroupError",
    "UnknownFeatureVersionError",
    "UnknownJobError",
    "UnknownLabelDefinitionError",
    "UnknownSymbolError",
]
