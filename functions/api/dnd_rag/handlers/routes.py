"""HTTP routes: thin adapters from the HTTP contract (SPEC §3) to the logic."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Header

from dnd_rag.container import Container
from dnd_rag.errors import InvalidRequestError
from dnd_rag.handlers.admin_routes import ROUTE_METHODS as ADMIN_ROUTE_METHODS
from dnd_rag.handlers.admin_routes import OperatorGuard, admin_router
from dnd_rag.handlers.error_responses import register_error_handlers
from dnd_rag.handlers.idempotency import HEADER as IDEMPOTENCY_HEADER
from dnd_rag.handlers.idempotency import KEY_DESCRIPTION, KEY_PATTERN, answer_once
from dnd_rag.handlers.middlewares import JsonBodyValidation, authenticated, cors_config, preflight_for_the_gateway
from dnd_rag.handlers.openapi import BEARER, document, responses
from dnd_rag.handlers.presenters import query_response, record_query_metrics, usage_response
from dnd_rag.handlers.request_body import strict_json
from dnd_rag.logic.common.clock import Deadline, seconds_to_answer
from dnd_rag.models.api import HealthResponse, QueryRequest, QueryResponse, UsageResponse

ROUTE_METHODS: dict[str, set[str]] = {
    "/health": {"GET"},
    "/openapi.json": {"GET"},
    "/docs": {"GET"},  # not in prod (see create_app)
    "/api/query": {"POST"},
    "/api/usage": {"GET"},
    **ADMIN_ROUTE_METHODS,
}


# Time kept back from the Lambda's remaining time to settle the cost and send the answer.
RESPONSE_MARGIN_SECONDS = 3.0


def request_deadline(app: APIGatewayHttpResolver, now: float) -> Deadline:
    """min(Lambda remaining, timeEpoch + 30 s) - margin (SPEC §4): API Gateway stops waiting 30 s
    after the request arrived, init included, whatever the function's own timeout."""
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000
    epoch_ms = app.current_event.request_context.time_epoch
    arrived_at = epoch_ms / 1000 if epoch_ms else None
    return Deadline(seconds_to_answer(remaining, arrived_at, now, RESPONSE_MARGIN_SECONDS))


def create_app(container: Container) -> APIGatewayHttpResolver:
    settings = container.settings
    app = APIGatewayHttpResolver(
        cors=cors_config(settings.cors_origins, by_gateway=settings.cors_by_gateway),
        enable_validation=True,
        json_body_deserializer=strict_json,
    )
    if settings.cors_by_gateway:  # ".+": every path (Powertools' catch-all route)
        app.route(".+", method="OPTIONS", include_in_schema=False)(preflight_for_the_gateway)
    operator_guard = OperatorGuard(container)
    app._request_validation_middleware = JsonBodyValidation(first=operator_guard)  # noqa: SLF001 - see JsonBodyValidation
    serve_docs = settings.stage != "prod"  # /docs is a developer's page (handlers/openapi.py)
    register_error_handlers(
        app, ROUTE_METHODS if serve_docs else {k: v for k, v in ROUTE_METHODS.items() if k != "/docs"}
    )
    document(app, serve_docs=serve_docs)
    signed_in = [authenticated(lambda: container.authenticator)]
    signed_in_errors = (401, 429, 500, 503)

    @app.get("/health", summary="Liveness", responses=responses(HealthResponse, 500))
    def health() -> HealthResponse:
        return HealthResponse()

    @app.post(
        "/api/query",
        middlewares=signed_in,
        summary="Ask a rules question",
        security=BEARER,
        responses=responses(QueryResponse, 400, 403, 409, 413, 422, 502, *signed_in_errors),
    )
    def query(
        request: Annotated[QueryRequest, Body()],
        idempotency_key: Annotated[
            str | None, Header(alias=IDEMPOTENCY_HEADER, pattern=KEY_PATTERN.pattern, description=KEY_DESCRIPTION)
        ] = None,
    ) -> QueryResponse:
        user = app.context["user"]
        max_k = container.plans.max_k(user.plan)
        if request.k > max_k:  # before anything is admitted or spent: a refusal costs nothing
            raise InvalidRequestError(
                "Some fields are missing or wrong; see details.",
                details=[
                    {"field": "k", "message": f"At most {max_k} passages on your plan.", "type": "less_than_equal"}
                ],
            )
        computed = False

        def answer() -> dict:
            nonlocal computed
            computed = True
            outcome = container.queries.ask(
                user, request.question, request.k, request.debug, request_deadline(app, container.clock())
            )
            record_query_metrics(outcome, container.budget.limit)
            return query_response(user, outcome, container.budget.limit).model_dump(mode="json")

        if idempotency_key is None:
            return QueryResponse.model_validate(answer())
        body = answer_once(
            container.idempotency_store,
            app.lambda_context,
            user.id,
            idempotency_key,
            request.model_dump(mode="json"),
            answer,
        )
        if not computed:  # a replay of a stored answer: behind the controls and a limit of its own
            container.replays.admit(user.id)
        return QueryResponse.model_validate(body)

    @app.get(
        "/api/usage",
        middlewares=signed_in,
        summary="Your limits, today's usage and the budget",
        security=BEARER,
        responses=responses(UsageResponse, *signed_in_errors),
    )
    def usage() -> UsageResponse:
        user = app.context["user"]
        return usage_response(user, container.usage.report(user), container.plans.max_k(user.plan))

    app.include_router(admin_router(container, operator_guard))
    return app
