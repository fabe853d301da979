"""Great Expectations (1.x) as the execution engine for rules that have an expectation.

Runs on in-memory DataFrames through an *ephemeral* data context: no GX project is written to
disk, analytics are switched off (``GX_ANALYTICS_ENABLED=false``) and progress bars are disabled.
One context per process; one suite per rule list, validated once per batch of partitions, so the
fixed cost of a validation (tens of ms) is paid per batch, not per (symbol, date).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd

from platform_assets.quality.rules import Rule

_LOCK = threading.Lock()
_RUNNER: "GXRunner | None" = None
RESULT_FORMAT = {"result_format": "COMPLETE", "partial_unexpected_count": 0, "return_unexpected_index_query": False}


class GXRunner:
    def __init__(self):
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        import great_expectations as gx
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

        self._gx = gx
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False), analytics_enabled=False)
        self._context = gx.get_context(mode="ephemeral", project_config=config)  # in memory: no docs site, no files
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas("platform_dq")
        self._batch_definition = source.add_dataframe_asset("partitions").add_batch_definition_whole_dataframe("whole")
        self._suites: dict[tuple, object] = {}

    def _suite(self, rules: Sequence[Rule]):
        key = tuple(rule.model_dump_json() for rule in rules)
        if key not in self._suites:
            suite = self._gx.ExpectationSuite(name=f"platform_dq_{len(self._suites)}")
            for rule in rules:
                expectation = rule.gx_expectation()
                expectation.meta = {"rule": rule.name}
                suite.add_expectation(expectation)
            self._suites[key] = suite
        return self._suites[key]

    def failing_rows(self, rules: Sequence[Rule], frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Boolean failing-row mask per rule name, computed by GX over ``frame`` (RangeIndex)."""
        if not rules:
            return {}
        columns = list(dict.fromkeys(column for rule in rules for column in rule.columns()))
        # Only the columns the expectations read, strings as categoricals: GX's pandas engine copies
        # and hashes the frame per metric, and object columns make that ~5x slower (same results).
        data = frame[columns].copy()
        for column in columns:
            if data[column].dtype == object:
                data[column] = data[column].astype("category")
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(self._suite(rules), result_format=RESULT_FORMAT)
        masks = {}
        for item in result.results:
            name = item.expectation_config.meta["rule"]
            if item.exception_info and item.exception_info.get("raised_exception"):
                raise RuntimeError(f"Great Expectations failed on rule {name!r}: {item.exception_info.get('exception_message')}")
            mask = np.zeros(len(frame), dtype=bool)
            indices = item.result.get("unexpected_index_list") or []
            if indices:
                mask[np.asarray(indices, dtype=np.int64)] = True
            masks[name] = mask
        return masks


def gx_runner() -> GXRunner:
    """The process-wide GX runner (created on first use; GX import costs about a second)."""
    global _RUNNER
    with _LOCK:
        if _RUNNER is None:
            _RUNNER = GXRunner()
        return _RUNNER
