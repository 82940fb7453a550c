"""The operator routes (SPEC §3, role admin): thin adapters to logic/operations/operator.py.

Every route here takes ``ADMIN``: the caller is authenticated, then must have role ``admin``
(403 ``forbidden`` otherwise) — the one place where the role is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.types import EventHandlerInstance

from dnd_rag.container import Container
from dnd_rag.errors import ForbiddenError
from dnd_rag.handlers.middlewares import authenticated
from dnd_rag.handlers.openapi import BEARER, responses
from dnd_rag.handlers.presenters import admin_usage_response, audit_response, operator_response
from dnd_rag.models.api import (
    DEFAULT_AUDIT_LIMIT,
    MAX_AUDIT_LIMIT,
    USER_ID_PATTERN,
    AdminUsageResponse,
    AuditResponse,
    BudgetOverrideRequest,
    OperatorActionResponse,
    PauseRequest,
)
from dnd_rag.models.domain import User

ROUTE_METHODS: dict[str, set[str]] = {
    "/api/admin/usage": {"GET"},
    "/api/admin/budget": {"PUT"},
    "/api/admin/pause": {"POST"},
    "/api/admin/resume": {"POST"},
    "/api/admin/users/{user_id}/block": {"PUT", "DELETE"},
    "/api/admin/users/{user_id}/reset": {"POST"},
    "/api/admin/audit": {"GET"},
}
ADMIN_ERRORS = (401, 403, 429, 500, 503)
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The user's id, as the auth API gives it.")]


def admins_only(app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
    """After ``authenticated``: refuse every caller without role admin."""
    if not app.context["user"].is_admin:
        raise ForbiddenError("This route is for operators (role admin).")
    return next_middleware(app)


def admin_router(container: Container) -> Router:
    router = Router()
    admin: list[Callable[..., Response]] = [authenticated(lambda: container.authenticator), admins_only]

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
        summary="Set today's global budget until the next UTC midnight (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, 413, *ADMIN_ERRORS),
    )
    def set_budget(request: Annotated[BudgetOverrideRequest, Body()]) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.set_budget(who, request.nanos, request_id))

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
        return operator_response(container.operator.block(who, user_id, request_id))

    @router.delete(
        "/api/admin/users/<user_id>/block",
        middlewares=admin,
        summary="Unblock a user (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, *ADMIN_ERRORS),
    )
    def unblock(user_id: UserId) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.unblock(who, user_id, request_id))

    @router.post(
        "/api/admin/users/<user_id>/reset",
        middlewares=admin,
        summary="Refill a user's bucket and zero today's count and dollar use (role admin)",
        security=BEARER,
        responses=responses(OperatorActionResponse, 400, *ADMIN_ERRORS),
    )
    def reset(user_id: UserId) -> OperatorActionResponse:
        who, request_id = who_and_request()
        return operator_response(container.operator.reset_user(who, user_id, request_id))

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

    return router
