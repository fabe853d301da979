"""BatchScoring (design 001, 3.8.2): score a model on the features of a session, store predictions.

    run_batch_scoring(cfg: BatchScoringConfig) -> None

Steps (as the design lists them):

1. **Ensure the pipelines ran for the scoring window** (the session ``scoring_date``):
   ``get_dataset_health`` of each of ``health_datasets`` (default raw_bars, curated_bars and the
   feature groups) as of that date. A RED dataset refuses the run with ``ScoringRefusedError``
   naming the dataset and every reason; YELLOW is scored (``allow_yellow=False`` refuses it too)
   and recorded in the metadata.
2. **Fetch features** for the decision times ``ts`` (default: the session close) with
   ``get_features_for_inference`` (``mode`` exact or latest, ``max_staleness``).
3. **Call the model**: a local Python model (``"example"``, an entry point, a ``.py`` file) or an
   HTTP inference service (``platform_api.scoring.models``).
4. **Store the predictions with metadata** in ``lake/predictions/model=<name>/version=<version>/
   symbol=S/date=D/part.parquet`` (one row per symbol and decision time: prediction, model name
   and version, feature versions, the feature row's ts / available_ts, staleness, run id), as the
   date-partitioned ``predictions`` asset; re-running a date replaces it.

``run_batch_scoring`` materializes the ``predictions`` asset (partition = the scoring date) on the
Dagster instance, so the UI and the schedule (``batch_scoring_schedule``, after the daily
ingestion) show the same runs; ``score_batch`` does the work without Dagster and returns it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import dagster as dg
import pandas as pd

from platform_api.errors import InvalidOptionError, NoDataError, PlatformAPIError
from platform_api.inputs import parse_timestamps, require_choice, resolve_feature_versions
from platform_api.lake_reader import LakeReader
from platform_api.quality import RED, YELLOW, get_dataset_health
from platform_api.retrieval import INFERENCE_MODES, STALE_ACTIONS, get_features_for_inference
from platform_api.scoring.models import load_model
from platform_api.instance import get_instance
from platform_api.training.dataset_builder import _project_definitions, raise_run_failure
from platform_assets.calendars import STOCKS, is_session, session_bounds, sessions_in_range
from platform_assets.universe import tracked_symbols
from resources.dataset_store import NAME_PATTERN
from resources.lake import ParquetLake, Table
from resources.settings import PlatformSettings, get_settings
from resources.validation import normalize_symbols, parse_date, parse_half_open_dates

PREDICTIONS_ASSET = "predictions"
BATCH_SCORING_JOB = "batch_scoring"
DEFAULT_GROUPS = ("bar_features",)


class ScoringRefusedError(PlatformAPIError):
    """The scoring window is not fit to score (a RED dataset, or YELLOW with allow_yellow=False)."""


def predictions_table(model_name: str, model_version: str) -> Table:
    for what, value in (("model name", model_name), ("model version", model_version)):
        if not NAME_PATTERN.fullmatch(value or ""):
            raise InvalidOptionError(f"invalid {what} {value!r}: letters, digits, '_', '.', '-' only")
    return Table("predictions", (("model", model_name), ("version", model_version)))


@dataclass
class BatchScoringConfig:
    """What to score, where and with which model (all fields have defaults: the offline default
    scores the example model on every tracked stock symbol at the latest session's close).

    ``model``: "example", "package.module:attr", "/path/model.py:attr" or an http(s) URL.
    ``scoring_date``: the session (default: the latest XNYS session up to today, New York).
    ``ts``: decision times inside that session (UTC; naive = UTC); default its close.
    ``symbols``: default every tracked stock symbol. ``mode``/``max_staleness``/``on_stale`` as
    ``get_features_for_inference``. ``model_name``/``model_version`` override the model's own.
    ``health_datasets``: datasets whose health gates the run (default raw_bars, curated_bars and
    the feature groups). ``allow_yellow``: score a YELLOW window (default True).
    """

    model: str = "example"
    feature_groups: list[str] = field(default_factory=lambda: list(DEFAULT_GROUPS))
    feature_versions: dict[str, str] = field(default_factory=lambda: {"bar_features": "v1"})
    scoring_date: dt.date | str | None = None
    ts: list | None = None
    symbols: list[str] | None = None
    mode: str = "exact"
    max_staleness: str | None = "15min"
    on_stale: str = "raise"
    model_name: str | None = None
    model_version: str | None = None
    health_datasets: list[str] | None = None
    allow_yellow: bool = True
    timeout_s: float = 30.0
    batch_size: int = 1000

    def to_dict(self) -> dict:
        out = asdict(self)
        out["scoring_date"] = self.window().isoformat()
        out["ts"] = [t.isoformat() for t in self.decision_times()] if self.ts is not None else None
        out["feature_versions"] = resolve_feature_versions(self.feature_groups, self.feature_versions)
        out["feature_groups"] = list(out["feature_versions"])
        return out

    def window(self) -> dt.date:
        """The scoring session (validated)."""
        if self.scoring_date is None:
            today = pd.Timestamp.now(tz=STOCKS.timezone).date()
            return sessions_in_range(STOCKS, today - dt.timedelta(days=10), today)[-1]
        day = parse_date(self.scoring_date, name="scoring_date")
        if not is_session(STOCKS, day):
            raise InvalidOptionError(f"scoring_date {day} is not an XNYS trading session")
        return day

    def decision_times(self) -> list[pd.Timestamp]:
        day = self.window()
        open_, close = session_bounds(STOCKS, day)
        if self.ts is None:
            return [close]
        stamps, _ = parse_timestamps(self.ts if isinstance(self.ts, (list, tuple)) else [self.ts], name="ts")
        outside = [t.isoformat() for t in stamps if not (open_ < t <= close)]
        if outside:
            raise InvalidOptionError(f"ts {', '.join(outside)} outside the {day} session ({open_.isoformat()}, {close.isoformat()}]")
        return stamps


@dataclass
class ScoringResult:
    """What ``score_batch`` stored: the predictions frame and the run's metadata."""

    predictions: pd.DataFrame
    metadata: dict


def check_health(datasets: list[str], day: dt.date, *, allow_yellow: bool, settings: PlatformSettings) -> dict[str, dict]:
    """Health of each dataset as of ``day``; raises ``ScoringRefusedError`` naming every RED
    (or, with ``allow_yellow=False``, YELLOW) dataset and its reasons."""
    statuses, refused = {}, []
    for name in datasets:
        health = get_dataset_health(name, day, settings=settings)
        statuses[name] = {"status": health.status, "reasons": health.reasons}
        if health.status == RED or (health.status == YELLOW and not allow_yellow):
            refused.append(f"{name} is {health.status}: {'; '.join(health.reasons)}")
    if refused:
        raise ScoringRefusedError(f"refusing to score the {day} session: " + " | ".join(refused)
                                  + " (re-run ingestion/backfill for it, e.g. `mdp backfill`, then score again)")
    return statuses


def score_batch(
    cfg: BatchScoringConfig, *, settings: PlatformSettings | None = None, instance: dg.DagsterInstance | None = None,
    run_id: str | None = None, scoring_date: dt.date | None = None,
) -> ScoringResult:
    """The four steps of the module doc without Dagster; returns what was stored."""
    settings = settings or get_settings()
    if scoring_date is not None:
        cfg = BatchScoringConfig(**{**asdict(cfg), "scoring_date": scoring_date})
    day = cfg.window()
    decisions = cfg.decision_times()
    versions = resolve_feature_versions(cfg.feature_groups, cfg.feature_versions)
    require_choice("mode", cfg.mode, INFERENCE_MODES)
    require_choice("on_stale", cfg.on_stale, STALE_ACTIONS)
    if cfg.symbols:
        symbols = normalize_symbols(cfg.symbols)
    elif instance is not None:
        symbols = tracked_symbols(instance, STOCKS)
        if not symbols:
            raise NoDataError("no tracked stock symbols to score (mdp symbols add ...)")
    else:
        raise InvalidOptionError("give symbols, or an instance whose tracked symbols are scored")
    model = load_model(cfg.model, timeout_s=cfg.timeout_s, batch_size=cfg.batch_size)
    health = check_health(cfg.health_datasets or ["raw_bars", "curated_bars", *versions], day, allow_yellow=cfg.allow_yellow, settings=settings)

    inference = get_features_for_inference(list(versions), versions, symbols, decisions, mode=cfg.mode, max_staleness=cfg.max_staleness,
                                           on_stale=cfg.on_stale, settings=settings)
    rows = inference.features
    features = rows.drop(columns=["as_of", "available_ts"])
    predicted = model.predict(features)
    if len(predicted) != len(rows):
        raise InvalidOptionError(f"model {model.spec} returned {len(predicted)} predictions for {len(rows)} rows")
    name, version = cfg.model_name or model.name, cfg.model_version or model.version
    table = predictions_table(name, version)
    scored_at = pd.Timestamp.now(tz="UTC")
    out = rows.reset_index()[["symbol", "ts", "as_of", "available_ts"]].copy()
    out["prediction"] = predicted
    out["model_name"], out["model_version"], out["model_spec"] = name, version, model.spec
    out["feature_versions"] = json.dumps(versions, sort_keys=True)
    out["mode"] = cfg.mode
    out["staleness_seconds"] = (out["as_of"] - out["ts"]).dt.total_seconds()
    out["scoring_date"] = day
    out["scored_at"], out["run_id"] = scored_at, run_id or ""
    out = out.sort_values(["symbol", "as_of"], kind="stable").reset_index(drop=True)
    lake = ParquetLake(base_path=str(settings.base_path), fsync=settings.lake_fsync)
    for symbol, part in out.groupby("symbol", sort=True):
        lake.write_partition(table, symbol, day, part.reset_index(drop=True))
    scored = sorted(out["symbol"].unique())
    metadata = {
        "scoring_date": day.isoformat(), "decision_times": [t.isoformat() for t in decisions], "model_name": name, "model_version": version,
        "model_spec": model.spec, "feature_versions": versions, "mode": cfg.mode, "symbols_requested": len(symbols),
        "symbols_scored": len(scored), "missing": [list(m) for m in inference.metadata["missing"]], "rows": len(out),
        "health": health, "max_staleness_seconds": float(out["staleness_seconds"].max()) if len(out) else None,
        "freshness": inference.metadata["freshness"], "table": str(table), "scored_at": scored_at.isoformat(),
    }
    return ScoringResult(predictions=out, metadata=metadata)


def get_predictions(model_name: str, model_version: str, start, end, symbols=None, *, settings: PlatformSettings | None = None) -> pd.DataFrame:
    """Stored predictions of one model version for the sessions of ``[start, end)`` (dates)."""
    settings = settings or get_settings()
    first, last = parse_half_open_dates(start, end)
    table = predictions_table(model_name, model_version)
    reader = LakeReader(settings)
    root = reader.lake.table_dir(table)
    stored = sorted(p.name[7:] for p in root.glob("symbol=*")) if root.is_dir() else []
    wanted = normalize_symbols(symbols) if symbols else stored
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    paths = [p for ps in reader.files(table, wanted, days).values() for p in ps]
    reader.release()
    if not paths:
        raise NoDataError(f"no predictions of {model_name} {model_version} for [{first}, {last + dt.timedelta(days=1)})")
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return frame[(frame["scoring_date"] >= first) & (frame["scoring_date"] <= last)].sort_values(["symbol", "as_of"]).reset_index(drop=True)


def run_batch_scoring(
    cfg: BatchScoringConfig, *, instance: dg.DagsterInstance | None = None, defs: dg.Definitions | None = None,
    settings: PlatformSettings | None = None,
) -> None:
    """Design 3.8.2: materialize the ``predictions`` asset for ``cfg.scoring_date`` on the Dagster
    instance (steps in the module doc). Raises ``ScoringRefusedError`` for a RED window, the
    API's error types for bad input or missing data, ``RuntimeError`` for other failures."""
    config = cfg.to_dict()  # validates before anything runs
    load_model(cfg.model, timeout_s=cfg.timeout_s, batch_size=cfg.batch_size)
    day = config.pop("scoring_date")
    instance = instance or get_instance()
    defs = defs or _project_definitions(settings)
    result = defs.resolve_job_def(BATCH_SCORING_JOB).execute_in_process(
        instance=instance, partition_key=day, raise_on_error=False, run_config={"ops": {PREDICTIONS_ASSET: {"config": config}}},
    )
    if not result.success:
        raise_run_failure(result, f"batch scoring of {day}", extra=(ScoringRefusedError,))
    return None
