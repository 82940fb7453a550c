"""The one place where failures become HTTP answers in the SPEC §3 shape."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.errors import (
    AuthUnavailableError,
    BudgetExceededError,
    ContentFlaggedError,
    DailyLimitExceededError,
    ForbiddenError,
    IdempotencyKeyReusedError,
    InvalidJsonError,
    InvalidRequestError,
    InvalidTokenError,
    IpRateLimitedError,
    MissingTokenError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestInProgressError,
    ServiceError,
    ServicePausedError,
    StoreUnavailableError,
    TooManyInFlightError,
    UpstreamError,
    UserBlockedError,
    UserBudgetExceededError,
)
from dnd_rag.observability import logger, metrics

STATUS_BY_ERROR: dict[type[ServiceError], HTTPStatus] = {
    InvalidRequestError: HTTPStatus.BAD_REQUEST,
    InvalidJsonError: HTTPStatus.BAD_REQUEST,
    ContentFlaggedError: HTTPStatus.BAD_REQUEST,
    MissingTokenError: HTTPStatus.UNAUTHORIZED,
    ForbiddenError: HTTPStatus.FORBIDDEN,
    UserBlockedError: HTTPStatus.FORBIDDEN,
    RequestInProgressError: HTTPStatus.CONFLICT,
    IdempotencyKeyReusedError: HTTPStatus.UNPROCESSABLE_ENTITY,
    InvalidTokenError: HTTPStatus.UNAUTHORIZED,
    PayloadTooLargeError: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    RateLimitedError: HTTPStatus.TOO_MANY_REQUESTS,
    DailyLimitExceededError: HTTPStatus.TOO_MANY_REQUESTS,
    IpRateLimitedError: HTTPStatus.TOO_MANY_REQUESTS,
    UserBudgetExceededError: HTTPStatus.TOO_MANY_REQUESTS,
    TooManyInFlightError: HTTPStatus.TOO_MANY_REQUESTS,
    UpstreamError: HTTPStatus.BAD_GATEWAY,
    AuthUnavailableError: HTTPStatus.SERVICE_UNAVAILABLE,
    BudgetExceededError: HTTPStatus.SERVICE_UNAVAILABLE,
    StoreUnavailableError: HTTPStatus.SERVICE_UNAVAILABLE,
    ServicePausedError: HTTPStatus.SERVICE_UNAVAILABLE,
}


def error_response(
    app: APIGatewayHttpResolver,
    status: HTTPStatus,
    code: str,
    message: str,
    *,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    body = {"error": code, "message": message, "request_id": request_id(app), **context}
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    return Response(
        status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body, headers=all_headers
    )


def request_id(app: APIGatewayHttpResolver) -> str:
    return app.current_event.request_context.request_id or ""


def _field_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    details = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        details.append(
            {
                "field": ".".join(location) or "body",
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "invalid")),
            }
        )
    return details


def _methods_at(allowed_methods: dict[str, set[str]], path: str) -> set[str] | None:
    """The methods of the route template (``/api/admin/users/{user_id}/block``) ``path`` matches."""
    for template, methods in allowed_methods.items():
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), path):
            return methods
    return None


def register_error_handlers(app: APIGatewayHttpResolver, allowed_methods: dict[str, set[str]]) -> None:
    """Map every failure to the §3 shape. ``allowed_methods`` tells 405 from 404."""

    @app.exception_handler(ServiceError)
    def service_error(exc: ServiceError) -> Response:
        status = STATUS_BY_ERROR.get(type(exc), HTTPStatus.INTERNAL_SERVER_ERROR)
        log = logger.warning if status >= 500 else logger.info
        log("request rejected", extra={"error": exc.code, "status": status.value, "reason": exc.reason})
        metrics.add_metric(name=f"Rejected_{exc.code}", unit=MetricUnit.Count, value=1)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            # A 503 answered on purpose (budget_exceeded, service_paused, auth_unavailable,
            # service_unavailable): HttpApi5xxAlarm subtracts these from the gateway's 5xx count.
            metrics.add_metric(name="Deliberate503", unit=MetricUnit.Count, value=1)
        return error_response(app, status, exc.code, exc.message, retry_after=exc.retry_after, **exc.context)

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(app, HTTPStatus.BAD_REQUEST, "invalid_json", "The request body is not valid JSON.")
        return error_response(
            app,
            HTTPStatus.BAD_REQUEST,
            "validation_error",
            "Some fields are missing or wrong; see details.",
            details=_field_details(errors),
        )

    @app.not_found
    def not_found(_: NotFoundError) -> Response:
        # no message echoes what the client sent (its path, its method): only our own words
        methods = _methods_at(allowed_methods, app.current_event.path)
        if methods:
            allow = ", ".join(sorted(methods | {"OPTIONS"}))
            return error_response(
                app,
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"This method is not allowed on this resource; use {allow}.",
                headers={"Allow": allow},
            )
        return error_response(app, HTTPStatus.NOT_FOUND, "not_found", "There is no resource at this path.")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(
            app,
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. Please retry; quote the request_id if it persists.",
        )
