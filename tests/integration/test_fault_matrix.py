"""The fault matrix (SPEC §7): each dependency failing, the answer it gets, and what is given back.

Every row uses a user of its own, so "nothing lost" is checked exactly: after the failure the
user's bucket and daily count are untouched and no budget is left held. What the provider may
have billed stays spent (SPEC §4 "ground truth"): never less than the fake OpenAI billed.
"""

import json
import socket
import threading
import time
import uuid

import boto3
import pytest

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.dal.money.budget import DynamoBudgetStore
from dnd_rag.errors import StoreUnavailableError
from dnd_rag.models.money import HoldEntry
from infra.local.bootstrap import ensure_table
from tests.support.events import http_event, parse
from tests.support.servers import free_port

QUESTION = {"question": "What is a beholder?", "k": 3}


@pytest.fixture
def env(base_env, any_user_auth_url, dynamodb):
    table = f"faults-{uuid.uuid4().hex[:12]}"  # its own budget: "no budget held" is then exact
    ensure_table(dynamodb, table)
    return {
        **base_env,
        "AUTH_API_URL": any_user_auth_url,
        "TABLE_NAME": table,
        "TOKEN_BUCKET_CAPACITY": "15",
        "DAILY_USER_REQUEST_LIMIT": "30",
    }


@pytest.fixture
def token():
    return f"u-{uuid.uuid4().hex}"


def budget_books(dynamodb, table):
    """(held by open holds, spent) over the table's days."""
    items = [i for i in dynamodb.scan(TableName=table)["Items"] if i["pk"]["S"].startswith("BUDGET#")]
    committed = sum(int(item.get("committed", {}).get("N", 0)) for item in items)
    spent = sum(int(item.get("spent", {}).get("N", 0)) for item in items)
    return committed - spent, spent


@pytest.mark.parametrize(
    ("fault", "failures", "delay", "may_be_billed"),
    [
        ("openai 500 three times", [500, 500, 500], 0.0, True),
        ("openai 429 three times", [429, 429, 429], 0.0, False),
        ("openai timeout", [], 1.5, True),
    ],
)
def test_openai_failures_are_502_give_the_user_everything_back_and_keep_what_may_be_billed(
    make_app, call, env, openai_env, openai_state, token, dynamodb, fault, failures, delay, may_be_billed
):
    app, _ = make_app(
        {
            **openai_env,
            **{k: v for k, v in env.items() if k != "CHROMA_COLLECTION"},
            "LLM_PROVIDER": "openai",
            "EMBEDDING_PROVIDER": "openai",
        }
    )
    openai_state.failures.extend(failures)
    openai_state.delay_seconds = delay

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))

    assert (status, body["error"]) == (502, "upstream_error"), fault
    if failures:
        assert len(openai_state.requests) == 3  # one try and two bounded retries
    held, spent = budget_books(dynamodb, env["TABLE_NAME"])
    assert held == 0
    billed = sum(r["cost_nanos"] for r in openai_state.billed)  # what the fake OpenAI billed
    assert spent >= billed  # the books never fall below what the provider billed
    assert (spent > 0) == may_be_billed  # a 429 is never billed; a 5xx or a timeout may be
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["daily_remaining"], usage["today"]["requests"]) == (15, 30, 0)


def test_a_retry_after_longer_than_the_deadline_is_not_waited_for(
    make_app, call, env, openai_env, openai_state, token, dynamodb
):
    providers = {"LLM_PROVIDER": "openai", "EMBEDDING_PROVIDER": "openai"}
    app, _ = make_app({**openai_env, **{k: v for k, v in env.items() if k != "CHROMA_COLLECTION"}, **providers})
    openai_state.failures.extend([429, 429, 429])
    openai_state.retry_after = 120.0  # what the SDK would have slept through, past API Gateway's 30 s

    started = time.monotonic()
    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))

    assert (status, body["error"]) == (502, "upstream_error")
    assert time.monotonic() - started < 10
    assert len(openai_state.requests) == 1  # no second attempt: its wait would pass the deadline
    assert budget_books(dynamodb, env["TABLE_NAME"]) == (0, 0)  # a 429 is never billed


def test_chroma_down_is_502_and_gives_everything_back(make_app, call, env, token, dynamodb):
    app, _ = make_app({**env, "CHROMA_PORT": str(free_port())})

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))

    assert (status, body["error"]) == (502, "upstream_error")
    assert "chroma" not in body["message"].lower()  # internals stay in the logs
    held, spent = budget_books(dynamodb, env["TABLE_NAME"])
    assert held == 0
    assert spent > 0  # the embedding was made before Chroma failed: it stays charged
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["today"]["requests"]) == (15, 0)


