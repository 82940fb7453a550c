"""Request and response bodies of the HTTP contract (SPEC §3). The OpenAPI schema comes from these."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    k: int = Field(
        default=DEFAULT_K,
        ge=1,
        le=50,
        strict=True,
        description="How many passages to retrieve: at most the plan's max_k (GET /api/usage; default plan 20).",
    )

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
    user_daily_total: float | None = Field(
        default=None,
        description="What the caller has spent today against the caller's own cap, USD, once this query is "
        "settled (null if it could not be recorded).",
    )
    user_daily_budget: float | None = Field(default=None, description="The caller's daily cap, USD; null: no cap.")
    user_remaining: float | None = Field(
        default=None, description="What is left of the caller's cap today, USD; null: no cap."
    )


class DegradedOut(BaseModel):
    reason: str = Field(
        description="Why the query was reduced: budget_low (the global budget) or user_budget_low (the caller's cap)."
    )
    k: int = Field(description="Passages the answer was generated from.")
    max_completion_tokens: int
    model: str


class MetaOut(BaseModel):
    user_id: str
    rate_limit: RateLimitOut
    cost: CostOut
    cache: Literal["hit", "miss", "off"] = Field(
        default="off",
        description="hit: served from the answer cache (query_cost 0, usage 0 tokens); miss: computed with the "
        "cache on; off: ANSWER_CACHE_TTL is 0.",
    )
    degraded: DegradedOut | None = Field(
        default=None, description="What was reduced to fit the remaining budget; null when nothing was."
    )
    answered: bool = Field(
        default=True,
        description="false: no passage was similar enough to the question (MIN_RELEVANCE); the answer is the "
        'fixed "The rules I have don\'t cover this.", sources are empty and only the embedding was paid.',
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
    max_k: int = Field(description="The most passages (k) a query may ask for on this plan.")
    bucket: BucketOut
    daily_remaining: int
    daily_limit: int
    reset_at: str = Field(description="Next UTC midnight, when the bucket and the daily count reset.")
    today: TodayOut
    budget: BudgetOut
    user_budget: UserBudgetOut
    month: MonthOut | None = Field(default=None, description="The month's global budget; null: none is set.")


class UserBudgetOut(BaseModel):
    """The caller's own limits today."""

    daily_total: float = Field(description="USD spent today against the caller's cap (open queries not included).")
    daily_budget: float | None = Field(description="The caller's daily cap, USD; null: no cap.")
    remaining: float | None = Field(description="What is left of the cap now, USD (open queries held); null: no cap.")
    reset_at: str = Field(description="Next UTC midnight, when the cap resets.")
    in_flight: int = Field(description="The caller's queries being answered right now.")
    max_in_flight: int


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


class MonthOut(BaseModel):
    """The month's global budget (MONTHLY_BUDGET_USD or an operator's override for the month)."""

    month: str = Field(description="The UTC calendar month, YYYY-MM.")
    spent: float = Field(description="USD the month's days have spent (earlier days' open holds included).")
    budget: float = Field(description="The month's budget, USD.")
    percentage: float
    remaining: float = Field(description="USD the month has left.")
    reset_at: str = Field(description="When the next month starts (UTC).")


class MonthForecastOut(BaseModel):
    """When the month's budget runs out at today's current rate."""

    rate_usd_per_hour: float
    runs_out_at: str | None = Field(description="UTC time the month's budget runs out; null when it lasts the month.")
    hours_before_month_end: float


class AdminMonthOut(MonthOut):
    forecast: MonthForecastOut
    override: float | None = Field(description="The month's budget set by an operator, USD, if any.")


