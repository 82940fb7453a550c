"""What every response carries and what prod does not serve (SPEC §3, issue 19), through the real
Lambda entry point: nosniff everywhere, no-store on API JSON, HSTS in prod, /docs only outside prod
(cached, with a CSP that forbids framing), and no error message that echoes client input."""

import base64
import hashlib
import importlib
import json
import re
import sys

import pytest
from aws_lambda_powertools.event_handler.openapi import swagger_ui

from tests.support.events import http_event, lambda_context

QUESTION = {"question": "What is a beholder?", "k": 3}
PROD = {
    "STAGE": "prod",
    "AUTH_API_URL": "https://auth.example.invalid",  # prod refuses http; these requests need no sign-in
    "CORS_ORIGINS": "https://react.example.com",
}
MARKER = "zq7echo"


@pytest.fixture
def cold_start(base_env, corpus_ingested, monkeypatch):
    """The Lambda entry module, imported afresh (a cold start) with these settings."""

    def start(**overrides):
        for key, value in {**base_env, **overrides}.items():
            monkeypatch.setenv(key, value)
        sys.modules.pop("dnd_rag.handlers.api", None)
        return importlib.import_module("dnd_rag.handlers.api")

    return start


def run(module, method, path, **kwargs):
    response = module.lambda_handler(http_event(method, path, **kwargs), lambda_context())
    headers = dict(response.get("headers") or {})
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return int(response["statusCode"]), body, headers


API_JSON = [
    ("GET", "/health", {}),
    ("POST", "/api/query", {"body": QUESTION}),  # 401
    ("POST", "/api/query", {"body": QUESTION, "token": "dev-alice"}),
    ("GET", "/api/usage", {"token": "dev-alice"}),
    ("GET", "/api/admin/usage", {"token": "dev-bob"}),  # 403
    ("GET", "/nothing-here", {}),  # 404
    ("PATCH", "/api/query", {}),  # 405
    ("POST", "/api/query", {"raw_body": "{", "token": "dev-alice"}),  # 400
]


def test_every_response_carries_nosniff_and_api_json_is_no_store(cold_start):
    module = cold_start()
    preflight = {"headers": {"origin": "http://localhost:3000", "access-control-request-method": "POST"}}

    answers = [run(module, method, path, **kwargs) for method, path, kwargs in API_JSON]
    others = [run(module, "OPTIONS", "/api/query", **preflight), run(module, "GET", "/openapi.json")]

    for status, _, headers in answers + others:
        assert headers.get("X-Content-Type-Options") == "nosniff", (status, headers)
        assert "Strict-Transport-Security" not in headers  # plain http on a laptop: no HSTS outside prod
    for status, _, headers in answers:
        assert headers.get("Cache-Control") == "no-store", (status, headers)
    assert [status for status, _, _ in answers] == [200, 401, 200, 200, 403, 404, 405, 400]


def test_prod_sends_hsts_on_every_response_and_serves_no_docs(cold_start):
    module = cold_start(**PROD)

    docs = run(module, "GET", "/docs")
    answers = [docs, run(module, "GET", "/health"), run(module, "GET", "/nothing-here"), run(module, "GET", "/")]

    assert docs[0] == 404
    assert json.loads(docs[1])["error"] == "not_found"
    for _, _, headers in answers:
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_docs_are_built_once_per_container_and_forbid_framing_and_foreign_scripts(cold_start, monkeypatch):
    builds = []
    original = swagger_ui.generate_swagger_html

    def counting(*args, **kwargs):
        builds.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(swagger_ui, "generate_swagger_html", counting)
    module = cold_start()

    first = run(module, "GET", "/docs", headers={"accept-encoding": "gzip"})
    second = run(module, "GET", "/docs")

    assert (first[0], second[0], len(builds)) == (200, 200, 1)
    headers = second[2]
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert headers["X-Frame-Options"] == "DENY"
    page = second[1] if isinstance(second[1], str) else second[1].decode()
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert scripts
    for script in scripts:  # every inline script is allowed by its hash, nothing else is
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "no-store" not in headers["Cache-Control"]