@pytest.fixture
def black_hole_port():
    """A server that accepts connections and never answers: a hung dependency."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted = []

    def accept_forever():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_hung_chroma_is_502_within_its_timeouts_not_a_lambda_timeout(
    make_app, call, env, token, dynamodb, black_hole_port
):
    app, _ = make_app({**env, "CHROMA_PORT": str(black_hole_port), "CHROMA_TIMEOUT_SECONDS": "0.5"})

    started = time.monotonic()
    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))
    elapsed = time.monotonic() - started

    assert (status, body["error"]) == (502, "upstream_error")
    assert elapsed < 10  # two attempts of 0.5 s, far inside the 29 s Lambda timeout
    held, _ = budget_books(dynamodb, env["TABLE_NAME"])
    assert held == 0
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["today"]["requests"]) == (15, 0)


# One retry budget per request (dal/dynamo.py): a throttled write is sent twice (the SDK's one
# retry, none of ours: the item is hot), a 500 at most 2 x 5 times (a lost answer is worth resending).
@pytest.mark.parametrize(("fault", "most_sends", "retry_after"), [("internal_error", 10, "5"), ("throttle", 2, "2")])
def test_a_store_error_after_admission_gives_the_token_and_the_daily_count_back(
    make_app, call, env, token, dynamodb, emulator_faults, fault, most_sends, retry_after
):
    app, _ = make_app(env)
    # the budget's writes keep failing after the admission succeeded
    emulator_faults.set([{"fault": fault, "key_prefix": "BUDGET#", "operations": ["UpdateItem"]}])

    status, body, headers = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))
    sends = emulator_faults.injected()[fault]["UpdateItem"]
    emulator_faults.clear()

    assert (status, body["error"]) == (503, "service_unavailable")
    assert headers["Retry-After"] == retry_after
    # three writes on the total, each within the bound: the hold, then giving it back twice (the
    # budget's own give-back and the wallet's undo; a hold that is not there is left alone)
    assert 2 <= sends <= 3 * most_sends
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["daily_remaining"], usage["today"]["requests"]) == (15, 30, 0)


@pytest.mark.parametrize(("fault", "most_sends"), [("internal_error", 10), ("throttle", 2)])
def test_one_write_is_sent_within_the_retry_budget(env, emulator_faults, fault, most_sends):
    store = DynamoBudgetStore(boto3.client("dynamodb", config=CLIENT_CONFIG), env["TABLE_NAME"])  # the function's
    entry = HoldEntry(100, 0.0, "u", "gpt-4o-mini")
    emulator_faults.set([{"fault": fault, "key_prefix": "BUDGET#"}])

    with pytest.raises(StoreUnavailableError):
        store.try_reserve("2026-11-22", "h1", entry, 1_000, 0.0)
    sends = emulator_faults.injected()[fault]["UpdateItem"]
    emulator_faults.clear()

    assert sends == most_sends


def test_auth_api_down_is_503_and_consumes_nothing(make_app, call, env, token, dynamodb):
    down, _ = make_app({**env, "AUTH_API_URL": f"http://127.0.0.1:{free_port()}"})

    status, body, headers = parse(call(down, http_event("POST", "/api/query", token=token, body=QUESTION)))

    assert (status, body["error"]) == (503, "auth_unavailable")
    assert "Retry-After" in headers
    assert not [i for i in dynamodb.scan(TableName=env["TABLE_NAME"])["Items"] if not i["pk"]["S"].startswith("IP#")]


def test_an_unexpected_error_is_500_without_internals(make_app, call, env, token, monkeypatch):
    class ExplodingRag:
        def answer(self, *args, **kwargs):
            raise RuntimeError("secret detail at /var/task/dnd_rag/logic/retrieval/rag.py line 42")

    monkeypatch.setattr(Container, "rag", property(lambda self: ExplodingRag()))
    app, _ = make_app(env)

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))

    assert (status, body["error"]) == (500, "internal_error")
    assert "secret" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)
    assert body["request_id"]
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert usage["today"]["requests"] == 0  # an admitted request that failed is given back


@pytest.mark.parametrize(
    "question",
    [
        "What is a beholder?\x00\x07\x1b[31m",  # NUL, bell, an ANSI escape
        "Qu'est-ce qu'un beholder ? 👁️‍🗨️ \u202e\u200b",  # emoji sequences, bidi override, zero width
    ],
)
def test_unicode_and_control_characters_are_answered_safely(make_app, call, env, token, question):
    app, _ = make_app(env)
    raw = json.dumps({"question": question})  # json.dumps escapes what must be escaped

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, raw_body=raw)))

    assert status == 200, body
    assert "beholder" in body["answer"].lower()


def test_a_lone_surrogate_is_a_clear_validation_error(make_app, call, env, token):
    app, _ = make_app(env)
    raw = '{"question": "beholder \\ud83d"}'  # valid JSON, but not Unicode text

    status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, raw_body=raw)))

    assert (status, body["error"]) == (400, "validation_error")
    assert body["details"][0]["field"] == "question"
