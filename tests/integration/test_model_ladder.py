"""The model ladder and the empty reasoning answer, against the fake OpenAI (SPEC §4 "Prices and
models"): a budget too small for the configured model's standard query is answered by a cheaper
model with every passage and the whole cap before anything shrinks; an answer reasoning cut to
nothing is asked again once with a larger cap, only when the budget covers it. Every time the
day's books equal, to the nano-dollar, what the fake billed.

The numbers: the question's prompt at k=15 is ~2,100 tokens (its standard form: gpt-5-mini
~$0.00153 with a 500-token cap, gpt-5-nano ~$0.00031; at a 200-token cap gpt-5-mini ~$0.00093,
and asking again with 400 tokens needs ~$0.00227 held in all). Each test checks the facts its
budget relies on."""

import time
import uuid

import pytest

from dnd_rag.logic.common.clock import utc_day
from dnd_rag.pricing import PriceBook, TokenUsage
from tests.integration.test_prices import EMBEDDING_MODEL, ask, chats, spent
from tests.support.billing import billed_nanos, fetch_billed

CAP = 500  # MAX_COMPLETION_TOKENS's default


@pytest.fixture
def priced(openai_env, any_user_auth_url, table):
    """The stack on the fake OpenAI with a table (a budget) of the test's own."""
    return {**openai_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url}


def standard_bound(model, prompt_tokens, cap=CAP):
    return PriceBook.for_models(model, EMBEDDING_MODEL).cost_nanos(
        TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=cap)
    )


def books_by_model(container):
    return container.ledgers.day_books(utc_day(time.time())).models


def test_a_budget_too_small_for_gpt5_mini_is_answered_by_gpt5_nano_with_every_passage_and_the_whole_cap(
    make_app, call, priced, openai_state, fake_openai, dynamodb, table
):
    # Given gpt-5-mini with gpt-5-nano as its fallback, and $0.0008 left: less than gpt-5-mini's
    # standard query (~$0.0015), more than gpt-5-nano's (~$0.0003)
    app, container = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": "gpt-5-nano", "DAILY_BUDGET_USD": "0.0008"}
    )

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    # Then gpt-5-nano answered, with every passage and the whole completion cap
    assert status == 200, body
    assert body["answer"]
    assert body["meta"]["degraded"] == {
        "reason": "budget_low",
        "k": 15,
        "max_completion_tokens": CAP,
        "model": "gpt-5-nano",
    }
    assert len(body["sources"]) == 15
    assert body["usage"]["model"] == "gpt-5-nano"
    # and the one chat call OpenAI billed (GET /_billed) was gpt-5-nano's
    records = fetch_billed(fake_openai[0])
    [chat] = [record for record in records if record["path"].endswith("/chat/completions")]
    assert chat["model"] == "gpt-5-nano"
    assert (
        standard_bound("gpt-5-mini", chat["prompt_tokens"])
        > 800_000
        >= standard_bound("gpt-5-nano", chat["prompt_tokens"])
    )
    # and the day's books equal what was billed, to the nano-dollar, booked under the model that answered
    billed = billed_nanos(records, "gpt-5-nano", EMBEDDING_MODEL)
    assert spent(dynamodb, table) == billed
    assert books_by_model(container) == {"gpt-5-nano": billed}


def test_without_fallbacks_the_same_budget_shrinks_the_query_on_the_configured_model(
    make_app, call, priced, openai_state, dynamodb, table
):
    app, _ = make_app({**priced, "OPENAI_MODEL": "gpt-5-mini", "DAILY_BUDGET_USD": "0.0008"})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    degraded = body["meta"]["degraded"]
    assert degraded["model"] == "gpt-5-mini"
    assert degraded["k"] < 15 or degraded["max_completion_tokens"] < CAP
    [chat] = chats(openai_state)
    assert chat["model"] == "gpt-5-mini"
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), "gpt-5-mini", EMBEDDING_MODEL)