class LedgerOut(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: float


class UserLedgerOut(LedgerOut):
    user_id: str
    email: str | None = Field(default=None, description="The user's e-mail as the auth API gave it, if any.")


class ModelLedgerOut(LedgerOut):
    model: str


class ForecastOut(BaseModel):
    """The burn-rate forecast: today's spend rate and when the budget runs out at that rate."""

    rate_usd_per_hour: float = Field(description="Spend over the last hour (or since the day's first spend), per hour.")
    runs_out_at: str | None = Field(
        description="UTC time the budget runs out at this rate; null when it lasts until midnight or nothing is spent."
    )
    hours_before_midnight: float = Field(description="How long before midnight it runs out (0 when it lasts).")


class PauseOut(BaseModel):
    reason: str
    by: str = Field(description="The operator's user id.")
    at: str = Field(description="When (ISO 8601, UTC).")


class BudgetOverrideOut(BaseModel):
    daily_budget_usd: float
    day: str = Field(description="The UTC day it applies to.")
    until: str = Field(description="When the configured budget applies again: the next UTC midnight.")


class MonthOverrideOut(BaseModel):
    monthly_budget_usd: float
    month: str = Field(description="The UTC month it applies to, YYYY-MM.")
    until: str = Field(description="When the configured monthly budget applies again: the next month's start.")


class ControlsOut(BaseModel):
    """The operator's overrides in force (every container applies them within 5 s)."""

    version: int = Field(description="Increases with every change.")
    paused: PauseOut | None = Field(description="Set while queries answer 503 service_paused.")
    budget_override: BudgetOverrideOut | None = Field(description="Today's budget set by an operator, if any.")
    daily_budget: float = Field(description="Today's effective global budget, USD.")
    blocked_users: list[str] = Field(description="User ids whose queries answer 403 user_blocked.")
    month_override: MonthOverrideOut | None = Field(default=None, description="This month's budget set by an operator.")
    monthly_budget: float | None = Field(default=None, description="This month's global budget, USD; null: none.")


class AdminUsageResponse(BaseModel):
    """``GET /api/admin/usage`` (role admin): the whole service's day."""

    day: str
    budget: BudgetOut
    in_flight_reserved: float = Field(description="USD held by queries being answered right now.")
    alerts_sent: list[int]
    forecast: ForecastOut
    models: list[ModelLedgerOut]
    top_users: list[UserLedgerOut]
    overrides: ControlsOut
    month: AdminMonthOut | None = Field(default=None, description="The month's global budget; null: none is set.")


# --- operator routes -----------------------------------------------------------------------------

MAX_BUDGET_OVERRIDE_USD = 1000
MAX_MONTH_OVERRIDE_USD = 31 * MAX_BUDGET_OVERRIDE_USD
MAX_REASON_CHARS = 500
NANO_USD = 1e-9
DEFAULT_AUDIT_LIMIT = 20
MAX_AUDIT_LIMIT = 100


class BudgetOverrideRequest(BaseModel):
    """``PUT /api/admin/budget``: today's global budget until the next UTC midnight, and/or this
    month's until the month ends (at least one of the two)."""

    # "at least one of the two, as a number" in the OpenAPI document too, so that a client (or a
    # fuzzer) reading the schema never takes ``{}`` for a valid request
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "number"}}}
                for name in ("daily_budget_usd", "monthly_budget_usd")
            ]
        },
    )

    monthly_budget_usd: float | None = Field(
        default=None,
        ge=NANO_USD,
        le=MAX_MONTH_OVERRIDE_USD,
        strict=True,
        description=f"USD, from 0.000000001 to {MAX_MONTH_OVERRIDE_USD}: this month's budget until it ends.",
    )
    daily_budget_usd: float | None = Field(
        default=None,
        validate_default=True,
        ge=NANO_USD,
        le=MAX_BUDGET_OVERRIDE_USD,
        strict=True,
        description=f"USD, from 0.000000001 to {MAX_BUDGET_OVERRIDE_USD}; digits past the 9th decimal are dropped.",
    )

    @field_validator("daily_budget_usd")
    @classmethod
    def _one_of_them(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("monthly_budget_usd") is None:
            raise ValueError("give daily_budget_usd, monthly_budget_usd or both")
        return value

    @property
    def nanos(self) -> int | None:
        """The amount as written (the shortest decimal of the parsed number) in whole nano-dollars,
        rounded down like DAILY_BUDGET_USD: a budget is never rounded up."""
        return _nanos(self.daily_budget_usd)

    @property
    def monthly_nanos(self) -> int | None:
        return _nanos(self.monthly_budget_usd)


def _nanos(usd: float | None) -> int | None:
    return None if usd is None else int(Decimal(repr(usd)) * 10**9)


class PauseRequest(BaseModel):
    """``POST /api/admin/pause``."""

    model_config = ConfigDict(extra="ignore")

    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        pattern=NOT_ONLY_BLANKS,
        description="Why (shown in the audit trail and the admin report).",
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _trim(cls, value: Any) -> Any:
        return value.strip(BLANKS) if isinstance(value, str) else value


class AuditOut(BaseModel):
    id: str
    at: str = Field(description="When (ISO 8601, UTC, microseconds).")
    who: str = Field(description="The operator's user id.")
    action: str = Field(description="budget, pause, resume, block, unblock, reset, spend_raw_ids or denied.")
    target: str = Field(description="service, budget, spend export, the user id acted on, or the attempt denied.")
    before: dict[str, Any]
    after: dict[str, Any]
    request_id: str


class OperatorActionResponse(BaseModel):
    """What an operator route did: its audit entry and the controls now in force."""

    audit: AuditOut
    controls: ControlsOut


class AuditResponse(BaseModel):
    """``GET /api/admin/audit``: the latest operator actions, newest first."""

    entries: list[AuditOut]


class SpendRowOut(BaseModel):
    """One row of the spend export: its group key (``day``, ``user`` or ``model``) and its cost."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": "string"}})

    cost_usd: str = Field(description='Exact dollars, every nano-dollar kept ("0.000123456").')


class SpendResponse(BaseModel):
    """``GET /api/admin/spend``: one page of what the books say was spent, per day, user or model."""

    first_day: str = Field(description="from, as asked (UTC day).")
    last_day: str = Field(description="to, as asked (UTC day, inclusive).")
    days: int
    group_by: Literal["day", "user", "model"]
    user_ids: Literal["hashed", "raw"] = Field(
        description="hashed: the first 16 hex digits of the id's SHA-256, as in the logs; "
        "raw: as the auth API gives them (audited)."
    )
    rows: list[SpendRowOut] = Field(
        description='This page: {"day"|"user"|"model": key, "cost_usd": "..."}; days by date, '
        "models by name, users by hashed id."
    )
    total_cost_usd: str = Field(description="Every row of the range (all pages), exact.")
    books_total_usd: str = Field(
        description="The days' budget totals, summed; equal to total_cost_usd once the range's queries have settled."
    )
    next: str | None = Field(description="Pass as ?next= for the following page; null on the last page.")
    audit_id: str | None = Field(description="The audit entry of a raw-id export.")


class ReconciliationModelOut(BaseModel):
    """One model of one day: our books against OpenAI's records (dollars exact, as strings)."""

    model: str
    books_usd: str
    billed_usd: str = Field(description="OpenAI's costs API for the model's line items.")
    difference_usd: str = Field(description="books - billed (negative: the books are below the bill).")
    books_input_tokens: int
    billed_input_tokens: int = Field(description="OpenAI's usage API (cached tokens included).")
    books_output_tokens: int
    billed_output_tokens: int
    books_requests: int
    billed_requests: int


class ReconciliationDayOut(BaseModel):
    """One reconciled UTC day."""

    day: str
    books_usd: str
    billed_usd: str
    difference_usd: str = Field(description="books - billed, the day's.")
    drift_usd: str = Field(description="How far the books are below the bill (0 when they are not).")
    safety_margin_usd: str = Field(description="How far the books are above the bill: what certainty cost.")
    tolerance_usd: str
    drifting: bool = Field(description="drift above the tolerance: reconciliation_drift was raised.")
    alert_sent: bool
    final: bool = Field(description="Reconciled 48 h or more after the day ended: no longer re-run.")
    reconciled_at: str
    models: list[ReconciliationModelOut]


class ReconciliationResponse(BaseModel):
    """``GET /api/admin/reconciliation``: the stored results of the range, by day."""

    first_day: str
    last_day: str
    days: list[ReconciliationDayOut]
    not_reconciled: list[str] = Field(description="Days of the range with no result (yet).")
    drift_usd: str = Field(description="The days' drifts, summed.")
    safety_margin_usd: str = Field(description="The days' safety margins, summed.")


class ErrorResponse(BaseModel):
    """The one error shape (SPEC §3); extra context keys ride along."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    request_id: str
