"""Idempotency-Key: a retried POST returns the first answer and is charged once."""

import uuid

import pytest

from dnd_rag.logic.limits.replays import REPLAY_POLICY
from dnd_rag.models.domain import User
from infra.local.bootstrap import ensure_table
from tests.support.events import http_event, parse

FIGHTER = {"question": "How many experience points does a fighter need to become 9th level?"}


@pytest.fixture
def app(make_app, any_user_auth_url):
    return make_app(
        {"AUTH_API_URL": any_user_auth_url, "TOKEN_BUCKET_CAPACITY": "15", "DAILY_USER_REQUEST_LIMIT": "30"}
    )[0]


@pytest.fixture
def token():
    return f"u-{uuid.uuid4().hex}"


def ask(call, app, token, key, body=FIGHTER):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return parse(call(app, http_event("POST", "/api/query", token=token, body=body, headers=headers)))


def usage(call, app, token):
    return parse(call(app, http_event("GET", "/api/usage", token=token)))[1]


def test_a_retry_with_the_same_key_gets_the_first_answer_and_no_second_charge(app, call, token):
    key = str(uuid.uuid4())

    first = ask(call, app, token, key)
    retry = ask(call, app, token, key)

    assert first[0] == retry[0] == 200
    assert retry[1] == first[1]  # the very same answer, meta included
    today = usage(call, app, token)
    assert today["today"]["requests"] == 1
    assert today["today"]["cost"] == first[1]["meta"]["cost"]["query_cost"]


def test_reusing_a_key_for_another_question_is_refused(app, call, token):
    key = str(uuid.uuid4())
    assert ask(call, app, token, key)[0] == 200

    status, body, _ = ask(call, app, token, key, body={"question": "What is a beholder?"})

    assert (status, body["error"]) == (422, "idempotency_key_reused")
    assert usage(call, app, token)["today"]["requests"] == 1


def test_keys_are_scoped_to_the_caller(app, call, token):
    key = str(uuid.uuid4())
    other = f"u-{uuid.uuid4().hex}"

    assert ask(call, app, token, key)[0] == 200
    assert ask(call, app, other, key)[0] == 200

    assert usage(call, app, other)["today"]["requests"] == 1


def test_without_a_key_every_request_is_new(app, call, token):
    ask(call, app, token, None)
    ask(call, app, token, None)

    assert usage(call, app, token)["today"]["requests"] == 2


@pytest.mark.parametrize("key", ["", "has space", "é" * 3, "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_validation_error(app, call, token, key):
    status, body, _ = ask(call, app, token, key)

    assert (status, body["error"]) == (400, "validation_error")
    assert usage(call, app, token)["today"]["requests"] == 0


def test_a_failed_attempt_is_not_remembered(make_app, any_user_auth_url, call, token):
    from tests.support.servers import free_port

    key = str(uuid.uuid4())
    broken, _ = make_app({"AUTH_API_URL": any_user_auth_url, "CHROMA_PORT": str(free_port())})
    healthy, _ = make_app({"AUTH_API_URL": any_user_auth_url})

    assert ask(call, broken, token, key)[0] == 502
    status, body, _ = ask(call, healthy, token, key)

    assert status == 200
    assert "250,001" in body["answer"]


# --- replays: behind the controls and a cheap per-user limit (issue 19) ---------------------------


@pytest.fixture
def own_table(make_app, any_user_auth_url, dynamodb):
    """An app on a table of its own (pausing is global), its container, and an operator."""
    table = f"replay-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    app, container = make_app({"AUTH_API_URL": any_user_auth_url, "TABLE_NAME": table})
    return app, container, User(id="op-replays", role="admin")


def test_a_replay_is_refused_while_its_user_is_blocked(own_table, call, token):
    app, container, operator = own_table
    key = str(uuid.uuid4())
    assert ask(call, app, token, key)[0] == 200

    container.operator.block(operator, token, "test")
    replays = [ask(call, app, token, key)[:2] for _ in range(3)]

    assert [(status, body["error"]) for status, body in replays] == [(403, "user_blocked")] * 3


def test_a_replay_is_refused_while_the_service_is_paused(own_table, call, token):
    app, container, operator = own_table
    key = str(uuid.uuid4())
    assert ask(call, app, token, key)[0] == 200

    container.operator.pause(operator, "incident", "test")
    status, body, headers = ask(call, app, token, key)

    assert (status, body["error"]) == (503, "service_paused")
    assert int(headers["Retry-After"]) > 0


def test_replays_count_against_a_per_user_limit_of_their_own(own_table, call, token):
    app, _, _ = own_table
    key = str(uuid.uuid4())
    assert ask(call, app, token, key)[0] == 200

    replays = [ask(call, app, token, key) for _ in range(20)]
    statuses = [status for status, _, _ in replays]

    assert statuses == [200] * REPLAY_POLICY.capacity + [429] * (20 - REPLAY_POLICY.capacity)
    refused = replays[-1]
    assert refused[1]["error"] == "rate_limited"
    assert int(refused[2]["Retry-After"]) > 0
    assert usage(call, app, token)["today"]["requests"] == 1  # replays spend none of the query quota
    other_key = str(uuid.uuid4())
    assert ask(call, app, token, other_key)[0] == 200  # nor block new questions
