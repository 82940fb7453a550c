"""Optional moderation (MODERATION, SPEC §4 "Prices and models"): with the OpenAI provider the question
is checked first by the fake OpenAI's moderations endpoint (free: never billed); flagged → 400
content_flagged, nothing billed and the admission given back; an outage fails closed (502)."""

import uuid

import httpx
import pytest

from dnd_rag.settings import ConfigError, load_settings
from tests.support.events import http_event, parse

FIGHTER = "How many experience points does a fighter need to become 9th level?"
FLAGGED = "How do I kill my neighbour with a fighter's sword?"  # a marker the fake flags (violence)


@pytest.fixture
def moderated(openai_env, any_user_auth_url, table):
    """The stack on the fake OpenAI, a table (a budget) of the test's own, moderation on."""
    return {
        **openai_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "MODERATION": "omni-moderation-latest",
    }


def ask(call, app, token, question):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": question})))


def usage(call, app, token):
    status, body, _ = parse(call(app, http_event("GET", "/api/usage", token=token)))
    assert status == 200, body
    return body["daily_remaining"], body["bucket"]["remaining_burst"], body["today"]["requests"]


def fake(fake_openai, what):
    return httpx.get(f"{fake_openai[0]}/_{what}").json()["records"]


def spent(dynamodb, table):
    found = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return sum(int(item["spent"]["N"]) for item in found if item["pk"]["S"].startswith("BUDGET#"))


def test_a_flagged_question_is_refused_with_nothing_paid_and_its_admission_given_back(
    make_app, call, moderated, openai_state, fake_openai, dynamodb, table
):
    # Given moderation on, and a user who has asked once
    app, _ = make_app(moderated)
    token = f"u-{uuid.uuid4().hex}"
    assert ask(call, app, token, FIGHTER)[0] == 200
    before = usage(call, app, token)
    books = spent(dynamodb, table)
    openai_state.reset()

    # When the user asks a question the moderation model flags
    status, body, _ = ask(call, app, token, FLAGGED)

    # Then 400 content_flagged, naming the categories
    assert status == 400, body
    assert body["error"] == "content_flagged"
    assert body["categories"] == ["harassment/threatening", "violence"]
    assert "neighbour" not in body["message"]  # no echo of the question
    # and the moderation call was made, but no embeddings or chat call: nothing billed
    assert [(m["input"], m["flagged"]) for m in fake(fake_openai, "moderations")] == [(FLAGGED, True)]
    assert fake(fake_openai, "billed") == []
    assert spent(dynamodb, table) == books
    # and the admission was given back: the rate-limit token and the daily count are as before
    after = usage(call, app, token)
    assert (after[0], after[2]) == (before[0], before[2])
    assert after[1] >= before[1]


def test_a_clean_question_is_checked_once_then_answered(make_app, call, moderated, openai_state, fake_openai):
    app, _ = make_app(moderated)

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", FIGHTER)

    assert (status, body["meta"]["answered"]) == (200, True), body
    assert [(m["model"], m["input"], m["flagged"]) for m in fake(fake_openai, "moderations")] == [
        ("omni-moderation-latest", FIGHTER, False)
    ]
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in fake(fake_openai, "billed")) == ["completions", "embeddings"]


def test_moderation_is_off_by_default(make_app, call, openai_env, openai_state, fake_openai):
    app, _ = make_app(openai_env)

    status, body, _ = ask(call, app, "dev-alice", FLAGGED)

    assert status == 200, body
    assert fake(fake_openai, "moderations") == []


def test_a_moderation_outage_fails_closed_with_nothing_paid(
    make_app, call, moderated, openai_state, fake_openai, dynamodb, table
):
    # Given the moderation endpoint failing (twice: the first attempt and its retry)
    app, _ = make_app(moderated)
    token = f"u-{uuid.uuid4().hex}"
    openai_state.control({"fail": [500, 500]})

    status, body, _ = ask(call, app, token, FIGHTER)

    # Then 502 upstream_error: the question was not answered unchecked, and nothing was paid
    assert (status, body["error"]) == (502, "upstream_error"), body
    assert [r["status"] for r in openai_state.requests] == [500, 500]
    assert fake(fake_openai, "billed") == []
    assert spent(dynamodb, table) == 0
    # and the admission was given back
    assert usage(call, app, token)[2] == 0


def test_moderation_needs_the_openai_provider_and_a_known_model(base_env, openai_env):
    with pytest.raises(ConfigError, match="MODERATION needs OpenAI"):
        load_settings({**base_env, "MODERATION": "omni-moderation-latest"})
    with pytest.raises(ConfigError, match="MODERATION: "):
        load_settings({**openai_env, "MODERATION": "text-moderation-007"})
    assert load_settings({**openai_env, "MODERATION": "off"}).moderation is None
