"""Auth against real HTTP servers, and the shared DynamoDB token cache on the emulator."""

import hashlib
import json
import time

import pytest

from tests.fakes.auth_faults import start_faulty_auth
from tests.support.events import http_event, lambda_context, parse
from tests.support.servers import free_port

QUESTION = {"question": "What is a beholder?"}


@pytest.fixture(scope="module")
def faulty_auth_url():
    server = start_faulty_auth()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _auth_unavailable(response):
    status, body, headers = parse(response)
    assert status == 503, body
    assert body["error"] == "auth_unavailable"
    assert int(headers["Retry-After"]) > 0
    assert "reason" not in body  # internals stay in the logs


@pytest.mark.parametrize("variant", ["broken", "garbled"])
def test_auth_api_errors_are_503_not_401(make_app, call, faulty_auth_url, unique_token, variant):
    app, _ = make_app({"AUTH_API_URL": f"{faulty_auth_url}/{variant}"})

    _auth_unavailable(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))


def test_auth_api_unreachable_is_503(make_app, call, unique_token):
    app, _ = make_app({"AUTH_API_URL": f"http://127.0.0.1:{free_port()}"})

    _auth_unavailable(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))


def test_slow_auth_api_times_out_as_503(make_app, call, faulty_auth_url, unique_token):
    app, _ = make_app({"AUTH_API_URL": f"{faulty_auth_url}/slow", "AUTH_TIMEOUT_SECONDS": "0.5"})

    started = time.monotonic()
    _auth_unavailable(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))

    assert time.monotonic() - started < 2.5  # the configured timeout bounded the wait, not the server


def test_valid_token_is_cached_in_dynamodb_by_hash_only(make_app, call, dynamodb, table_name):
    app, _ = make_app()

    status, _, _ = parse(call(app, http_event("POST", "/api/query", token="dev-bob", body=QUESTION)))

    assert status == 200
    item = dynamodb.get_item(TableName=table_name, Key={"pk": {"S": f"TOKEN#{_sha('dev-bob')}"}, "sk": {"S": "AUTH"}})[
        "Item"
    ]
    assert item["valid"]["BOOL"] is True
    assert json.loads(item["user"]["S"])["email"] == "bob@example.com"
    assert int(item["expires_at"]["N"]) == pytest.approx(time.time() + 300, abs=10)


def test_no_raw_token_is_ever_stored(make_app, call, dynamodb, table_name, unique_token):
    app, _ = make_app()
    call(app, http_event("POST", "/api/query", token="dev-alice", body=QUESTION))
    call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION))

    dump = json.dumps(dynamodb.scan(TableName=table_name)["Items"])

    assert "dev-alice" not in dump
    assert unique_token not in dump
    assert _sha(unique_token) in dump


def test_a_cold_container_uses_the_shared_cache_when_the_auth_api_is_down(make_app, call):
    warm, _ = make_app()
    assert parse(call(warm, http_event("POST", "/api/query", token="dev-alice", body=QUESTION)))[0] == 200

    cold, _ = make_app({"AUTH_API_URL": f"http://127.0.0.1:{free_port()}"})
    status, body, _ = parse(call(cold, http_event("POST", "/api/query", token="dev-alice", body=QUESTION)))

    assert status == 200, body


def test_rejected_tokens_are_negatively_cached(make_app, call, dynamodb, table_name, unique_token):
    app, _ = make_app()
    assert parse(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))[0] == 401

    item = dynamodb.get_item(
        TableName=table_name, Key={"pk": {"S": f"TOKEN#{_sha(unique_token)}"}, "sk": {"S": "AUTH"}}
    )["Item"]
    assert item["valid"]["BOOL"] is False
    assert int(item["expires_at"]["N"]) == pytest.approx(time.time() + 30, abs=10)

    cold, _ = make_app({"AUTH_API_URL": f"http://127.0.0.1:{free_port()}"})
    status, body, _ = parse(call(cold, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))
    assert (status, body["error"]) == (401, "invalid_token")  # answered from the cache, auth API not needed


def test_an_expired_shared_entry_is_not_trusted(make_app, call, dynamodb, table_name, unique_token):
    dynamodb.put_item(
        TableName=table_name,
        Item={
            "pk": {"S": f"TOKEN#{_sha(unique_token)}"},
            "sk": {"S": "AUTH"},
            "valid": {"BOOL": True},
            "user": {"S": json.dumps({"id": "ghost"})},
            "expires_at": {"N": str(int(time.time()) - 1)},
        },
    )
    app, _ = make_app({"AUTH_API_URL": f"http://127.0.0.1:{free_port()}"})

    _auth_unavailable(call(app, http_event("POST", "/api/query", token=unique_token, body=QUESTION)))


def test_logs_carry_a_hashed_user_and_never_the_token(lambda_module, capfd, caplog, unique_token):
    caplog.set_level("DEBUG")
    for token in ("dev-alice", unique_token):
        lambda_module.lambda_handler(http_event("POST", "/api/query", token=token, body=QUESTION), lambda_context())

    stdout = capfd.readouterr().out
    every_record = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records])
    ours = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records if r.name == "dnd_rag"])
    for text in (stdout, every_record):  # not even botocore/httpx debug logs see a token
        assert "dev-alice" not in text
        assert unique_token not in text
    assert "00000000-0000-4000-a000-00000000a11c" not in stdout + ours  # our logs hash the user id
    assert '"error": "invalid_token"' in ours
