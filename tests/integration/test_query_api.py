"""POST /api/query and GET /health through the real handler, emulator, Chroma and auth server."""

import json

import pytest

from tests.support.events import http_event, parse

FIGHTER = "How many experience points does a fighter need to become 9th level?"
DRAGONS = "What is the difference between a red dragon and a white dragon?"


@pytest.fixture
def app(make_app):
    return make_app()[0]


def test_health_needs_no_token(app, call):
    status, body, _ = parse(call(app, http_event("GET", "/health")))

    assert status == 200
    assert body == {"status": "ok", "service": "dnd_rag", "version": "0.1.0"}


def test_fighter_question_is_answered_with_the_xp_figure(app, call):
    status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": FIGHTER})))

    assert status == 200
    assert "250,001" in body["answer"]
    assert body["sources"][0]["source"] == "fighter.md"
    assert 0 < body["sources"][0]["score"] <= 1
    assert body["diagnostics"] == []
    assert body["errors"] == []
    assert body["meta"]["user_id"] == "00000000-0000-4000-a000-00000000a11c"


def test_dragon_question_answers_about_both_dragons(app, call):
    _, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-bob", body={"question": DRAGONS})))

    answer = body["answer"].lower()
    assert "red dragon" in answer
    assert "white dragon" in answer
    assert {"red_dragon.md", "white_dragon.md"} <= {s["source"] for s in body["sources"]}


def test_usage_is_real_and_cost_is_priced_from_it(app, call):
    _, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": FIGHTER})))

    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["embedding_tokens"] > 0
    # offline tokens are priced at the configured gpt-4o-mini / text-embedding-3-small rates
    expected = (
        usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60 + usage["embedding_tokens"] * 0.02
    ) / 1_000_000
    assert body["meta"]["cost"]["query_cost"] == pytest.approx(expected, abs=1e-6)
    assert body["meta"]["cost"]["daily_budget"] == 1.0
    assert set(body["meta"]["rate_limit"]) == {"remaining_burst", "daily_remaining", "refill_rate"}


def test_k_bounds_the_number_of_sources(app, call):
    _, body, _ = parse(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": FIGHTER, "k": 3}))
    )

    assert len(body["sources"]) == 3


def test_debug_adds_diagnostics_without_secrets(app, call):
    _, body, _ = parse(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": FIGHTER, "debug": True}))
    )

    stages = {d["stage"] for d in body["diagnostics"]}
    assert stages == {"retrieval", "budget", "tokens", "timings"}
    assert "dev-alice" not in json.dumps(body)


def test_unknown_fields_are_ignored_and_the_question_is_trimmed(app, call):
    status, _, _ = parse(
        call(
            app,
            http_event("POST", "/api/query", token="dev-alice", body={"question": f"  {FIGHTER}  ", "colour": "blue"}),
        )
    )

    assert status == 200


def test_unicode_questions_are_answered(app, call):
    status, body, _ = parse(
        call(
            app,
            http_event("POST", "/api/query", token="dev-alice", body={"question": "Qu'est-ce qu'un beholder? 👁️ ✨"}),
        )
    )

    assert status == 200
    assert "beholder" in body["answer"].lower()


def test_a_json_body_with_a_form_content_type_is_still_json(app, call):
    event = http_event(
        "POST",
        "/api/query",
        token="dev-alice",
        body={"question": FIGHTER},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    status, body, _ = parse(call(app, event))

    assert status == 200
    assert "250,001" in body["answer"]


def test_an_integral_float_is_an_integer_as_json_schema_says(app, call):
    status, body, _ = parse(
        call(app, http_event("POST", "/api/query", token="dev-alice", body={"question": FIGHTER, "k": 4.0}))
    )

    assert status == 200
    assert len(body["sources"]) == 4
