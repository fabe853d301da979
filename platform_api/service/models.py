"""Request and response bodies of the HTTP service (validated by pydantic; shown in the OpenAPI page)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AssetTypeFilter = Literal["stocks", "crypto", "all"]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days_back: int = Field(30, ge=1, le=365, description="calendar days back from today (UTC), 1-365")
    interval: Literal["1d", "1h"] = Field("1d", description="bar interval needed; 1-min bars are ingested and resampled on read")
    asset_type: AssetTypeFilter = "all"
    async_mode: bool = Field(True, description="true: answer at once with the job id to poll; false: wait for the runs")


class PresetRefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asset_type: AssetTypeFilter = "all"
    async_mode: bool = True


class AddSymbolsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(default_factory=list, max_length=1000, description="e.g. [\"AAPL\", \"BTC-USD\"]")
    asset_type: Literal["auto", "stock", "crypto"] = Field("auto", description="auto: -USD/-USDT/... pairs are crypto")
    defaults: bool = Field(False, description="also add the repo's default universe")


class SymbolInfo(BaseModel):
    symbol: str
    asset_type: str
    market: str
    added_at: str | None = None


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    state: str
    submitted_at: str
    status_url: str
    dagster_run_ids: list[str] = []
    dagster_runs_tag: str = Field(description="the job's runs in the Dagster UI: filter runs by this tag")


class SymbolResult(BaseModel):
    symbol: str
    status: Literal["success", "failed"]
    expected_days: int
    stored_days: int
    error: str | None = None


class RefreshSummary(BaseModel):
    total: int
    success: int
    failed: int
    success_rate: float


class RefreshResult(BaseModel):
    job_id: str
    state: str
    start: str
    end: str
    results: list[SymbolResult]
    summary: RefreshSummary
    dagster_run_ids: list[str]


class JobStatusBody(BaseModel):
    job_id: str
    kind: str
    state: str
    start_ts: str | None
    end_ts: str | None
    source: str | None
    dataset: str | None
    params: dict
    summary: dict
    dagster_run_ids: list[str]
