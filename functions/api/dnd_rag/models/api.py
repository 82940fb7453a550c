"""Request and response bodies of the HTTP contract (SPEC §3). The OpenAPI schema comes from these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dnd_rag import SERVICE_NAME, __version__

DEFAULT_K = 15
# What "trimming" removes: ASCII blanks only, so the published schema (a JSON Schema pattern)
# and the server agree exactly on which questions are empty.
BLANKS = " \t\n\r\f\v"
NOT_ONLY_BLANKS = r"[^ \t\n\r\f\v]"


class QueryRequest(BaseModel):
    """``POST /api/query`` body. Unknown fields are ignored; the question is trimmed first."""

    model_config = ConfigDict(extra="ignore", strict=False)

    question: str = Field(
        min_length=1,
        pattern=NOT_ONLY_BLANKS,
        description="The rules question, 1..MAX_QUESTION_CHARS after trimming spaces, tabs and line breaks.",
    )
    debug: bool = Field(default=False, strict=True, description="Include retrieval scores and timings.")
    k: int = Field(default=DEFAULT_K, ge=1, le=50, strict=True, description="How many passages to retrieve.")

    @field_validator("k", mode="before")
    @classmethod
    def _integral_numbers_only(cls, value: Any) -> Any:
        # JSON Schema counts 34.0 as an integer, so the API does too; "34", true and 2.5 stay wrong.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("question", mode="before")
    @classmethod
    def _trim(cls, value: Any) -> Any:
        return value.strip(BLANKS) if isinstance(value, str) else value


class HealthResponse(BaseModel):
    status: str = "ok"
    service: str = SERVICE_NAME
    version: str = __version__


class SourceOut(BaseModel):
    id: str
    source: str
    score: float = Field(description="Cosine similarity to the question (or to an entity it compares), 0..1.")
    collection: str | None = Field(default=None, description="The Chroma collection (often: the book).")
    page: int | None = Field(default=None, description="The page, when the collection's metadata has one.")
    section: str | None = Field(default=None, description="The section heading, when the metadata has one.")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    model: str


class RateLimitOut(BaseModel):
    remaining_burst: int
    daily_remaining: int
    refill_rate: float


class CostOut(BaseModel):
    query_cost: float
    daily_total: float | None = Field(
        description="Today's global spend in USD once this query is settled (null if it could not be recorded)."
    )
    daily_budget: float


class DegradedOut(BaseModel):
    reason: str = Field(description="Why the query was reduced: budget_low.")
    k: int = Field(description="Passages the answer was generated from.")
    max_completion_tokens: int
    model: str


class MetaOut(BaseModel):
    user_id: str
    rate_limit: RateLimitOut
    cost: CostOut
    cache: str = Field(default="off", description="hit, miss, or off (the answer cache is not enabled).")
    degraded: DegradedOut | None = Field(
        default=None, description="What was reduced to fit the remaining budget; null when nothing was."
    )


class QueryResponse(BaseModel):
    answer: str
    sources: list[SourceOut]
    diagnostics: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    usage: UsageOut
    meta: MetaOut


class BucketOut(BaseModel):
    remaining_burst: int
    capacity: int
    refill_rate: float
    retry_after: int = Field(description="Seconds until the next request is allowed; 0 when one is.")


class UsageResponse(BaseModel):
    """``GET /api/usage``: the caller's standing, consuming nothing."""

    user_id: str
    plan: str
    bucket: BucketOut
    daily_remaining: int
    daily_limit: int
    reset_at: str = Field(description="Next UTC midnight, when the bucket and the daily count reset.")
    today: TodayOut
    budget: BudgetOut


class TodayOut(BaseModel):
    requests: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cost: float = Field(default=0.0, description="USD")


class BudgetOut(BaseModel):
    daily_total: float
    daily_budget: float
    percentage: float


class LedgerOut(BaseModel):
    name: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: float


class ForecastOut(BaseModel):
    """The burn-rate forecast: today's spend rate and when the budget runs out at that rate."""

    rate_usd_per_hour: float = Field(description="Spend over the last hour (or since the day's first spend), per hour.")
    runs_out_at: str | None = Field(
        description="UTC time the budget runs out at this rate; null when it lasts until midnight or nothing is spent."
    )
    hours_before_midnight: float = Field(description="How long before midnight it runs out (0 when it lasts).")


class AdminUsageResponse(BaseModel):
    """``GET /api/admin/usage`` (role admin): the whole service's day."""

    day: str
    budget: BudgetOut
    in_flight_reserved: float = Field(description="USD held by queries being answered right now.")
    alerts_sent: list[int]
    forecast: ForecastOut
    models: list[LedgerOut]
    top_users: list[LedgerOut]


class ErrorResponse(BaseModel):
    """The one error shape (SPEC §3); extra context keys ride along."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    request_id: str
