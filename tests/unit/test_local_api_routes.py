"""The local API server routes as API Gateway does, from the template's events: explicit routes
first, the $default route for everything else (so `/` and unknown paths reach the Lambda)."""

import pytest

from infra.local.api_server import compile_routes, find_route
from infra.local.template import http_routes, load_template

ROUTES = compile_routes(http_routes(load_template()))


@pytest.mark.parametrize(
    ("method", "path", "route_key"),
    [
        ("GET", "/health", "GET /health"),
        ("POST", "/api/query", "POST /api/query"),
        ("GET", "/", "$default"),
        ("DELETE", "/", "$default"),
        ("GET", "/api/query", "$default"),
        ("OPTIONS", "/api/query", "OPTIONS /{proxy+}"),  # a preflight: a route (and a throttle bucket) of its own
        ("OPTIONS", "/api/admin/users/x/block", "OPTIONS /{proxy+}"),
        ("OPTIONS", "/", "$default"),
        ("BREW", "/health", "$default"),
        ("GET", "/no/such/path", "$default"),
        ("GET", "/health/", "$default"),
    ],
)
def test_each_request_reaches_the_route_api_gateway_would_pick(method, path, route_key):
    found = find_route(ROUTES, method, path)

    assert found is not None
    assert found[0].route_key == route_key


def test_without_a_default_route_an_unknown_path_matches_nothing():
    explicit_only = [c for c in ROUTES if not c.is_default]

    assert find_route(explicit_only, "GET", "/") is None
    assert find_route(explicit_only, "GET", "/health") is not None
