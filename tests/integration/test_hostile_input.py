"""Input below the OpenAPI schema (transport encoding, headers, parser limits, routes) through the
real Lambda entry point: each answers 4xx in the SPEC §3 shape with X-Request-Id, never a 5xx.

These are the inputs that used to answer 500 internal_error (or API Gateway's own 404)."""

import base64
import json

import pytest

from tests.support.events import http_event, lambda_context, parse

QUESTION = {"question": "What is a beholder?"}
ALLOWED_ORIGIN = "http://localhost:3000"


@pytest.fixture
def invoke(lambda_module):
    def run(event):
        response = lambda_module.lambda_handler(event, lambda_context())
        status, body, headers = parse(response)
        assert headers["X-Request-Id"] == event["requestContext"]["requestId"]
        return status, body, headers

    return run


def assert_error(result, status, code):
    actual_status, body, headers = result
    assert (actual_status, body.get("error")) == (status, code), body
    assert body["message"]
    assert body["request_id"] == headers["X-Request-Id"]
    return body


def query_event(raw_body, *, base64_encoded=False, content_type="application/json", token="dev-alice"):
    event = http_event("POST", "/api/query", token=token, headers={"content-type": content_type})
    event["body"] = raw_body
    event["isBase64Encoded"] = base64_encoded
    return event


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- bodies: transport encoding ---------------------------------------------------------------


def test_a_base64_body_that_is_valid_json_is_answered(invoke):
    status, body, _ = invoke(query_event(b64(json.dumps(QUESTION).encode()), base64_encoded=True))

    assert status == 200, body
    assert body["answer"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe{\x00",  # not UTF-8 at all
        b'{"question": "caf\xe9"}',  # Latin-1, not UTF-8
        '{"question": "hi"}'.encode("utf-16"),  # another encoding of valid JSON
        b'{"question": "\xed\xa0\x80"}',  # an encoded surrogate: invalid UTF-8
    ],
)
def test_a_body_that_is_not_utf8_is_invalid_json(invoke, raw):
    assert_error(
        invoke(query_event(b64(raw), base64_encoded=True, content_type="application/octet-stream")), 400, "invalid_json"
    )


@pytest.mark.parametrize("raw", ["not base64!", "e30", "////====", "\u00e9\u00e9\u00e9\u00e9"])
def test_a_body_flagged_base64_that_is_not_base64_is_invalid_json(invoke, raw):
    assert_error(invoke(query_event(raw, base64_encoded=True)), 400, "invalid_json")


def test_a_text_body_with_a_lone_surrogate_is_invalid_json(invoke):
    assert_error(invoke(query_event('{"question": "\ud800"}')), 400, "invalid_json")


def test_the_size_limit_counts_decoded_bytes(invoke):
    big = json.dumps({"question": "x" * (17 * 1024)}).encode()

    assert_error(invoke(query_event(b64(big), base64_encoded=True)), 413, "payload_too_large")


# --- bodies: pathological JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"question": "hi", "k": ' + "9" * 5000 + "}",  # a number with thousands of digits
        '{"question": "hi", "k": 1' + "0" * 3000 + ".5}",
        '{"question": "hi", "k": 1e999999}',  # overflows to infinity
        '{"question": "hi", "k": NaN}',  # not JSON
        '{"question": "hi", "k": -Infinity}',
        '{"question": ' + "[" * 5000 + "]" * 5000 + "}",  # deep nesting
        '{"question": "hi", "x": ' + '{"a":' * 2000 + "1" + "}" * 2000 + "}",
        '{"question": "a", "question": "b"}',  # duplicate keys: which one is meant?
        '{"question": "hi", "debug": false, "debug": true}',
    ],
)
def test_pathological_json_is_invalid_json(invoke, raw):
    assert_error(invoke(query_event(raw)), 400, "invalid_json")


def test_brackets_inside_strings_do_not_count_as_nesting(invoke):
    status, body, _ = invoke(query_event(json.dumps({"question": "[" * 200 + "What is a beholder?"})))

    assert status == 200, body


