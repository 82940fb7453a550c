"""The relevance gate (SPEC §4 "Prices and models"): a question no passage is similar enough to is
answered 200 `answered: false` with no sources and no chat call, at the embedding's cost only — the
fake OpenAI's `/_billed` is the ground truth — with either provider, through the real handler."""

import importlib
import sys
import uuid

import httpx
import pytest

from dnd_rag.logic.retrieval.relevance import NOT_COVERED
from dnd_rag.settings import ConfigError
from tests.support.events import http_event, parse

OFF_CORPUS = "How many hit points does a Glimmerwight have?"  # a monster the sample corpus lacks
FIGHTER = "How many experience points does a fighter need to become 9th level?"
DEFAULT = ""  # an empty value is unset: the embedding model's default threshold (relevance.json)


@pytest.fixture
def priced(openai_env, any_user_auth_url, table):
    """The stack on the fake OpenAI with a table (a budget) of the test's own and the default gate."""
    return {**openai_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url, "MIN_RELEVANCE": DEFAULT}


def ask(call, app, token, question, **extra):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": question, **extra})))


def billed(fake_openai):
    """What the fake OpenAI says it billed, read over HTTP as any client would."""
    return httpx.get(f"{fake_openai[0]}/_billed").json()["records"]


def spent(dynamodb, table):
    found = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return sum(int(item["spent"]["N"]) for item in found if item["pk"]["S"].startswith("BUDGET#"))


def paths(records):
    return sorted(record["path"].rsplit("/", 1)[-1] for record in records)


def test_an_off_corpus_question_is_not_covered_and_pays_only_its_embedding(
    make_app, call, priced, openai_state, fake_openai, dynamodb, table
):
    # Given the stack on the fake OpenAI with the default threshold for text-embedding-3-small
    app, _ = make_app(priced)
    token = f"u-{uuid.uuid4().hex}"

    # When a user asks about a monster the corpus does not have
    status, body, _ = ask(call, app, token, OFF_CORPUS, debug=True)

    # Then the fixed answer, no sources, answered false
    assert status == 200, body
    assert (body["answer"], body["sources"], body["meta"]["answered"]) == (NOT_COVERED, [], False)
    relevance = next(d for d in body["diagnostics"] if d["stage"] == "relevance")
    assert relevance["best_score"] < relevance["min_relevance"] == 0.25
    # and only the embeddings call was billed: no chat call
    records = billed(fake_openai)
    assert paths(records) == ["embeddings"]
    # and the day's books equal what was billed, to the nano-dollar
    assert spent(dynamodb, table) == sum(r["cost_nanos"] for r in records) > 0
    assert body["usage"]["embedding_tokens"] == records[0]["prompt_tokens"]
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (0, 0)
    # and the admission stays consumed: it was a served answer
    status, usage, _ = parse(call(app, http_event("GET", "/api/usage", token=token)))
    assert (status, usage["daily_remaining"], usage["daily_limit"] - usage["daily_remaining"]) == (
        200,
        body["meta"]["rate_limit"]["daily_remaining"],
        1,
    )


def test_an_on_corpus_question_is_answered_by_the_chat_model(
    make_app, call, priced, openai_state, fake_openai, dynamodb, table
):
    app, _ = make_app(priced)

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", FIGHTER)

    assert status == 200, body
    assert body["meta"]["answered"] is True
    assert body["sources"]
    records = billed(fake_openai)
    assert paths(records) == ["completions", "embeddings"]
    assert spent(dynamodb, table) == sum(r["cost_nanos"] for r in records)


def test_min_relevance_zero_switches_the_gate_off(make_app, call, priced, openai_state, fake_openai):
    app, _ = make_app({**priced, "MIN_RELEVANCE": "0"})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", OFF_CORPUS)

    # the chat model answers from whatever was retrieved, as before the gate existed
    assert (status, body["meta"]["answered"]) == (200, True)
    assert body["answer"] != NOT_COVERED
    assert body["sources"]
    assert paths(billed(fake_openai)) == ["completions", "embeddings"]


def test_a_gated_answer_is_not_cached_and_a_cache_hit_is_an_answered_answer(
    make_app, call, priced, openai_state, fake_openai
):
    # Given the answer cache on
    app, _ = make_app({**priced, "ANSWER_CACHE_TTL": "60"})
    token = f"u-{uuid.uuid4().hex}"
    off_corpus = f"{OFF_CORPUS} ({uuid.uuid4().hex[:6]})"  # new to the shared table's cache
    fighter = f"{FIGHTER} ({uuid.uuid4().hex[:6]})"

    # When the off-corpus question is asked twice, then an on-corpus one twice
    first, second = ask(call, app, token, off_corpus)[1], ask(call, app, token, off_corpus)[1]
    third, fourth = ask(call, app, token, fighter)[1], ask(call, app, token, fighter)[1]

    # Then the gated answer was computed (embedded) both times: it was not stored
    assert [b["meta"]["answered"] for b in (first, second)] == [False, False]
    assert [b["meta"]["cache"] for b in (first, second)] == ["miss", "miss"]
    # and the cached on-corpus answer is answered, for free
    assert [(b["meta"]["cache"], b["meta"]["answered"]) for b in (third, fourth)] == [("miss", True), ("hit", True)]
    assert paths(billed(fake_openai)) == ["completions", "embeddings", "embeddings", "embeddings"]


def test_the_offline_answerer_says_it_does_not_know_instead_of_quoting_unrelated_sentences(make_app, call):
    # Given the offline stack (hash embeddings, extractive answers) with its default threshold
    app, _ = make_app({"MIN_RELEVANCE": DEFAULT})

    _, off_corpus, _ = ask(call, app, "dev-alice", OFF_CORPUS)
    _, fighter, _ = ask(call, app, "dev-alice", FIGHTER)

    assert (off_corpus["answer"], off_corpus["sources"], off_corpus["meta"]["answered"]) == (NOT_COVERED, [], False)
    assert off_corpus["usage"]["completion_tokens"] == 0
    assert fighter["meta"]["answered"] is True
    assert "250,001" in fighter["answer"]


@pytest.mark.parametrize("value", ["1.5", "abc", "-0.1", "nan"])
def test_an_invalid_min_relevance_fails_the_cold_start_naming_it(base_env, corpus_ingested, monkeypatch, value):
    for key, setting in {**base_env, "MIN_RELEVANCE": value}.items():
        monkeypatch.setenv(key, setting)
    sys.modules.pop("dnd_rag.handlers.api", None)

    with pytest.raises(ConfigError, match="MIN_RELEVANCE"):
        importlib.import_module("dnd_rag.handlers.api")
    sys.modules.pop("dnd_rag.handlers.api", None)


def test_the_openapi_document_describes_meta_answered(make_app, call):
    app, _ = make_app()

    status, document, _ = parse(call(app, http_event("GET", "/openapi.json")))

    assert status == 200
    answered = document["components"]["schemas"]["MetaOut"]["properties"]["answered"]
    assert answered["type"] == "boolean"
    assert "don't cover this" in answered["description"]
