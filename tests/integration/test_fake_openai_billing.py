"""The fake OpenAI server's record of what OpenAI would bill, seen through the real ``openai`` client."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_server import FakeOpenAIState
from tests.support.billing import billed_nanos, fetch_billed
from tests.support.servers import free_port, python_env, running

CHAT_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
MESSAGES: Any = [{"role": "user", "content": "[1] (source: srd)\nA fighter gains proficiency with all armor."}]


@pytest.fixture
def base_url(fake_openai: tuple[str, FakeOpenAIState], openai_state: FakeOpenAIState) -> str:
    return fake_openai[0]


def client(base_url: str, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-key", base_url=base_url, max_retries=0, timeout=timeout)


def control(base_url: str, **body: Any) -> None:
    httpx.post(base_url + "/_control", json=body, timeout=5).raise_for_status()


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.05)


def test_a_delivered_request_is_billed_with_its_usage(base_url: str, openai_state: FakeOpenAIState) -> None:
    embedding = client(base_url).embeddings.create(model=EMBEDDING_MODEL, input=["one question", "another"])
    chat = client(base_url).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    assert chat.usage is not None
    assert openai_state.billed == [
        {
            "path": "/v1/embeddings",
            "model": EMBEDDING_MODEL,
            "prompt_tokens": embedding.usage.prompt_tokens,
            "completion_tokens": 0,
            "delivered": True,
            "fault": None,
        },
        {
            "path": "/v1/chat/completions",
            "model": CHAT_MODEL,
            "prompt_tokens": chat.usage.prompt_tokens,
            "completion_tokens": chat.usage.completion_tokens,
            "delivered": True,
            "fault": None,
        },
    ]
    assert billed_nanos(openai_state.billed, CHAT_MODEL, EMBEDDING_MODEL) == (
        embedding.usage.prompt_tokens * 20 + chat.usage.prompt_tokens * 150 + chat.usage.completion_tokens * 600
    )


def test_timeout_after_billing_times_out_client_side_yet_is_billed_and_undelivered(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    control(base_url, timeout_after_billing=1, hold=1.5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(base_url, timeout=0.3).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert time.monotonic() - started < 1.5  # the client gave up; the server was still holding it

    [record] = openai_state.billed
    assert record["path"].endswith("/chat/completions")
    assert (record["model"], record["delivered"], record["fault"]) == (CHAT_MODEL, False, "timeout_after_billing")
    assert record["prompt_tokens"] > 0
    assert record["completion_tokens"] > 0

    # Only the next request was held: the one after is answered and delivered.
    client(base_url, timeout=0.3).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert [r["delivered"] for r in openai_state.billed] == [False, True]


def test_a_response_the_client_abandoned_is_marked_undelivered(base_url: str, openai_state: FakeOpenAIState) -> None:
    control(base_url, delay=1.0)
    with pytest.raises(openai.APITimeoutError):
        client(base_url, timeout=0.3).embeddings.create(model=EMBEDDING_MODEL, input="slow")
    [record] = openai_state.billed  # billed on processing, before the (late) answer
    wait_until(lambda: record["delivered"] is False)


def test_injected_429_carries_retry_after_and_bills_nothing(base_url: str, openai_state: FakeOpenAIState) -> None:
    control(base_url, fail=[429, 500], retry_after=3)
    with pytest.raises(openai.RateLimitError) as limited:
        client(base_url).embeddings.create(model=EMBEDDING_MODEL, input="q")
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.response.headers["retry-after-ms"] == "3000"
    with pytest.raises(openai.InternalServerError):
        client(base_url).embeddings.create(model=EMBEDDING_MODEL, input="q")

    assert openai_state.billed == []
    assert [r["status"] for r in openai_state.requests] == [429, 500]


def outcomes(base_url: str, count: int) -> list[str]:
    fast = client(base_url, timeout=0.2)
    result = []
    for i in range(count):
        try:
            if i % 2:
                fast.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
            else:
                fast.embeddings.create(model=EMBEDDING_MODEL, input=f"q{i}")
            result.append("ok")
        except openai.APITimeoutError:
            result.append("timeout")
        except openai.APIStatusError as error:
            result.append(str(error.status_code))
    return result


def test_probabilistic_rules_are_reproducible_by_seed(base_url: str, openai_state: FakeOpenAIState) -> None:
    rules = [
        {"fault": "timeout_after_billing", "probability": 0.25, "paths": ["/chat/completions"]},
        {"fault": 429, "probability": 0.25},
        {"fault": 500, "probability": 0.2},
    ]
    runs = []
    for seed in (11, 11, 12):
        openai_state.reset()
        control(base_url, rules=rules, seed=seed, hold=0.5)
        runs.append((outcomes(base_url, 16), openai_state.billed_records()))
    (first, first_billed), (again, _), (other, _) = runs

    assert again == first
    assert other != first
    assert {"ok", "timeout", "429", "500"} <= set(first)
    assert all(first[i] != "timeout" for i in range(0, 16, 2))  # embeddings are not on the timeout rule's path
    # Billed: every processed request, the abandoned ones included; never a 429/500.
    assert len(first_billed) == first.count("ok") + first.count("timeout")
    assert [r["delivered"] for r in first_billed] == [o == "ok" for o in first if o in ("ok", "timeout")]


def test_billed_over_http_matches_the_state(base_url: str, openai_state: FakeOpenAIState) -> None:
    control(base_url, timeout_after_billing=1, hold=0.5)
    with pytest.raises(openai.APITimeoutError):
        client(base_url, timeout=0.2).embeddings.create(model=EMBEDDING_MODEL, input="held")
    client(base_url).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    assert len(openai_state.billed) == 2
    assert fetch_billed(base_url) == openai_state.billed_records()
    httpx.post(base_url + "/_reset", timeout=5).raise_for_status()
    assert fetch_billed(base_url) == []


def test_standalone_server_serves_the_billed_record_over_http(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port)]
    log = tmp_path / "fake_openai.log"
    with running(command, port, log, env=python_env()):
        url = f"http://127.0.0.1:{port}/v1"
        embedding = client(url).embeddings.create(model=EMBEDDING_MODEL, input="standalone")
        records = fetch_billed(url)
    assert records == [
        {
            "path": "/v1/embeddings",
            "model": EMBEDDING_MODEL,
            "prompt_tokens": embedding.usage.prompt_tokens,
            "completion_tokens": 0,
            "delivered": True,
            "fault": None,
        }
    ]
    assert f"fake openai listening on http://127.0.0.1:{port}/v1" in log.read_text()


def test_billed_nanos_is_exact_and_refuses_another_model() -> None:
    records = [
        {"path": "/v1/chat/completions", "model": CHAT_MODEL, "prompt_tokens": 1000, "completion_tokens": 200},
        {"path": "/v1/embeddings", "model": EMBEDDING_MODEL, "prompt_tokens": 37, "completion_tokens": 0},
        {"path": "/v1/chat/completions", "model": CHAT_MODEL, "prompt_tokens": 1, "completion_tokens": 1},
    ]
    # gpt-4o-mini: $0.15 / $0.60 per 1M tokens = 150 / 600 nano-dollars a token; embeddings $0.02 = 20.
    assert billed_nanos(records, CHAT_MODEL, EMBEDDING_MODEL) == 1000 * 150 + 200 * 600 + 37 * 20 + 150 + 600
    with pytest.raises(ValueError, match="priced as 'gpt-4o'"):
        billed_nanos(records, "gpt-4o", EMBEDDING_MODEL)
    assert billed_nanos([], CHAT_MODEL, EMBEDDING_MODEL) == 0
