"""What HTTP API does around the routes, as template.yaml's HttpApi configures it, for the local
gateway (api_server.py): CORS from its ``CorsConfiguration`` and route throttling from its
``DefaultRouteSettings``.

CORS, as the HTTP API guide documents it ("Configure CORS for HTTP APIs in API Gateway",
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html):

- the configured headers are added to an answer only when the request has an ``Origin`` (and, for a
  preflight, an ``Access-Control-Request-Method``) and that origin is allowed: a disallowed origin
  gets none at all;
- a preflight that no route matches is answered by the gateway itself (204);
- CORS headers the integration returns are ignored (dropped): an answer never carries two.

Not documented: whether HTTP API adds them to the answers it makes itself (a throttled route's 429,
the integration timeout's 503, an invocation error's 500). This gateway does, as the deployed design
assumes (README "CORS"); ``LOCAL_API_CORS_ON_OWN_ANSWERS=0`` shows what a browser gets if it does not.

Route throttling (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html):
a token bucket per route (burst = its size, rate = tokens per second); a request that finds it empty
is answered 429 ``{"message":"Too Many Requests"}`` without reaching the integration. The template's
defaults apply (``RouteThrottlingBurstLimit``/``RouteThrottlingRateLimit``); ``LOCAL_API_THROTTLE_BURST``
and ``LOCAL_API_THROTTLE_RATE`` change them, ``LOCAL_API_ROUTE_THROTTLE`` sets single routes as a
stage's RouteSettings would: ``{"POST /api/query": {"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 0.1}}``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.local.template import http_api_properties, load_template, resolve

CORS_PREFIX = "access-control-"


@dataclass(frozen=True)
class CorsConfiguration:
    """An HttpApi's CorsConfiguration (origins match exactly: the API's settings allow no wildcard)."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None

    def headers_for(self, method: str, request_headers: Mapping[str, str]) -> dict[str, str]:
        """The CORS headers of the answer to a request (header names lower-case in ``request_headers``)."""
        origin = request_headers.get("origin")
        if not origin or origin not in self.allow_origins:
            return {}
        headers = {"Access-Control-Allow-Origin": origin}
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if is_preflight(method, request_headers):
            if self.allow_methods:
                headers["Access-Control-Allow-Methods"] = ",".join(sorted(self.allow_methods))
            if self.allow_headers:
                headers["Access-Control-Allow-Headers"] = ",".join(self.allow_headers)
            if self.max_age is not None:
                headers["Access-Control-Max-Age"] = str(self.max_age)
        elif self.expose_headers:
            headers["Access-Control-Expose-Headers"] = ",".join(self.expose_headers)
        return headers


def is_preflight(method: str, request_headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in request_headers and "access-control-request-method" in request_headers


def with_gateway_cors(
    cors: CorsConfiguration | None, method: str, request_headers: Mapping[str, str], headers: Mapping[str, str]
) -> dict[str, str]:
    """``headers`` of an answer as the gateway sends it: the CORS headers it was given dropped, the
    configured ones added (none without a CorsConfiguration: then the answer passes unchanged)."""
    if cors is None:
        return dict(headers)
    kept = {name: value for name, value in headers.items() if not name.lower().startswith(CORS_PREFIX)}
    return {**kept, **cors.headers_for(method, request_headers)}


@dataclass(frozen=True)
class Limits:
    rate: float  # tokens per second
    burst: int  # the bucket's size


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RouteThrottle:
    """One token bucket per route key (``POST /api/query``, ``$default``), full at first."""

    default: Limits
    per_route: dict[str, Limits] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def limits(self, route_key: str) -> Limits:
        return self.per_route.get(route_key, self.default)

    def admit(self, route_key: str) -> bool:
        limits = self.limits(route_key)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(route_key, _Bucket(float(limits.burst), now))
            bucket.tokens = min(float(limits.burst), bucket.tokens + (now - bucket.updated) * limits.rate)
            bucket.updated = now
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True


@dataclass(frozen=True)
class GatewayRules:
    cors: CorsConfiguration | None
    throttle: RouteThrottle
    cors_on_own_answers: bool = True  # the assumption above; False: HTTP API's own errors without CORS


def cors_configuration(template: dict[str, Any], env: Mapping[str, str]) -> CorsConfiguration | None:
    """The HttpApi's CorsConfiguration for the local stack's settings (None: the API has none, or no origin)."""
    configured = resolve(http_api_properties(template).get("CorsConfiguration"), template, env)
    if not isinstance(configured, dict) or not configured:
        return None
    origins = tuple(origin.strip() for origin in configured.get("AllowOrigins") or [] if origin.strip())
    if not origins:
        return None
    return CorsConfiguration(
        allow_origins=origins,
        allow_methods=tuple(str(m).upper() for m in configured.get("AllowMethods") or []),
        allow_headers=tuple(configured.get("AllowHeaders") or []),
        expose_headers=tuple(configured.get("ExposeHeaders") or []),
        allow_credentials=configured.get("AllowCredentials") is True,
        max_age=int(configured["MaxAge"]) if configured.get("MaxAge") is not None else None,
    )


def route_throttle(template: dict[str, Any], env: Mapping[str, str]) -> RouteThrottle:
    settings = resolve(http_api_properties(template).get("DefaultRouteSettings") or {}, template, env)
    default = Limits(
        rate=float(env.get("LOCAL_API_THROTTLE_RATE") or settings.get("ThrottlingRateLimit", 10_000)),
        burst=int(env.get("LOCAL_API_THROTTLE_BURST") or settings.get("ThrottlingBurstLimit", 5_000)),
    )
    per_route = {
        route_key: Limits(
            rate=float(route.get("ThrottlingRateLimit", default.rate)),
            burst=int(route.get("ThrottlingBurstLimit", default.burst)),
        )
        for route_key, route in json.loads(env.get("LOCAL_API_ROUTE_THROTTLE") or "{}").items()
    }
    return RouteThrottle(default, per_route)


def gateway_rules(template: dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> GatewayRules:
    """The rules template.yaml gives the HttpApi, for the local stack's environment (default: ours)."""
    template = template or load_template()
    env = os.environ if env is None else env
    own_answers = env.get("LOCAL_API_CORS_ON_OWN_ANSWERS", "1").strip().lower() not in ("0", "false", "no", "off")
    return GatewayRules(cors_configuration(template, env), route_throttle(template, env), own_answers)
