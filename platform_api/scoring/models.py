"""Model clients for batch scoring: a local Python model or an HTTP inference service.

``load_model(spec)`` understands:

* ``"example"``: the shipped ``ExampleMeanReversionModel`` (the offline default);
* ``"package.module:attr"``: an importable entry point;
* ``"/path/to/model.py:attr"`` (or a relative ``.py`` path): a model file;
* ``"http://host:port/path"`` / ``"https://..."``: an HTTP inference service.

A Python ``attr`` may be a class (instantiated without arguments), an object with
``predict(frame)``, or a plain function ``f(frame)``; ``name`` / ``version`` attributes are used
when present. ``predict`` gets the feature rows (index ``(symbol, ts)``, one column per feature)
and returns one number per row.

HTTP protocol (TF Serving / KServe v1 style, JSON)::

    POST <url>   {"model": name, "columns": [...], "instances": [{"symbol": .., "ts": .., <feature>: value, ...}, ...]}
    200          {"predictions": [float, ...], "model_name": "...", "model_version": "..."}   (names optional)

NaN features are sent as ``null``. Rows go in batches of ``batch_size``; connection errors and
5xx answers are retried (3 attempts, exponential backoff), anything else fails with an
``ModelInferenceError`` naming the URL (without its query string) and the status.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import requests

from platform_api.errors import InvalidOptionError
from platform_api.scoring.example_model import ExampleMeanReversionModel

EXAMPLE_MODEL = "example"
HTTP_ATTEMPTS = 3


class ModelInferenceError(RuntimeError):
    """The model could not score the rows (bad answer, HTTP error, wrong number of predictions)."""


def redact_url(url: str) -> str:
    """The URL without credentials and query string (they may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PythonModel:
    """A local model object or function behind one ``predict``."""

    def __init__(self, target, spec: str):
        self.spec = spec
        self._target = target() if isinstance(target, type) else target
        self.name = str(getattr(self._target, "name", None) or getattr(target, "__name__", "model"))
        self.version = str(getattr(self._target, "version", None) or "unversioned")

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        fn = getattr(self._target, "predict", None) or self._target
        if not callable(fn):
            raise ModelInferenceError(f"model {self.spec!r} has no predict() and is not callable")
        return np.asarray(fn(features), dtype="float64").reshape(-1)


class HttpModel:
    """An inference service reached by POSTing feature rows as JSON."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, batch_size: int = 1000, name: str | None = None):
        self.url, self.timeout_s, self.batch_size = url, timeout_s, batch_size
        self.spec = redact_url(url)
        path = re.sub(r"[^A-Za-z0-9_.\-]+", "_", urlsplit(url).path.strip("/")).strip("_.-")
        self.name = name or path or "http_model"
        self.version = "unversioned"

    def _post(self, payload: dict) -> dict:
        delay = 0.2
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                response = requests.post(self.url, json=payload, timeout=self.timeout_s)
            except requests.RequestException as error:
                if attempt == HTTP_ATTEMPTS:
                    raise ModelInferenceError(f"inference service {self.spec} unreachable after {attempt} attempts: {type(error).__name__}") from None
            else:
                if response.status_code < 500 or attempt == HTTP_ATTEMPTS:
                    if response.status_code != 200:
                        raise ModelInferenceError(f"inference service {self.spec} answered HTTP {response.status_code}: {response.text[:200]}")
                    try:
                        return response.json()
                    except ValueError:
                        raise ModelInferenceError(f"inference service {self.spec} answered non-JSON: {response.text[:200]}") from None
            time.sleep(delay)
            delay *= 2
        raise ModelInferenceError(f"inference service {self.spec}: no answer")  # not reached

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        rows = features.reset_index()
        rows["ts"] = rows["ts"].map(lambda t: t.isoformat())
        columns = list(features.columns)
        out: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows.iloc[start : start + self.batch_size]
            instances = [{k: _json_value(v) for k, v in record.items()} for record in chunk[["symbol", "ts", *columns]].to_dict("records")]
            answer = self._post({"model": self.name, "columns": columns, "instances": instances})
            predictions = answer.get("predictions") if isinstance(answer, dict) else None
            if not isinstance(predictions, list) or len(predictions) != len(chunk):
                got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
                raise ModelInferenceError(f"inference service {self.spec} returned {got} predictions for {len(chunk)} rows")
            self.name = str(answer.get("model_name") or self.name)
            self.version = str(answer.get("model_version") or self.version)
            out += [float("nan") if p is None else float(p) for p in predictions]
        return np.asarray(out, dtype="float64")


def _json_value(value):
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value


def _load_attr(spec: str):
    target, _, attr = spec.rpartition(":")
    if not target or not attr.isidentifier():
        raise InvalidOptionError(f"invalid model {spec!r}: expected 'example', 'package.module:attr', '/path/model.py:attr' or an http(s) URL")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise InvalidOptionError(f"model file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"mdp_model_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise InvalidOptionError(f"model module {target!r} cannot be imported: {error}") from error
    if not hasattr(module, attr):
        raise InvalidOptionError(f"model {spec!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)


def load_model(spec: str, *, timeout_s: float = 30.0, batch_size: int = 1000):
    """The model behind ``spec`` (see the module doc); raises ``InvalidOptionError`` for a bad spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidOptionError(f"invalid model {spec!r}: give 'example', an entry point, a .py file or a URL")
    spec = spec.strip()
    if spec == EXAMPLE_MODEL:
        return PythonModel(ExampleMeanReversionModel, spec)
    if spec.startswith(("http://", "https://")):
        return HttpModel(spec, timeout_s=timeout_s, batch_size=batch_size)
    return PythonModel(_load_attr(spec), spec)
