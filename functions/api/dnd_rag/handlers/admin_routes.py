"""The operator routes (SPEC §3, role admin): thin adapters to logic/operations/operator.py.

Order on every route here: authenticate (401), authorize (403: role admin from the auth API or a
cached answer at most ``ROLE_MAX_AGE_SECONDS`` old, and not blocked, read from the store), then
validate (400). Powertools validates a request before any route middleware runs, so the check is
``OperatorGuard``, which the request validation itself calls first (handlers/middlewares.py's
``JsonBodyValidation``) — nobody without the role learns the admin API's schema from a 400 — and
which ``operators_only``, the routes' own middleware, re-runs should validation ever be off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from dnd_rag.container import Container
from dnd_rag.errors import InvalidRequestError
from dnd_rag.handlers.openapi import BEARER, responses
from dnd_rag.handlers.presenters import (
    admin_usage_response,
    audit_response,
    operator_response,
    reconciliation_response,
    spend_csv,
    spend_response,
)
from dnd_rag.logic.operations.spend import DEFAULT_LIMIT, MAX_DAYS, MAX_LIMIT, MAX_REASON_CHARS, SpendQuery
from dnd_rag.models.api import (
    DEFAULT_AUDIT_LIMIT,
    MAX_AUDIT_LIMIT,
    AdminUsageResponse,
    AuditResponse,
    BudgetOverrideRequest,
    OperatorActionResponse,
    PauseRequest,
    ReconciliationResponse,
    SpendResponse,
)
from dnd_rag.models.domain import USER_ID_DESCRIPTION, USER_ID_MAX_CHARS, User, is_valid_user_id
from dnd_rag.observability import hashed_user_id, logger, metrics

PREFIX = "/api/admin/"
ROUTE_METHODS: dict[str, set[str]] = {
    "/api/admin/usage": {"GET"},
    "/api/admin/budget": {"PUT"},
    "/api/admin/pause": {"POST"},
    "/api/admin/resume": {"POST"},
    "/api/admin/users/{user_id}/block": {"PUT", "DELETE"},
    "/api/admin/users/{user_id}/reset": {"POST"},
    "/api/admin/audit": {"GET"},
    "/api/admin/spend": {"GET"},
    "/api/admin/reconciliation": {"GET"},
}
ADMIN_ERRORS = (401, 403, 429, 500, 503)
# How old the auth API's word on a token may be for the operator routes (queries: TOKEN_CACHE_TTL):
# an operator demoted or revoked at the auth API loses these routes within 30 s in every container.
ROLE_MAX_AGE_SECONDS = 30
# A user id in a path, as sent: 1-128 characters, each a visible ASCII character other than "%", or
# one percent-encoded (%21..%7E): exactly the ids of the one user id rule (models/domain.py), so the
# published schema promises no id that the route refuses. ``user_id_from_path`` decodes it.
_VISIBLE_ENCODED = "%(?:2[1-9A-Fa-f]|[3-6][0-9A-Fa-f]|7[0-9A-Ea-e])"
ENCODED_USER_ID_PATTERN = rf"^(?:[!-$&-~]|{_VISIBLE_ENCODED}){{1,{USER_ID_MAX_CHARS}}}$"
UserId = Annotated[
    str,
    Path(
        pattern=ENCODED_USER_ID_PATTERN,
        description=f"The user's id as the auth API gives it ({USER_ID_DESCRIPTION}), percent-encoded "
        "where a URL needs it (auth0%7Cabc123).",
    ),
]
_AUTHORIZED = "operator_authorized"


def user_id_from_path(raw: str) -> str:
    """The user id a path segment names, percent-decoded, or 400 if it is not one (ids follow the
    same rule as at sign-in, so every user who can sign in can be blocked and reset)."""
    try:
        user_id = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        user_id = ""
    if not is_valid_user_id(user_id) or re.search(r"%(?![0-9A-Fa-f]{2})", raw):
        raise InvalidRequestError(
            "Some fields are missing or wrong; see details.",
            details=[
                {
                    "field": "path.user_id",
                    "message": f"A user id is {USER_ID_DESCRIPTION}, percent-encoded in the path.",
                    "type": "user_id",
                }
            ],
        )
    return user_id


class OperatorGuard:
    """Authenticate the caller (a role vouched for at most ROLE_MAX_AGE_SECONDS ago), then let only
    an operator through: 401/429/503 from authentication, 403 forbidden / user_blocked (audited)."""

    def __init__(self, container: Container) -> None:
        self._container = container

    def __call__(self, app: EventHandlerInstance) -> None:
        if app.context.get(_AUTHORIZED):
            return
        event = app.current_event
        assert isinstance(event, APIGatewayProxyEventV2)  # the HTTP API's payload 2.0
        result = self._container.authenticator.authenticate(
            event.headers.get("authorization"), event.request_context.http.source_ip, max_age=ROLE_MAX_AGE_SECONDS
        )
        metrics.add_metric(
            name="TokenCacheMiss" if result.source == "auth_api" else "TokenCacheHit", unit=MetricUnit.Count, value=1
        )
        logger.append_keys(user=hashed_user_id(result.user.id))
        app.append_context(user=result.user)
        route = app.context["_route"]
        attempt = f"{route.method} {route.openapi_path}"
        self._container.operator.authorize(result.user, attempt, event.request_context.request_id or "")
        app.append_context(**{_AUTHORIZED: True})

    def applies_to(self, path: str) -> bool:
        """Whether a route (its path as registered) is an operator route."""
        return path.startswith(PREFIX)


def operators_only(guard: OperatorGuard) -> Callable[[EventHandlerInstance, NextMiddleware], Response]:
    """The routes' own middleware: the guard has run (in the request validation) or runs now."""

    def middleware(app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        guard(app)
        return next_middleware(app)

    return middleware


def admin_router(container: Container, guard: OperatorGuard) -> Router:
    router = Router()
    admin: list[Callable[..., Response]] = [operators_only(guard)]

    def who_and_request() -> tuple[User, str]:
        return router.context["user"], router.current_event.raw_event.get("requestContext", {}).get("requestId", "")

    @router.get(
        "/api/admin/usage",
        middlewares=admin,
        summary="Today's usage of the whole service and the overrides in force (role admin)",
        security=BEARER,
        responses=responses(AdminUsageResponse, *ADMIN_ERRORS),
    )
    def admin_usage() -> AdminUsageResponse:
        return admin_usage_response(container.usage.admin_report())

    @router.put(
        "/api/admin/budget",
        middlewares=admin,
        summary="Set today's global budget until the next UTC midnight, and/or this month's until it ends (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, 413, *ADMIN_ERRORS),
    )
    def set_budget(request: Annotated[BudgetOverrideRequest, Body()]) -> OperatorActionResponse:
        who, request_id = who_and_request()
        change = container.operator.set_budget(who, request.nanos, request_id, monthly=request.monthly_nanos)
        return operator_response(change)

    @router.post(
        "/api/admin/pause",
        middlewares=admin,
        summary="Pause the service: queries answer 503 service_paused (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, 413, *ADMIN_ERRORS),
    )
    def pause(request: Annotated[PauseRequest, Body()]) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.pause(who, request.reason, request_id))

    @router.post(
        "/api/admin/resume",
        middlewares=admin,
        summary="Resume a paused service (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, *ADMIN_ERRORS),
    )
    def resume() -> OperatorActionResponse:
        return operator_response(container.operator.resume(*who_and_request()))

    @router.put(
        "/api/admin/users/<user_id>/block",
        middlewares=admin,
        summary="Block a user: their queries answer 403 user_blocked (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, *ADMIN_ERRORS),
    )
    def block(user_id: UserId) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.block(who, user_id_from_path(user_id), request_id))

    @router.delete(
        "/api/admin/users/<user_id>/block",
        middlewares=admin,
        summary="Unblock a user (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, *ADMIN_ERRORS),
    )
    def unblock(user_id: UserId) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.unblock(who, user_id_from_path(user_id), request_id))

    @router.post(
        "/api/admin/users/<user_id>/reset",
        middlewares=admin,
        summary="Refill a user's bucket and zero today's count and dollar use (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, *ADMIN_ERRORS),
    )
    def reset(user_id: UserId) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.reset_user(who, user_id_from_path(user_id), request_id))

    @router.get(
        "/api/admin/audit",
        middlewares=admin,
        summary="The latest operator actions, newest first (role admin)",
        security=BEARER,
        responses=responses(AuditResponse, 400, *ADMIN_ERRORS),
    )
    def audit(
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT, description="How many entries (1..100).")] = (
            DEFAULT_AUDIT_LIMIT
        ),
    ) -> AuditResponse:
        return audit_response(container.operator.audit(limit))

    @router.get(
        "/api/admin/spend",
        middlewares=admin,
        summary=f"Spend over up to {MAX_DAYS} UTC days per day, user or model, as JSON or CSV (role admin)",
        description="From the per-day books, in exact dollars; user ids hashed unless raw_ids=true with a "
        "reason (audited). Paged: limit rows, then ?next=<cursor> (JSON: next; CSV: the X-Next-Cursor header).",
        security=BEARER,
        responses=_spend_responses(),
    )
    def spend(
        start: Annotated[str, Query(alias="from", max_length=10, description="First UTC day, YYYY-MM-DD.")],
        end: Annotated[str, Query(alias="to", max_length=10, description="Last UTC day, YYYY-MM-DD, inclusive.")],
        group_by: Annotated[Literal["day", "user", "model"], Query(description="The rows' key.")] = "day",
        output: Annotated[Literal["json", "csv"], Query(alias="format", description="json or csv.")] = "json",
        raw_ids: Annotated[bool, Query(description="Raw user ids instead of hashed (needs reason).")] = False,
        reason: Annotated[str | None, Query(max_length=MAX_REASON_CHARS, description="Why raw ids (audited).")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Rows per page (1..{MAX_LIMIT}).")] = (
            DEFAULT_LIMIT
        ),
        cursor: Annotated[
            str | None, Query(alias="next", max_length=2048, description="The previous page's next.")
        ] = None,
    ):  # no return annotation: Powertools would try to document Response itself (the 200 is in responses)
        who, request_id = who_and_request()
        query = SpendQuery(start, end, group_by, raw_ids, reason, limit, cursor)
        report = container.spend.export(who, query, request_id)
        if output == "json":
            body = spend_response(report).model_dump_json()
            return Response(200, content_types.APPLICATION_JSON, body)
        headers = {"Content-Disposition": f'attachment; filename="spend-{start}-{end}-{group_by}.csv"'}
        if report.next_cursor is not None:
            headers["X-Next-Cursor"] = report.next_cursor
        return Response(200, "text/csv; charset=utf-8", spend_csv(report), headers=headers)

    @router.get(
        "/api/admin/reconciliation",
        middlewares=admin,
        summary=f"Our books against OpenAI's usage and costs records, per UTC day and model, up to {MAX_DAYS} days "
        "(role admin)",
        description="The scheduled reconciliation's stored results: books - billed in exact dollars and tokens, "
        "the drift (books below the bill) and the safety margin (books above it).",
        security=BEARER,
        responses=responses(ReconciliationResponse, 400, *ADMIN_ERRORS),
    )
    def reconciliation(
        start: Annotated[str, Query(alias="from", max_length=10, description="First UTC day, YYYY-MM-DD.")],
        end: Annotated[str, Query(alias="to", max_length=10, description="Last UTC day, YYYY-MM-DD, inclusive.")],
    ) -> ReconciliationResponse:
        return reconciliation_response(start, end, container.reconciliation_results.between(start, end))

    return router


def _spend_responses() -> dict[int, Any]:
    documented = responses(SpendResponse, 400, *ADMIN_ERRORS)
    documented[200]["content"]["text/csv"] = {"schema": {"type": "string", "description": "<group_by>,cost_usd rows"}}
    return documented