# --- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "image/png",
        "\u00e9/\u00e9",
    ],
)
def test_json_with_another_content_type_is_still_answered(invoke, content_type):
    status, body, _ = invoke(query_event(json.dumps(QUESTION), content_type=content_type))

    assert status == 200, body


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/x-www-form-urlencoded", "question=hi&k=3"),
        (
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="question"\r\n\r\nhi\r\n--x--',
        ),
        ("application/xml", "<question>hi</question>"),
    ],
)
def test_a_non_json_body_is_invalid_json_whatever_its_content_type(invoke, content_type, raw):
    assert_error(invoke(query_event(raw, content_type=content_type)), 400, "invalid_json")


# --- headers and bearer tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer d\u00e9v-alice",  # non-ASCII
        "Bearer dev-\u4e2d\u6587",
        "Bearer \U0001f600",
        "Bearer dev\x00alice",  # control characters
        "Bearer dev\x7falice",
        "Bearer dev\talice",
        "Bearer dev\r\nX-Injected: 1",
        "Bearer " + "a" * 5000,  # longer than any token
        "Bearer",
        "Bearer ",
        "\u00e9",
    ],
)
def test_a_malformed_bearer_is_missing_token(invoke, authorization):
    event = http_event("POST", "/api/query", body=QUESTION, headers={"authorization": authorization})

    assert_error(invoke(event), 401, "missing_token")


@pytest.mark.parametrize("key", ["\u043a\u043b\u044e\u0447", "a b", "x\x00y", "k" * 300])
def test_a_malformed_idempotency_key_is_a_validation_error(invoke, key):
    event = http_event("POST", "/api/query", token="dev-alice", body=QUESTION, headers={"idempotency-key": key})

    assert_error(invoke(event), 400, "validation_error")


def test_non_ascii_and_control_characters_in_other_headers_are_harmless(invoke):
    event = http_event(
        "POST",
        "/api/query",
        token="dev-alice",
        body=QUESTION,
        headers={"user-agent": "\u00e9\x00\U0001f600", "origin": "http://\u00e9vil.example", "x-forwarded-for": "\x01"},
    )
    event["cookies"] = ["a=\u00e9", "=", ";;", "\x00"]
    event["rawQueryString"] = "k=%ff%fe&\u00e9=1"
    event["queryStringParameters"] = {"k": "\ufffd", "\u00e9": "1"}

    status, body, headers = invoke(event)

    assert status == 200, body
    assert "Access-Control-Allow-Origin" not in headers


# --- routes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("POST", "/"), ("DELETE", "/"), ("GET", "/api/nothing"), ("GET", "/%00"), ("GET", "/\u00e9")],
)
def test_root_and_unknown_paths_are_not_found(invoke, method, path):
    assert_error(invoke(http_event(method, path)), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [("PATCH", "/api/query"), ("BREW", "/health"), ("DELETE", "/api/usage")])
def test_unknown_methods_on_known_paths_are_method_not_allowed(invoke, method, path):
    assert_error(invoke(http_event(method, path)), 405, "method_not_allowed")


# --- Vary: Origin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "origin"),
    [
        ("GET", "/health", ALLOWED_ORIGIN),
        ("GET", "/health", "https://evil.example"),
        ("GET", "/health", None),
        ("GET", "/", ALLOWED_ORIGIN),
        ("POST", "/api/query", ALLOWED_ORIGIN),  # 401: errors vary by origin too
        ("OPTIONS", "/api/query", ALLOWED_ORIGIN),
    ],
)
def test_every_answer_varies_by_origin(invoke, method, path, origin):
    headers = {"origin": origin, "access-control-request-method": "POST"} if origin else {}

    _, _, response_headers = invoke(http_event(method, path, headers=headers))

    assert response_headers["Vary"] == "Origin"
    assert ("Access-Control-Allow-Origin" in response_headers) == (origin == ALLOWED_ORIGIN)
