"""Prices as data against the fake OpenAI (SPEC §4 "Prices and models", §7 "Prices"): for each model,
the books equal what the fake billed at the price file's rates, to the nano-dollar, with OpenAI's
prompt cache and a reasoning model's hidden tokens; a repeated long prompt settles cheaper; a model
the price file does not list (shipped, overridden by a file or by the SSM parameter) never starts."""

import importlib
import json
import sys
import uuid

import boto3
import pytest

from dnd_rag.dal.secrets import with_secrets
from dnd_rag.settings import ConfigError, load_settings
from tests.support.billing import billed_nanos
from tests.support.events import http_event, parse

EMBEDDING_MODEL = "text-embedding-3-small"
QUESTION = "How many experience points does a fighter need to become 9th level?"


@pytest.fixture
def priced(openai_env, any_user_auth_url, table):
    """The stack on the fake OpenAI with a table (a budget) of the test's own."""
    return {**openai_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url}


def ask(call, app, token, question=QUESTION, **extra):
    body = {"question": question, "k": 15, **extra}
    return parse(call(app, http_event("POST", "/api/query", token=token, body=body)))


def spent(dynamodb, table):
    """The day's spend on the books (every shard of the day's budget)."""
    found = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return sum(int(item["spent"]["N"]) for item in found if item["pk"]["S"].startswith("BUDGET#"))


def chats(openai_state):
    return [r for r in openai_state.billed_records() if r["path"].endswith("/chat/completions")]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "gpt-5-nano"])
def test_a_repeated_long_prompt_settles_cheaper_and_the_books_equal_what_was_billed(
    make_app, call, priced, openai_state, dynamodb, table, model
):
    # Given a deployment on one model, and a question whose prompt is over 1,024 tokens
    app, _ = make_app({**priced, "OPENAI_MODEL": model})
    token = f"u-{uuid.uuid4().hex}"

    # When it is asked twice (the answer cache is off: both are computed, billed and settled)
    status, first, _ = ask(call, app, token)
    assert status == 200, first
    status, second, _ = ask(call, app, token)
    assert status == 200, second

    # Then OpenAI's prefix cache served part of the second prompt
    first_chat, second_chat = chats(openai_state)
    assert first_chat["prompt_tokens"] > 1024
    assert first_chat["cached_tokens"] == 0
    assert 1024 <= second_chat["cached_tokens"] <= second_chat["prompt_tokens"]
    # and the second query settled cheaper, at the cached rate
    assert second["meta"]["cost"]["query_cost"] < first["meta"]["cost"]["query_cost"]
    # and the day's books equal, to the nano-dollar, what the fake billed at the published rates
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), model, EMBEDDING_MODEL)
    assert spent(dynamodb, table) == sum(r["cost_nanos"] for r in openai_state.billed_records())


def test_a_reasoning_model_gets_minimal_effort_and_settles_its_reasoning_tokens(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given gpt-5-nano (a reasoning model in the price file) at the default REASONING_EFFORT
    app, _ = make_app({**priced, "OPENAI_MODEL": "gpt-5-nano"})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", debug=True)

    # Then it was asked with minimal effort (the fake thinks 16 tokens then; a temperature or
    # max_tokens would have been refused) and its reasoning tokens are settled as output
    assert status == 200, body
    assert body["answer"]
    [chat] = chats(openai_state)
    assert chat["reasoning_tokens"] == 16
    assert chat["completion_tokens"] > 16
    tokens = next(d for d in body["diagnostics"] if d["stage"] == "tokens")
    assert (tokens["reasoning"], tokens["completion"]) == (16, chat["completion_tokens"])
    assert body["usage"]["completion_tokens"] == chat["completion_tokens"]
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), "gpt-5-nano", EMBEDDING_MODEL)