def test_the_openapi_document_is_built_once_per_container(cold_start, monkeypatch):
    module = cold_start()
    calls = []
    original = module.app.get_openapi_json_schema
    monkeypatch.setattr(module.app, "get_openapi_json_schema", lambda **kw: calls.append(1) or original(**kw))

    first, second = run(module, "GET", "/openapi.json"), run(module, "GET", "/openapi.json")

    assert (first[0], second[0]) == (200, 200)
    assert json.loads(first[1]) == json.loads(second[1])
    assert len(calls) <= 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", f"/{MARKER}", {}),
        ("GET", f"/api/{MARKER}/x", {}),
        (MARKER.upper(), "/health", {}),
        ("DELETE", "/api/query", {"headers": {"x-note": MARKER}}),
        ("POST", "/api/query", {"body": {"question": MARKER, "k": MARKER}, "token": "dev-alice"}),
        ("POST", "/api/query", {"body": {"question": "", MARKER: 1}, "token": "dev-alice"}),
        ("POST", "/api/query", {"raw_body": f'{{"question": "{MARKER}",', "token": "dev-alice"}),
        ("POST", "/api/query", {"body": QUESTION, "token": "dev-alice", "headers": {"idempotency-key": MARKER * 40}}),
        ("PUT", f"/api/admin/users/{MARKER}%20x/block", {"token": "dev-admin"}),
        ("PUT", "/api/admin/budget", {"body": {"daily_budget_usd": MARKER}, "token": "dev-admin"}),
        ("POST", "/api/query", {"token": f"{MARKER}\u00e9"}),
    ],
)
def test_no_error_message_echoes_client_input(cold_start, method, path, kwargs):
    module = cold_start()

    status, body, _ = run(module, method, path, **kwargs)

    assert 400 <= status < 500, body
    assert MARKER not in body.lower(), body


# --- CORS written by the gateway (CORS_BY_GATEWAY, as template.yaml sets it) ---------------------

ORIGIN = "http://localhost:3000"
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization",
}


def cors_headers(headers):
    return {name: value for name, value in headers.items() if name.lower().startswith("access-control-")}


@pytest.mark.parametrize("path", ["/api/query", "/api/admin/users/someone/block", "/", "/nothing-here"])
def test_when_the_gateway_owns_cors_a_preflight_is_answered_204_without_cors_headers(cold_start, path):
    module = cold_start(CORS_BY_GATEWAY="true")

    status, body, headers = run(module, "OPTIONS", path, headers=PREFLIGHT)

    assert (status, body) == (204, "")  # an ok status: the gateway writes the headers
    assert cors_headers(headers) == {}
    assert headers["Vary"] == "Origin"  # the gateway's Access-Control-Allow-Origin depends on it


def test_when_the_gateway_owns_cors_no_answer_of_the_function_carries_a_cors_header(cold_start):
    module = cold_start(CORS_BY_GATEWAY="true")

    answers = [
        run(module, method, path, **{**kwargs, "headers": {"origin": ORIGIN}}) for method, path, kwargs in API_JSON
    ]

    assert [status for status, _, _ in answers] == [200, 401, 200, 200, 403, 404, 405, 400]
    for status, _, headers in answers:
        assert cors_headers(headers) == {}, (status, headers)
        assert headers["Vary"] == "Origin"


def test_called_directly_the_function_answers_cors_itself(cold_start):
    module = cold_start()  # no CORS_BY_GATEWAY: a handler called without API Gateway's CorsConfiguration

    status, _, headers = run(module, "OPTIONS", "/api/query", headers=PREFLIGHT)
    _, _, answer = run(module, "GET", "/health", headers={"origin": ORIGIN})

    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == answer["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in answer["Access-Control-Expose-Headers"]