def test_a_budget_too_small_even_for_the_cheapest_standard_query_shrinks_on_the_cheapest_model(
    make_app, call, priced, openai_state, dynamodb, table
):
    # $0.0003: under gpt-5-nano's standard query (~$0.00031) too
    app, container = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": "gpt-5-nano", "DAILY_BUDGET_USD": "0.0003"}
    )

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    degraded = body["meta"]["degraded"]
    assert degraded["model"] == "gpt-5-nano"
    assert degraded["k"] < 15 or degraded["max_completion_tokens"] < CAP
    [chat] = chats(openai_state)
    assert chat["model"] == "gpt-5-nano"
    assert standard_bound("gpt-5-nano", chat["prompt_tokens"]) > 300_000
    billed = billed_nanos(openai_state.billed_records(), "gpt-5-nano", EMBEDDING_MODEL)
    assert spent(dynamodb, table) == billed <= 300_000
    assert books_by_model(container) == {"gpt-5-nano": billed}


def test_with_money_enough_the_configured_model_answers_and_no_fallback_is_used(
    make_app, call, priced, openai_state, dynamodb, table
):
    app, _ = make_app({**priced, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": "gpt-5-nano"})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    assert body["meta"]["degraded"] is None
    assert body["usage"]["model"] == "gpt-5-mini"
    assert [chat["model"] for chat in chats(openai_state)] == ["gpt-5-mini"]


def test_a_non_reasoning_fallback_of_a_reasoning_model_is_asked_as_a_non_reasoning_model(
    make_app, call, priced, openai_state, dynamodb, table
):
    # gpt-4.1-nano refuses reasoning_effort (400, as OpenAI does): the fallback gets no effort, a temperature
    app, _ = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "OPENAI_MODEL_FALLBACKS": "gpt-4.1-nano", "DAILY_BUDGET_USD": "0.0008"}
    )

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    assert body["meta"]["degraded"]["model"] == "gpt-4.1-nano"
    [chat] = chats(openai_state)
    assert (chat["model"], chat["reasoning_tokens"]) == ("gpt-4.1-nano", 0)
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), "gpt-4.1-nano", EMBEDDING_MODEL)


def test_an_answer_reasoning_cut_to_nothing_is_asked_again_with_twice_the_cap_when_the_budget_covers_it(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given gpt-5-mini with a 200-token cap that thinks 300 tokens, and $0.003 left (both attempts fit)
    app, _ = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "MAX_COMPLETION_TOKENS": "200", "DAILY_BUDGET_USD": "0.003"}
    )
    openai_state.control({"reasoning_tokens": 300})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    # Then the first attempt spent its whole cap reasoning, the second (400 tokens) answered
    assert status == 200, body
    first, second = chats(openai_state)
    assert (first["reasoning_tokens"], first["completion_tokens"]) == (200, 200)
    assert second["reasoning_tokens"] == 300 < second["completion_tokens"] <= 400
    assert body["answer"]
    assert body["errors"] == []
    # and both attempts are on the books, as billed, to the nano-dollar
    billed = billed_nanos(openai_state.billed_records(), "gpt-5-mini", EMBEDDING_MODEL)
    assert spent(dynamodb, table) == billed
    assert body["usage"]["completion_tokens"] == first["completion_tokens"] + second["completion_tokens"]


