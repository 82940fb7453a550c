"""The local gateway's CORS and route throttling, read from template.yaml's HttpApi as HTTP API applies
them (infra/local/gateway_rules.py): configured headers for an allowed origin only, never the
integration's beside them, and a token bucket per route."""

import pytest

from infra.local.gateway_rules import CorsConfiguration, RouteThrottle, gateway_rules, with_gateway_cors
from infra.local.template import load_template

TEMPLATE = load_template()
ALLOWED = "http://127.0.0.1:3000"
LOCAL = {"CORS_ORIGINS": f"http://localhost:3000,{ALLOWED}"}
PREFLIGHT = {
    "origin": ALLOWED,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization",
}


def cors() -> CorsConfiguration:
    configured = gateway_rules(TEMPLATE, LOCAL).cors
    assert configured is not None
    return configured


def test_the_origins_are_the_ones_the_function_is_given_and_the_rest_is_the_template_s():
    assert cors() == CorsConfiguration(
        allow_origins=("http://localhost:3000", ALLOWED),
        allow_methods=("DELETE", "GET", "OPTIONS", "POST", "PUT"),
        allow_headers=("Authorization", "Content-Type", "Idempotency-Key"),
        expose_headers=("Retry-After", "X-Request-Id", "X-Next-Cursor", "Content-Disposition"),
        allow_credentials=True,
        max_age=600,
    )
    assert gateway_rules(TEMPLATE, {"CORS_ORIGINS": ""}).cors is None  # no origin, no CORS at all


def test_a_preflight_from_an_allowed_origin_gets_methods_headers_and_max_age():
    assert cors().headers_for("OPTIONS", PREFLIGHT) == {
        "Access-Control-Allow-Origin": ALLOWED,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "DELETE,GET,OPTIONS,POST,PUT",
        "Access-Control-Allow-Headers": "Authorization,Content-Type,Idempotency-Key",
        "Access-Control-Max-Age": "600",
    }


def test_an_answer_to_an_allowed_origin_exposes_retry_after_and_the_request_id():
    assert cors().headers_for("POST", {"origin": ALLOWED}) == {
        "Access-Control-Allow-Origin": ALLOWED,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After,X-Request-Id,X-Next-Cursor,Content-Disposition",
    }


@pytest.mark.parametrize(
    "request_headers",
    [
        {"origin": "https://evil.example", "access-control-request-method": "POST"},
        {"origin": "http://127.0.0.1:3000.evil.example"},
        {"origin": "http://127.0.0.1"},  # another port is another origin
        {"origin": "null"},
        {},
    ],
)
def test_another_origin_or_none_gets_no_cors_header(request_headers):
    assert cors().headers_for("OPTIONS", request_headers) == {}
    assert cors().headers_for("GET", request_headers) == {}


def test_the_integration_s_cors_headers_are_replaced_never_doubled():
    from_the_function = {
        "access-control-allow-origin": "https://evil.example",
        "Access-Control-Allow-Credentials": "false",
        "ACCESS-CONTROL-EXPOSE-HEADERS": "Set-Cookie",
        "X-Request-Id": "r1",
        "Vary": "Origin",
    }

    sent = with_gateway_cors(cors(), "GET", {"origin": ALLOWED}, from_the_function)
    refused = with_gateway_cors(cors(), "GET", {"origin": "https://evil.example"}, from_the_function)

    assert [v for k, v in sent.items() if k.lower() == "access-control-allow-origin"] == [ALLOWED]
    assert sent["Access-Control-Expose-Headers"] == "Retry-After,X-Request-Id,X-Next-Cursor,Content-Disposition"
    assert (sent["X-Request-Id"], sent["Vary"]) == ("r1", "Origin")
    assert not [k for k in refused if k.lower().startswith("access-control-")]
    assert with_gateway_cors(None, "GET", {"origin": ALLOWED}, from_the_function) == from_the_function


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_template_s_route_throttling_applies_per_route():
    throttle = gateway_rules(TEMPLATE, LOCAL).throttle

    assert (throttle.default.rate, throttle.default.burst) == (20.0, 50)  # RouteThrottling* defaults


def test_a_route_s_bucket_admits_its_burst_then_refills_at_its_rate():
    clock = Clock()
    throttle = gateway_rules(
        TEMPLATE,
        {
            **LOCAL,
            "LOCAL_API_ROUTE_THROTTLE": '{"POST /api/query": {"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 0.5}}',
        },
    ).throttle
    throttle = RouteThrottle(throttle.default, throttle.per_route, clock)

    admitted = [throttle.admit("POST /api/query") for _ in range(3)]
    clock.now += 1.9
    still_empty = throttle.admit("POST /api/query")
    clock.now += 0.1
    refilled = throttle.admit("POST /api/query")

    assert admitted == [True, True, False]
    assert (still_empty, refilled) == (False, True)
    assert all(throttle.admit("OPTIONS /{proxy+}") for _ in range(50))  # other routes: buckets of their own
    assert not throttle.admit("OPTIONS /{proxy+}")


def test_the_default_limits_can_be_changed_for_a_local_run():
    throttle = gateway_rules(TEMPLATE, {**LOCAL, "LOCAL_API_THROTTLE_RATE": "1000", "LOCAL_API_THROTTLE_BURST": "500"})

    assert (throttle.throttle.default.rate, throttle.throttle.default.burst) == (1000.0, 500)
    assert throttle.cors_on_own_answers
    assert not gateway_rules(TEMPLATE, {**LOCAL, "LOCAL_API_CORS_ON_OWN_ANSWERS": "0"}).cors_on_own_answers