def test_reasoning_that_eats_the_whole_cap_twice_is_paid_in_full_and_its_empty_answer_not_kept(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given a reasoning model that thinks past the completion cap, and the answer cache on
    app, _ = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "MAX_COMPLETION_TOKENS": "200", "ANSWER_CACHE_TTL": "60"}
    )
    openai_state.control({"reasoning_tokens": 5000})
    token = f"u-{uuid.uuid4().hex}"

    status, body, _ = ask(call, app, token)

    # Then the cap was billed as reasoning, and so was twice the cap when asked again (the budget
    # covers it: tests/integration/test_model_ladder.py), no answer came back, and the books hold
    # what was billed
    first, second = chats(openai_state)
    assert (first["reasoning_tokens"], first["completion_tokens"]) == (200, 200)
    assert (second["reasoning_tokens"], second["completion_tokens"]) == (400, 400)
    assert status == 200, body
    assert body["answer"] == ""
    assert body["errors"] == [
        "The model spent the whole answer length (200 tokens) reasoning and wrote no answer, "
        "nor with 400 tokens when asked again."
    ]
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), "gpt-5-mini", EMBEDDING_MODEL)
    # and the empty answer is not served again from the cache: the next ask is computed again
    openai_state.control({"reasoning_tokens": None})
    status, again, _ = ask(call, app, token)
    assert (status, again["meta"]["cache"]) == (200, "miss")
    assert again["answer"]


def price_file(models):
    entry = {"input": 0.15, "cached_input": 0.075, "output": 0.6, "effective": "2026-12-04"}
    entry["source"] = "https://developers.openai.com/api/docs/pricing"
    embedding = {"input": 0.02, "effective": "2026-12-04", "source": entry["source"]}
    return json.dumps(
        {"version": "ssm-1", "chat": dict.fromkeys(models, entry), "embeddings": {EMBEDDING_MODEL: embedding}}
    )


def test_the_ssm_price_override_is_read_at_cold_start_and_a_model_it_lacks_never_starts(aws_endpoint, openai_env):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/dnd-rag/test/prices", Value=price_file(["gpt-4.1-nano"]), Type="String", Overwrite=True)
    env = {**openai_env, "PRICES_PARAMETER": "/dnd-rag/test/prices"}

    settings = load_settings(with_secrets({**env, "OPENAI_MODEL": "gpt-4.1-nano"}))

    assert settings.price_book.version == "ssm-1"
    assert settings.price_book.chat.input == 150
    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-4o-mini' in price file ssm-1"):
        load_settings(with_secrets({**env, "OPENAI_MODEL": "gpt-4o-mini"}))


def test_a_price_parameter_that_is_not_a_price_file_fails_the_cold_start_naming_it(aws_endpoint, openai_env):
    boto3.client("ssm").put_parameter(
        Name="/dnd-rag/test/bad-prices", Value='{"version": "x"}', Type="String", Overwrite=True
    )

    with pytest.raises(ConfigError, match=r"^PRICES_PARAMETER: not a valid price file"):
        load_settings(with_secrets({**openai_env, "PRICES_PARAMETER": "/dnd-rag/test/bad-prices"}))
    with pytest.raises(ConfigError, match="PRICES_PARAMETER: SSM parameter /dnd-rag/test/absent could not be read"):
        with_secrets({**openai_env, "PRICES_PARAMETER": "/dnd-rag/test/absent"})


def test_an_unpriced_model_refuses_the_lambda_cold_start(base_env, corpus_ingested, monkeypatch, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(price_file(["gpt-4.1-nano"]))
    for key, value in {**base_env, "PRICES_FILE": str(path), "OPENAI_MODEL": "gpt-4o-mini"}.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("dnd_rag.handlers.api", None)

    with pytest.raises(ConfigError, match="OPENAI_MODEL: no price for 'gpt-4o-mini' in price file ssm-1"):
        importlib.import_module("dnd_rag.handlers.api")
    sys.modules.pop("dnd_rag.handlers.api", None)
