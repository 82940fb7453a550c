"""DynamoDB, Chroma and OpenAI failing: a clear answer, and never an unmetered LLM call."""

import time

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from infra.local.api_server import LambdaContext
from tests.support.events import http_event, parse
from tests.support.servers import free_port

FIGHTER = {"question": "How many experience points does a fighter need to become 9th level?"}


def test_dynamodb_unreachable_fails_closed_without_calling_openai(make_app, call, openai_env, openai_state):
    dead = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{free_port()}", config=CLIENT_CONFIG)
    app, _ = make_app(openai_env, dynamodb_client=dead)

    status, body, headers = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=FIGHTER)))

    assert (status, body["error"]) == (503, "service_unavailable")
    assert "Retry-After" in headers
    assert openai_state.requests == []


def test_missing_collection_is_upstream_error(make_app, call):
    app, _ = make_app({"CHROMA_COLLECTION": "never_ingested"})

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=FIGHTER)))

    assert (status, body["error"]) == (502, "upstream_error")


def test_openai_answer_carries_the_usage_the_api_reported(make_app, call, openai_env, openai_state):
    app, _ = make_app(openai_env)

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=FIGHTER)))

    assert status == 200, body
    embedding_usage, chat_usage = (r["usage"] for r in openai_state.requests)
    assert body["usage"] == {
        "prompt_tokens": chat_usage["prompt_tokens"],
        "completion_tokens": chat_usage["completion_tokens"],
        "embedding_tokens": embedding_usage["prompt_tokens"],
        "model": "gpt-4o-mini",
    }
    assert body["answer"].startswith("According to the rules:")  # the fake model's text, through the SDK
    expected = (
        chat_usage["prompt_tokens"] * 0.15
        + chat_usage["completion_tokens"] * 0.60
        + embedding_usage["prompt_tokens"] * 0.02
    ) / 1e6
    assert body["meta"]["cost"]["query_cost"] == pytest.approx(expected, abs=1e-6)


def test_openai_transient_500_is_retried(make_app, call, openai_env, openai_state):
    app, _ = make_app(openai_env)
    openai_state.failures.extend([500])

    status, _, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=FIGHTER)))

    assert status == 200
    assert [r["status"] for r in openai_state.requests][:2] == [500, 200]


def test_slow_openai_is_cut_off_before_the_lambda_times_out(make_app, openai_env, openai_state):
    app, _ = make_app({**openai_env, "OPENAI_TIMEOUT_SECONDS": "8"})
    openai_state.delay_seconds = 3.0  # every attempt would take 3 s
    lambda_has = 8.0  # seconds left in the invocation

    started = time.monotonic()
    response = app.resolve(
        http_event("POST", "/api/query", token="dev-alice", body=FIGHTER),
        LambdaContext("test", timeout_seconds=lambda_has),
    )
    elapsed = time.monotonic() - started

    status, body, _ = parse(response)
    assert (status, body["error"]) == (502, "upstream_error")
    assert elapsed < lambda_has  # retries were shortened to fit, not abandoned by a Lambda timeout


def test_a_request_that_arrived_long_ago_is_cut_off_before_the_gateway_gives_up(make_app, openai_env, openai_state):
    # Given a request API Gateway received 22 s ago (a cold start's init ate the time), a Lambda
    # that still has its whole 29 s, and an OpenAI that takes 3 s per attempt
    app, container = make_app({**openai_env, "OPENAI_TIMEOUT_SECONDS": "8"})
    openai_state.delay_seconds = 3.0
    event = http_event("POST", "/api/query", token="dev-alice", body=FIGHTER)
    event["requestContext"]["timeEpoch"] = int((container.clock() - 22) * 1000)

    started = time.monotonic()
    status, body, _ = parse(app.resolve(event, LambdaContext("test", timeout_seconds=29)))
    elapsed = time.monotonic() - started

    # Then it answers before the gateway's 30 s (8 s left here), never the gateway's own 503
    assert (status, body["error"]) == (502, "upstream_error")
    assert elapsed < 8
    assert len([r for r in openai_state.requests if r["path"].endswith("/chat/completions")]) <= 2