def test_an_answer_reasoning_cut_to_nothing_is_not_asked_again_when_the_budget_does_not_cover_it(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given the same, with $0.002 left: the first attempt fits (~$0.00093), both do not (~$0.00227)
    app, _ = make_app(
        {**priced, "OPENAI_MODEL": "gpt-5-mini", "MAX_COMPLETION_TOKENS": "200", "DAILY_BUDGET_USD": "0.002"}
    )
    openai_state.control({"reasoning_tokens": 300})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    # Then one call, an empty answer that says why, and the books equal what was billed
    assert status == 200, body
    [chat] = chats(openai_state)
    assert (chat["reasoning_tokens"], chat["completion_tokens"]) == (200, 200)
    first_cost = standard_bound("gpt-5-mini", chat["prompt_tokens"], 200)
    assert first_cost + standard_bound("gpt-5-mini", chat["prompt_tokens"], 400) > 2_000_000 > first_cost
    assert body["answer"] == ""
    assert body["errors"] == [
        "The model spent the whole answer length (200 tokens) reasoning and wrote no answer; "
        "the budget left does not cover asking again with 400 tokens."
    ]
    assert spent(dynamodb, table) == billed_nanos(openai_state.billed_records(), "gpt-5-mini", EMBEDDING_MODEL)


def test_a_fallback_with_another_tokenizer_is_held_on_its_own_token_count(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given gpt-4o (o200k_base) falling back to gpt-3.5-turbo (cl100k_base), and $0.005 left: less than
    # gpt-4o's standard query (~$0.010), more than gpt-3.5-turbo's (~$0.002)
    app, container = make_app(
        {**priced, "OPENAI_MODEL": "gpt-4o", "OPENAI_MODEL_FALLBACKS": "gpt-3.5-turbo", "DAILY_BUDGET_USD": "0.005"}
    )

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", debug=True)

    # Then the prompt was counted with gpt-3.5-turbo's encoding: exactly what OpenAI billed for it
    assert status == 200, body
    assert body["meta"]["degraded"]["model"] == "gpt-3.5-turbo"
    [chat] = chats(openai_state)
    budget = next(d for d in body["diagnostics"] if d["stage"] == "budget")
    assert budget["prompt_tokens_counted"] == chat["prompt_tokens"]
    billed = billed_nanos(openai_state.billed_records(), "gpt-3.5-turbo", EMBEDDING_MODEL)
    assert spent(dynamodb, table) == billed
    assert books_by_model(container) == {"gpt-3.5-turbo": billed}


def test_the_last_cents_no_configured_query_could_use_are_answered_by_the_cheapest_model(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given $0.0001: less than gpt-5-mini's smallest query (2 passages, a 100-token cap: ~$0.0003),
    # more than gpt-5-nano's
    env = {**priced, "OPENAI_MODEL": "gpt-5-mini", "DAILY_BUDGET_USD": "0.0001"}

    # Without a fallback the day is spent for gpt-5-mini: refused before any paid call
    app, _ = make_app(env)
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")
    assert (status, body["error"], body["reason"]) == (503, "budget_exceeded", "spent"), body
    assert openai_state.billed_records() == []

    # With gpt-5-nano on the ladder it is not spent: gpt-5-nano answers with what is left
    app, _ = make_app({**env, "OPENAI_MODEL_FALLBACKS": "gpt-5-nano"})
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    assert body["meta"]["degraded"]["model"] == "gpt-5-nano"
    billed = billed_nanos(openai_state.billed_records(), "gpt-5-nano", EMBEDDING_MODEL)
    assert spent(dynamodb, table) == billed <= 100_000


def test_a_user_cap_too_small_for_gpt5_mini_is_answered_by_gpt5_nano_and_that_answer_is_not_cached(
    make_app, call, priced, openai_state, dynamodb, table
):
    # Given the day's budget plenty, the user's own cap $0.0008 (less than gpt-5-mini's standard
    # query, more than gpt-5-nano's), and the answer cache on
    app, container = make_app(
        {
            **priced,
            "OPENAI_MODEL": "gpt-5-mini",
            "OPENAI_MODEL_FALLBACKS": "gpt-5-nano",
            "USER_DAILY_BUDGET_USD": "0.0008",
            "PLAN_LIMITS": '{"pro": {"daily_usd": 1}}',
            "ANSWER_CACHE_TTL": "60",
        }
    )
    token = f"u-{uuid.uuid4().hex}"

    status, body, _ = ask(call, app, token)

    assert status == 200, body
    assert body["meta"]["degraded"] == {
        "reason": "user_budget_low",
        "k": 15,
        "max_completion_tokens": CAP,
        "model": "gpt-5-nano",
    }
    # and gpt-5-nano's answer is not kept under gpt-5-mini's key: a user with money (plan pro, a $1
    # cap) asking the same is answered by gpt-5-mini
    status, other, _ = ask(call, app, f"u-{uuid.uuid4().hex}.pro")
    assert (status, other["meta"]["cache"], other["usage"]["model"]) == (200, "miss", "gpt-5-mini"), other
    assert [chat["model"] for chat in chats(openai_state)] == ["gpt-5-nano", "gpt-5-mini"]
    assert spent(dynamodb, table) == sum(r["cost_nanos"] for r in openai_state.billed_records())
    # and each query is booked under the model that answered it (its embedding with it)
    embedding_1, nano, embedding_2, mini = (r["cost_nanos"] for r in openai_state.billed_records())
    assert books_by_model(container) == {"gpt-5-nano": embedding_1 + nano, "gpt-5-mini": embedding_2 + mini}
