"""The fake OpenAI server's record of what OpenAI would bill, seen through the real ``openai`` client."""

from __future__ import annotations

import json
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
from tests.support.clock import NOON, Clock
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
    openai_state.clock = Clock(NOON)  # when each request is billed: its record's "at"
    embedding = client(base_url).embeddings.create(model=EMBEDDING_MODEL, input=["one question", "another"])
    chat = client(base_url).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    assert chat.usage is not None
    embedding_cost = embedding.usage.prompt_tokens * 20
    chat_cost = chat.usage.prompt_tokens * 150 + chat.usage.completion_tokens * 600
    assert openai_state.billed == [
        {
            "path": "/v1/embeddings",
            "model": EMBEDDING_MODEL,
            "prompt_tokens": embedding.usage.prompt_tokens,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "cost_nanos": embedding_cost,
            "delivered": True,
            "fault": None,
            "at": NOON,
        },
        {
            "path": "/v1/chat/completions",
            "model": CHAT_MODEL,
            "prompt_tokens": chat.usage.prompt_tokens,
            "completion_tokens": chat.usage.completion_tokens,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "cost_nanos": chat_cost,
            "delivered": True,
            "fault": None,
            "at": NOON,
        },
    ]
    assert billed_nanos(openai_state.billed, CHAT_MODEL, EMBEDDING_MODEL) == embedding_cost + chat_cost


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
        before = time.time()
        embedding = client(url).embeddings.create(model=EMBEDDING_MODEL, input="standalone")
        records = fetch_billed(url)
    assert before <= records[0].pop("at") <= time.time()  # billed now, on the local stack's clock
    assert records == [
        {
            "path": "/v1/embeddings",
            "model": EMBEDDING_MODEL,
            "prompt_tokens": embedding.usage.prompt_tokens,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "cost_nanos": embedding.usage.prompt_tokens * 20,
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
        {"path": "/v1/chat/completions", "model": CHAT_MODEL, "prompt_tokens": 1500, "completion_tokens": 10}
        | {"cached_tokens": 1152},
    ]
    # gpt-4o-mini: $0.15 / $0.075 / $0.60 per 1M tokens = 150 / 75 / 600 nano-dollars a token (input,
    # cached input, output); embeddings $0.02 = 20.
    assert billed_nanos(records, CHAT_MODEL, EMBEDDING_MODEL) == (
        1000 * 150 + 200 * 600 + 37 * 20 + 150 + 600 + (1500 - 1152) * 150 + 1152 * 75 + 10 * 600
    )
    with pytest.raises(ValueError, match="priced as 'gpt-4o'"):
        billed_nanos(records, "gpt-4o", EMBEDDING_MODEL)
    assert billed_nanos([], CHAT_MODEL, EMBEDDING_MODEL) == 0


def long_messages(question: str, passages: int = 60) -> Any:
    """A prompt well over 1,024 tokens whose first message (the passages) stays the same."""
    text = "\n\n".join(
        f"[{n}] (source: srd)\nA fighter of level {n} has {n * 7} hit points." for n in range(1, passages)
    )
    return [{"role": "user", "content": text}, {"role": "user", "content": question}]


def test_a_repeated_long_prefix_is_reported_cached_in_128_token_steps_and_billed_at_the_cached_rate(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    # Given a first request: nothing cached yet
    first = client(base_url).chat.completions.create(model="gpt-4.1-mini", messages=long_messages("Fighter HP?"))
    # When a second shares its first message (the prefix) but asks another question
    second = client(base_url).chat.completions.create(model="gpt-4.1-mini", messages=long_messages("Level 9 HP?"))
    # and a short prompt is sent twice (under 1,024 tokens: never cached)
    for _ in range(2):
        client(base_url).chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES)

    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens > 1024
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert 1024 <= cached < second.usage.prompt_tokens
    assert (cached - 1024) % 128 == 0
    assert [r["cached_tokens"] for r in openai_state.billed] == [0, cached, 0, 0]
    # Then the second is billed (prompt - cached) x 0.40 + cached x 0.10 + completion x 1.60 per 1M
    record = openai_state.billed[1]
    assert record["cost_nanos"] == (
        (second.usage.prompt_tokens - cached) * 400 + cached * 100 + second.usage.completion_tokens * 1600
    )
    assert billed_nanos(openai_state.billed[:2], "gpt-4.1-mini", EMBEDDING_MODEL) == sum(
        r["cost_nanos"] for r in openai_state.billed[:2]
    )


def test_a_cached_prefix_is_forgotten_after_its_time_and_per_model(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    messages = long_messages("Fighter HP?")
    client(base_url).chat.completions.create(model="gpt-4.1-mini", messages=messages)
    other_model = client(base_url).chat.completions.create(model="gpt-4.1-nano", messages=messages)
    openai_state.prompt_cache.ttl_seconds = 0.05
    time.sleep(0.1)
    expired = client(base_url).chat.completions.create(model="gpt-4.1-mini", messages=messages)

    assert other_model.usage is not None
    assert other_model.usage.prompt_tokens_details is not None
    assert other_model.usage.prompt_tokens_details.cached_tokens == 0
    assert expired.usage is not None
    assert expired.usage.prompt_tokens_details is not None
    assert expired.usage.prompt_tokens_details.cached_tokens == 0


def test_an_unknown_model_is_404_model_not_found_and_bills_nothing(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    with pytest.raises(openai.NotFoundError) as chat:
        client(base_url).chat.completions.create(model="gpt-9-turbo", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError) as embedding:
        client(base_url).embeddings.create(model="text-embedding-9", input="q")

    assert chat.value.code == embedding.value.code == "model_not_found"
    assert openai_state.billed == []


def test_a_reasoning_model_bills_its_reasoning_tokens_as_output_inside_the_completion(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    chat = client(base_url).chat.completions.create(
        model="gpt-5-mini", messages=MESSAGES, max_completion_tokens=200, reasoning_effort="minimal"
    )

    assert chat.usage is not None
    assert chat.usage.completion_tokens_details is not None
    reasoning = chat.usage.completion_tokens_details.reasoning_tokens
    assert reasoning == 16  # minimal effort (REASONING_TOKENS)
    assert chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "stop"
    answer_tokens = chat.usage.completion_tokens - reasoning
    assert answer_tokens > 0
    [record] = openai_state.billed
    assert (record["reasoning_tokens"], record["completion_tokens"]) == (16, chat.usage.completion_tokens)
    assert record["cost_nanos"] == chat.usage.prompt_tokens * 250 + chat.usage.completion_tokens * 2000


def test_reasoning_that_eats_the_cap_leaves_an_empty_answer_cut_for_length_yet_billed(
    base_url: str, openai_state: FakeOpenAIState
) -> None:
    control(base_url, reasoning_tokens=500)
    chat = client(base_url).chat.completions.create(model="gpt-5-nano", messages=MESSAGES, max_completion_tokens=120)

    assert chat.choices[0].message.content == ""
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 120
    assert chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == 120
    [record] = openai_state.billed
    assert record["cost_nanos"] == chat.usage.prompt_tokens * 50 + 120 * 400


@pytest.mark.parametrize(
    ("model", "parameters", "refused"),
    [
        ("gpt-5-mini", {"max_tokens": 100}, "max_tokens"),
        ("gpt-5-nano", {"temperature": 0.2, "max_completion_tokens": 100}, "temperature"),
        ("gpt-5-nano", {"reasoning_effort": "extreme"}, "reasoning_effort"),
        ("gpt-4o-mini", {"reasoning_effort": "minimal"}, "reasoning_effort"),
    ],
)
def test_parameters_a_model_does_not_take_are_refused_as_openai_does_and_bill_nothing(
    base_url: str, openai_state: FakeOpenAIState, model: str, parameters: dict[str, Any], refused: str
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client(base_url).chat.completions.create(model=model, messages=MESSAGES, **parameters)

    assert error.value.param == refused
    assert openai_state.billed == []


def test_the_standalone_server_knows_the_models_of_the_price_file_it_is_given(tmp_path: Path) -> None:
    entry = {"input": 1, "cached_input": 0.5, "output": 2, "effective": "2026-12-04", "source": "https://x.example"}
    prices = tmp_path / "prices.json"
    embedding = {"input": 0.02, "effective": "2026-12-04", "source": "https://x.example"}
    file = {"version": "t", "chat": {"gpt-5-own": entry}, "embeddings": {EMBEDDING_MODEL: embedding}}
    prices.write_text(json.dumps(file))
    port = free_port()
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--prices", str(prices)]
    with running(command, port, tmp_path / "fake_openai.log", env=python_env()):
        url = f"http://127.0.0.1:{port}/v1"
        chat = client(url).chat.completions.create(model="gpt-5-own", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            client(url).chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        [record] = fetch_billed(url)

    assert chat.usage is not None
    assert record["cost_nanos"] == chat.usage.prompt_tokens * 1000 + chat.usage.completion_tokens * 2000
