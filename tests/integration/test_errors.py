"""Every rejection in the SPEC §3 shape: code, human message, request id, context."""

import pytest

from tests.support.events import http_event, lambda_context, parse

QUESTION = {"question": "What is a beholder?"}


@pytest.fixture
def app(make_app):
    return make_app()[0]


def assert_error(response, status, code):
    actual_status, body, headers = parse(response)
    assert actual_status == status, body
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["request_id"]
    assert "Traceback" not in str(body)
    return body, headers


def test_no_token_is_missing_token(app, call):
    assert_error(call(app, http_event("POST", "/api/query", body=QUESTION)), 401, "missing_token")


def test_malformed_authorization_is_missing_token(app, call):
    event = http_event("POST", "/api/query", body=QUESTION, headers={"authorization": "Basic ZGV2OmRldg=="})

    assert_error(call(app, event), 401, "missing_token")


def test_unknown_token_is_invalid_token(app, call, unique_token):
    assert_error(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)), 401, "invalid_token")


def test_empty_object_is_a_validation_error_naming_the_field(app, call):
    body, _ = assert_error(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={})), 400, "validation_error"
    )

    assert body["details"] == [{"field": "question", "message": "Field required", "type": "missing"}]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"question": ""}, "question"),
        ({"question": "   "}, "question"),
        ({"question": 42}, "question"),
        ({"question": None}, "question"),
        ({"question": "ok", "k": 0}, "k"),
        ({"question": "ok", "k": 51}, "k"),
        ({"question": "ok", "k": "5"}, "k"),
        ({"question": "ok", "k": 2.5}, "k"),
        ({"question": "ok", "k": True}, "k"),
        ({"question": "ok", "debug": "yes"}, "debug"),
    ],
)
def test_wrong_fields_are_validation_errors(app, call, payload, field):
    body, _ = assert_error(
        call(app, http_event("POST", "/api/query", token="dev-alice", body=payload)), 400, "validation_error"
    )

    assert field in {d["field"] for d in body["details"]}


@pytest.mark.parametrize("payload", [[1, 2], "question", 7])
def test_json_that_is_not_an_object_is_a_validation_error(app, call, payload):
    assert_error(call(app, http_event("POST", "/api/query", token="dev-alice", body=payload)), 400, "validation_error")


@pytest.mark.parametrize("raw", ['{"question":', "question=hi", "\x00\x01", "{'question': 'single quotes'}"])
def test_broken_json_is_invalid_json(app, call, raw):
    assert_error(call(app, http_event("POST", "/api/query", token="dev-alice", raw_body=raw)), 400, "invalid_json")


def test_question_longer_than_the_configured_maximum_is_rejected(make_app, call):
    app, _ = make_app({"MAX_QUESTION_CHARS": "50"})

    body, _ = assert_error(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": "x" * 51})),
        400,
        "validation_error",
    )

    assert body["details"][0]["field"] == "question"


def test_body_over_16_kib_is_payload_too_large(app, call):
    huge = {"question": "x" * (1024 * 1024)}

    assert_error(call(app, http_event("POST", "/api/query", token="dev-alice", body=huge)), 413, "payload_too_large")


def test_huge_invalid_body_is_still_payload_too_large(app, call):
    assert_error(
        call(app, http_event("POST", "/api/query", token="dev-alice", raw_body="{" * 20_000)), 413, "payload_too_large"
    )


def test_unknown_path_is_not_found(app, call):
    assert_error(call(app, http_event("GET", "/api/nothing-here")), 404, "not_found")


def test_wrong_method_is_method_not_allowed_with_allow(app, call):
    _, headers = assert_error(call(app, http_event("GET", "/api/query", token="dev-alice")), 405, "method_not_allowed")

    assert headers["Allow"] == "OPTIONS, POST"


def test_lambda_handler_stamps_x_request_id_on_every_response(lambda_module):
    for event in (
        http_event("GET", "/health"),
        http_event("GET", "/missing"),
        http_event("POST", "/api/query", body=QUESTION),
    ):
        response = lambda_module.lambda_handler(event, lambda_context())
        _, body, headers = parse(response)

        assert headers["X-Request-Id"] == event["requestContext"]["requestId"]
        if body.get("error"):
            assert body["request_id"] == headers["X-Request-Id"]
