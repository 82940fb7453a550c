"""HTTP routes: thin adapters from the HTTP contract (SPEC §3) to the logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.container import Container
from dnd_rag.errors import InvalidRequestError, PayloadTooLargeError
from dnd_rag.handlers.error_responses import register_error_handlers
from dnd_rag.logic.budget import budget_info, percentage
from dnd_rag.logic.clock import iso
from dnd_rag.logic.ports import LedgerRow
from dnd_rag.logic.query import QueryOutcome
from dnd_rag.models.api import (
    AdminUsageResponse,
    BucketOut,
    BudgetOut,
    CostOut,
    HealthResponse,
    LedgerOut,
    MetaOut,
    QueryRequest,
    QueryResponse,
    RateLimitOut,
    SourceOut,
    TodayOut,
    UsageOut,
    UsageResponse,
)
from dnd_rag.models.domain import User
from dnd_rag.observability import hashed_user_id, logger, metrics
from dnd_rag.pricing import usd_for_display

MAX_BODY_BYTES = 16 * 1024
ROUTE_METHODS: dict[str, set[str]] = {
    "/health": {"GET"},
    "/api/query": {"POST"},
    "/api/usage": {"GET"},
    "/api/admin/usage": {"GET"},
}


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Request validation that first refuses oversized bodies and reads every body as JSON.

    ``curl -d`` sends form encoding by default; the API only speaks JSON, so a JSON body sent
    with the wrong Content-Type is still answered, and anything else is ``invalid_json``.
    """

    def handler(self, app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        body = app.current_event.decoded_body or ""
        if len(body.encode() if isinstance(body, str) else body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
        headers = app.current_event.raw_event.setdefault("headers", {})
        for name in [name for name in headers if name.lower() == "content-type"]:
            del headers[name]
        headers["content-type"] = "application/json"
        return super().handler(app, next_middleware)


def ledger_fields(row: LedgerRow | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "embedding_tokens": row.embedding_tokens,
        "cost": usd_for_display(row.cost),
    }


def record_query_metrics(outcome: QueryOutcome, budget_limit: int) -> None:
    usage = outcome.answer.usage
    metrics.add_metric(name="Admitted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="QueryCostMicroUsd", unit=MetricUnit.Count, value=outcome.answer.cost_nanos / 1000)
    metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=usage.prompt_tokens)
    metrics.add_metric(name="CompletionTokens", unit=MetricUnit.Count, value=usage.completion_tokens)
    metrics.add_metric(name="EmbeddingTokens", unit=MetricUnit.Count, value=usage.embedding_tokens)
    if outcome.totals is not None:
        metrics.add_metric(
            name="BudgetPercentage", unit=MetricUnit.Percent, value=percentage(outcome.totals.spent, budget_limit)
        )


def cors_config(origins: list[str]) -> CORSConfig | None:
    """Exact-match origins; a disallowed origin gets no Access-Control-Allow-Origin at all."""
    if not origins:
        return None
    return CORSConfig(
        allow_origin=origins[0],
        extra_origins=origins[1:],
        allow_credentials=True,
        max_age=600,
        expose_headers=["X-Request-Id", "Retry-After"],
    )


def create_app(container: Container) -> APIGatewayHttpResolver:
    settings = container.settings
    app = APIGatewayHttpResolver(cors=cors_config(settings.cors_origins), enable_validation=True)
    # Powertools runs request validation before any user middleware, so the body checks that must
    # come first (size, JSON-only) wrap the validation step itself.
    app._request_validation_middleware = JsonBodyValidation()  # noqa: SLF001
    register_error_handlers(app, ROUTE_METHODS)

    def authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        event = app.current_event
        result = container.authenticator.authenticate(
            event.headers.get("authorization"), event.request_context.http.source_ip
        )
        cache_metric = "TokenCacheMiss" if result.source == "auth_api" else "TokenCacheHit"
        metrics.add_metric(name=cache_metric, unit=MetricUnit.Count, value=1)
        logger.append_keys(user=hashed_user_id(result.user.id))
        app.append_context(user=result.user)
        return next_middleware(app)

    authenticated: list[Callable[..., Response]] = [authenticate]

    @app.get("/health")
    def health() -> HealthResponse:
        return HealthResponse()

    @app.post("/api/query", middlewares=authenticated)
    def query(request: Annotated[QueryRequest, Body()]) -> QueryResponse:
        if len(request.question) > settings.max_question_chars:
            raise InvalidRequestError(
                "Some fields are missing or wrong; see details.",
                details=[
                    {
                        "field": "question",
                        "type": "string_too_long",
                        "message": f"String should have at most {settings.max_question_chars} characters",
                    }
                ],
            )
        user: User = app.context["user"]
        outcome = container.queries.ask(user, request.question, request.k, request.debug)
        answer, standing = outcome.answer, outcome.admission.standing
        record_query_metrics(outcome, container.budget.limit)
        return QueryResponse(
            answer=answer.text,
            sources=[SourceOut(id=p.id, source=p.source, score=round(p.score, 4)) for p in answer.passages],
            diagnostics=answer.diagnostics,
            usage=UsageOut(
                prompt_tokens=answer.usage.prompt_tokens,
                completion_tokens=answer.usage.completion_tokens,
                embedding_tokens=answer.usage.embedding_tokens,
                model=answer.model,
            ),
            meta=MetaOut(
                user_id=user.id,
                rate_limit=RateLimitOut(
                    remaining_burst=standing.remaining_burst,
                    daily_remaining=standing.daily_remaining,
                    refill_rate=round(outcome.policy.refill_rate, 6),
                ),
                cost=CostOut(
                    query_cost=usd_for_display(answer.cost_nanos),
                    daily_total=usd_for_display(outcome.totals.spent) if outcome.totals else None,
                    daily_budget=usd_for_display(container.budget.limit),
                ),
            ),
        )

    @app.get("/api/usage", middlewares=authenticated)
    def usage() -> UsageResponse:
        user: User = app.context["user"]
        report = container.usage.report(user)
        standing, policy = report.standing, report.policy
        return UsageResponse(
            user_id=user.id,
            plan=report.plan,
            bucket=BucketOut(
                remaining_burst=standing.remaining_burst,
                capacity=policy.capacity,
                refill_rate=round(policy.refill_rate, 6),
                retry_after=standing.retry_after,
            ),
            daily_remaining=standing.daily_remaining,
            daily_limit=policy.daily_limit,
            reset_at=iso(standing.reset_at),
            today=TodayOut(**{**ledger_fields(report.ledger), "requests": standing.daily_count}),
            budget=BudgetOut(**budget_info(report.budget.spent, report.budget_limit)),
        )

    @app.get("/api/admin/usage", middlewares=authenticated)
    def admin_usage() -> AdminUsageResponse:
        report = container.usage.admin_report(app.context["user"])
        totals = report.budget
        return AdminUsageResponse(
            day=report.day,
            budget=BudgetOut(**budget_info(totals.spent, report.budget_limit)),
            in_flight_reserved=usd_for_display(totals.committed - totals.spent),
            alerts_sent=sorted(totals.alerts_sent),
            models=[LedgerOut(name=row.name, **ledger_fields(row)) for row in report.models],
            top_users=[LedgerOut(name=row.name, **ledger_fields(row)) for row in report.top_users],
        )

    return app
