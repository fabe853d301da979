"""Request and response bodies of the HTTP service, with the names and shapes of the HTTP guide
(seed 003). Fields the guide does not name are our additive extras and say so in their description.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AssetTypeFilter = Literal["stocks", "crypto", "all"]


class RefreshRequest(BaseModel):
    """``POST /data/refresh`` fields, from a JSON body or from query parameters (no body = defaults)."""

    model_config = ConfigDict(extra="forbid")

    days_back: int = Field(30, ge=1, le=365, description="days of history to refresh, 1-365 (calendar days ending at the newest complete day)")
    interval: Literal["1d", "1h"] = Field("1d", description="1d or 1h: the bars the sync result reports (resampled from curated 1-min bars)")
    asset_type: AssetTypeFilter = Field("all", description="stocks, crypto or all")
    async_mode: bool = Field(True, description="true: run in the background and answer at once; false: wait and report per symbol")

    @field_validator("days_back", mode="before")
    @classmethod
    def _not_a_boolean(cls, value):
        """``true`` is an int to pydantic (1 day): refused, as JSON booleans are not day counts."""
        if isinstance(value, bool):
            raise ValueError("days_back must be an integer number of days, not a boolean")
        return value


class PresetRefreshRequest(BaseModel):
    """Optional fields of ``POST /data/refresh/daily|weekly|monthly`` (our extras: the guide sends none)."""

    model_config = ConfigDict(extra="forbid")

    asset_type: AssetTypeFilter = "all"
    interval: Literal["1d", "1h"] = "1d"
    async_mode: bool = True


class AddSymbolRequest(BaseModel):
    """``POST /data/symbols``: ``symbol`` (JSON body or query). ``symbols`` / ``defaults`` are our extras."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = Field(None, description="symbol to add, e.g. NVDA or SOL-USD")
    asset_type: Literal["auto", "stock", "crypto"] = Field("auto", description="auto (crypto pairs such as BTC-USD detected), stock or crypto")
    symbols: list[str] = Field(default_factory=list, max_length=1000, description="extra: several symbols at once")
    defaults: bool = Field(False, description="extra: add the default universe (S&P 500 + top 20 crypto)")


class SymbolAdded(BaseModel):
    message: str = Field(examples=["Symbol NVDA added successfully"])
    symbol: str
    asset_type: Literal["stock", "crypto"]
    already_tracked: bool = Field(False, description="extra: the symbol was tracked before this call")


class SymbolsAdded(BaseModel):
    message: str
    added: list[str] = Field(description="extra: the symbols that were not tracked before")
    total: int = Field(description="extra: symbols tracked now")


class SymbolRemoved(BaseModel):
    message: str = Field(examples=["Symbol NVDA removed successfully"])
    symbol: str


class SymbolList(BaseModel):
    stocks: list[str]
    crypto: list[str]
    total: int = Field(description="number of symbols listed (after the asset_type filter)")


class RefreshStarted(BaseModel):
    message: str = Field(examples=["Data refresh started in background"])
    estimated_duration: str = Field(examples=["140 seconds"])
    symbols_count: int
    status: Literal["started"]
    job_id: str = Field(description="extra: the job whose Dagster runs do the refresh")
    status_url: str = Field(description="extra: poll it for PENDING/RUNNING/SUCCEEDED/FAILED")


class PresetStarted(BaseModel):
    message: str = Field(examples=["Daily refresh started"])
    schedule: str = Field(examples=["Last 7 days"])
    status: Literal["started"]
    job_id: str = Field(description="extra")
    status_url: str = Field(description="extra")
    symbols_count: int = Field(description="extra")


class SymbolRefreshed(BaseModel):
    symbol: str
    success: bool
    rows: int = Field(description="bars of the requested interval in the window")
    date_range: str | None = Field(description="'YYYY-MM-DD to YYYY-MM-DD' of the bars")
    latest_price: float | None
    dq_blocked_days: int = Field(0, description="extra: days stored whose bars failed a blocking DQ error rule")


class SymbolFailed(SymbolRefreshed):
    error: str = Field(description="extra: why the symbol failed")


class RefreshSummary(BaseModel):
    total_symbols: int
    successful: int
    failed: int
    success_rate: float = Field(description="percent, 2 decimals")


class RefreshResultBody(BaseModel):
    success: list[SymbolRefreshed]
    failed: list[SymbolFailed]
    summary: RefreshSummary


class RefreshCompleted(BaseModel):
    message: str = Field(examples=["Data refresh completed"])
    result: RefreshResultBody
    status: Literal["completed"]
    job_id: str = Field(description="extra")
    interval: str = Field(description="extra: the interval of rows/latest_price")
    dagster_run_ids: list[str] = Field(description="extra")
    job_state: str = Field(description="extra: SUCCEEDED, or FAILED when a run failed (a downstream asset, say) though symbols have data")
    errors: list[str] = Field(default_factory=list, description="extra: the job's errors, if any")


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
