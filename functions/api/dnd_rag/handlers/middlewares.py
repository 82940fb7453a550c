"""What runs around the routes: body checks, CORS, authentication."""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.errors import PayloadTooLargeError
from dnd_rag.logic.auth import Authenticator
from dnd_rag.observability import hashed_user_id, logger, metrics

MAX_BODY_BYTES = 16 * 1024
Middleware = Callable[[APIGatewayHttpResolver, NextMiddleware], Response]


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Request validation that first refuses oversized bodies and reads every body as JSON.

    ``curl -d`` sends form encoding by default; the API only speaks JSON, so a JSON body sent
    with the wrong Content-Type is still answered, and anything else is ``invalid_json``.
    Powertools runs request validation before any user middleware, so these checks, which must
    come first, wrap the validation step itself.
    """

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        body = app.current_event.decoded_body or ""
        if len(body.encode() if isinstance(body, str) else body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
        headers = app.current_event.raw_event.setdefault("headers", {})
        for name in [name for name in headers if name.lower() == "content-type"]:
            del headers[name]
        headers["content-type"] = "application/json"
        return super().handler(app, next_middleware)


ALLOWED_HEADERS = {"Authorization", "Content-Type", "Idempotency-Key"}


def cors_config(origins: list[str]) -> CORSConfig | None:
    """Exact-match origins; a disallowed origin gets no Access-Control-Allow-Origin at all."""
    if not origins:
        return None
    config = CORSConfig(
        allow_origin=origins[0],
        extra_origins=origins[1:],
        allow_credentials=True,
        max_age=600,
        expose_headers=["X-Request-Id", "Retry-After"],
    )
    # Powertools always adds the X-Amz-* headers of signed requests; this API takes bearer tokens only.
    config.allow_headers = set(ALLOWED_HEADERS)
    return config


def authenticated(authenticator: Callable[[], Authenticator]) -> Middleware:
    """Puts the caller's ``user`` in the app context, or answers 401/429/503 before the route."""

    def authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        event = app.current_event
        result = authenticator().authenticate(event.headers.get("authorization"), event.request_context.http.source_ip)
        metrics.add_metric(
            name="TokenCacheMiss" if result.source == "auth_api" else "TokenCacheHit", unit=MetricUnit.Count, value=1
        )
        logger.append_keys(user=hashed_user_id(result.user.id))
        app.append_context(user=result.user)
        return next_middleware(app)

    return authenticate
