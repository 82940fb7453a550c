"""What runs around the routes: body checks, CORS, authentication."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.handlers.request_body import body_text
from dnd_rag.logic.auth.authenticator import Authenticator
from dnd_rag.observability import hashed_user_id, logger, metrics

Middleware = Callable[[APIGatewayHttpResolver, NextMiddleware], Response]


class Guard(Protocol):
    """A check that runs before a route's request validation, on the routes it applies to."""

    def __call__(self, app: EventHandlerInstance) -> None: ...

    def applies_to(self, path: str) -> bool: ...


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Request validation that first reads the body the way the API accepts it (request_body.py).

    The body is decoded once here (base64, size, UTF-8) and handed on as plain text, so the
    validation step's strict JSON parser sees exactly what the client sent. ``curl -d`` sends
    form encoding by default; the API only speaks JSON, so a JSON body sent with another
    Content-Type is still answered, and anything else is ``invalid_json``. Powertools runs
    request validation before any user middleware, so these checks, which must come first,
    wrap the validation step itself. So does ``first``: a check some routes need before anything
    about the request is judged (the operator routes' authentication and authorization, so that
    nobody without the role gets a 400 that describes the admin API).
    """

    def __init__(self, first: Guard | None = None) -> None:
        super().__init__()
        self._first = first

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        route = app.context["_route"]
        if self._first is not None and self._first.applies_to(route.path):
            self._first(app)  # e.g. the operator routes: 401/403 before anything is validated
        event = app.current_event.raw_event
        if route.dependant.body_params:
            event["body"] = body_text(event)
            event["isBase64Encoded"] = False
        headers = event.setdefault("headers", {})  # changed in place: Powertools may hold this dict
        for name in [name for name in headers if name.lower() == "content-type"]:
            del headers[name]
        headers["content-type"] = "application/json"
        return super().handler(app, next_middleware)


# What a browser may send and read, and how long it may keep a preflight's answer: the same here and
# in template.yaml's CorsConfiguration (tests/unit/test_template.py compares them).
ALLOWED_HEADERS = {"Authorization", "Content-Type", "Idempotency-Key"}
EXPOSED_HEADERS = {"Retry-After", "X-Request-Id", "X-Next-Cursor", "Content-Disposition"}
PREFLIGHT_MAX_AGE_SECONDS = 600


def cors_config(origins: list[str], *, by_gateway: bool = False) -> CORSConfig | None:
    """Exact-match origins; a disallowed origin gets no Access-Control-Allow-Origin at all.

    None when API Gateway writes the CORS headers (``by_gateway``, CORS_BY_GATEWAY): one place
    configures CORS, and an answer never carries two Access-Control-Allow-Origin headers."""
    if not origins or by_gateway:
        return None
    config = CORSConfig(
        allow_origin=origins[0],
        extra_origins=origins[1:],
        allow_credentials=True,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
        expose_headers=sorted(EXPOSED_HEADERS),
    )
    # Powertools always adds the X-Amz-* headers of signed requests; this API takes bearer tokens only.
    config.allow_headers = set(ALLOWED_HEADERS)
    return config


def preflight_for_the_gateway():  # no return annotation: Powertools would try to document Response itself
    """A preflight that a route sent to the function while API Gateway owns CORS: HTTP API hands it
    over when a route matches (``OPTIONS /{proxy+}``, ``$default``) and adds its configured CORS
    headers to the answer, so the answer is only an ok status for the browser, 204 and no body."""
    return Response(status_code=204, content_type=None, body="")


# HSTS in prod (API Gateway serves https only there): a year, subdomains included.
HSTS = "max-age=31536000; includeSubDomains"


def stamp_headers(response: dict[str, Any], event: dict[str, Any], *, cors: bool, hsts: bool = False) -> None:
    """Headers every answer carries, whatever produced it (a route, an error handler, a 404):

    - ``X-Request-Id`` (SPEC §3);
    - ``X-Content-Type-Options: nosniff``: a browser never guesses another type than the declared one;
    - ``Cache-Control: no-store`` unless the route set its own (API JSON is per caller and per
      moment: no shared or browser cache may keep it; the OpenAPI document and /docs say otherwise);
    - ``Strict-Transport-Security`` when ``hsts`` (prod);
    - when CORS is on, ``Vary: Origin``, because then whether Access-Control-Allow-Origin appears
      depends on the request's Origin (a shared cache must not give one origin's answer to another).
    """
    headers = response.setdefault("headers", {})
    headers["X-Request-Id"] = event.get("requestContext", {}).get("requestId", "")
    headers["X-Content-Type-Options"] = "nosniff"
    if not any(name.lower() == "cache-control" for name in headers):
        headers["Cache-Control"] = "no-store"
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    if cors:
        vary = next((name for name in headers if name.lower() == "vary"), None)
        values = [v.strip() for v in str(headers.pop(vary, "")).split(",") if v.strip()] if vary else []
        if "origin" not in {v.lower() for v in values}:
            values.append("Origin")
        headers["Vary"] = ", ".join(values)


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
