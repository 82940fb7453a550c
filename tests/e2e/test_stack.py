"""The README's try-it section, over real HTTP against the started local stack."""

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.e2e

FIGHTER = "How many experience points does a fighter need to become 9th level?"
DRAGONS = "What is the difference between a red dragon and a white dragon?"


def ask(client, question, token="dev-alice", **extra):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/query", json={"question": question, **extra}, headers=headers)


def test_health(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["X-Request-Id"]


def test_fighter_question_answers_250001(client):
    response = ask(client, FIGHTER)

    assert response.status_code == 200, response.text
    assert "250,001" in response.json()["answer"]


def test_curl_style_form_content_type_still_answers(client):
    response = client.post(
        "/api/query",
        content=f'{{"question": "{FIGHTER}"}}',
        headers={"Authorization": "Bearer dev-bob", "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 200, response.text
    assert "250,001" in response.json()["answer"]


def test_dragon_question_covers_both_dragons(client):
    answer = ask(client, DRAGONS, token="dev-bob").json()["answer"].lower()

    assert "red dragon" in answer
    assert "white dragon" in answer


@pytest.mark.parametrize(("token", "code"), [(None, "missing_token"), ("not-a-dev-token", "invalid_token")])
def test_bad_tokens_are_401(client, token, code):
    response = ask(client, FIGHTER, token=token)

    assert response.status_code == 401
    assert response.json()["error"] == code
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


def test_empty_body_object_is_validation_error(client):
    response = client.post("/api/query", json={}, headers={"Authorization": "Bearer dev-alice"})

    assert (response.status_code, response.json()["error"]) == (400, "validation_error")


def test_broken_json_is_invalid_json(client):
    response = client.post("/api/query", content='{"question":', headers={"Authorization": "Bearer dev-alice"})

    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")


@pytest.mark.parametrize("path", ["/", "/api/unknown"])
def test_unknown_path_is_not_found_in_the_api_shape(client, path):
    response = client.get(path)

    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


def test_a_binary_body_that_is_not_utf8_is_invalid_json(client):
    response = client.post(
        "/api/query",
        content=b"\xff\xfe{\x00",
        headers={"Authorization": "Bearer dev-alice", "Content-Type": "application/octet-stream"},
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


def test_cors_preflight_allows_only_configured_origins(client):
    allowed = client.options(
        "/api/query",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    denied = client.options(
        "/api/query", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert allowed.headers["Access-Control-Allow-Methods"] == "DELETE,GET,OPTIONS,POST,PUT"  # SPEC §3 CORS
    assert allowed.headers["Access-Control-Allow-Headers"] == "Authorization,Content-Type,Idempotency-Key"
    assert "Access-Control-Allow-Origin" not in denied.headers


# One request of each kind the function answers (a preflight, 200, 401, 404, 405, 400) and its status.
CORS_REQUESTS = [
    ("OPTIONS", "/api/query", {"Access-Control-Request-Method": "POST"}, None, {200, 204}),  # sam local: 200
    ("GET", "/health", {}, None, {200}),
    ("GET", "/api/usage", {"Authorization": "Bearer dev-bob"}, None, {200}),
    ("POST", "/api/query", {"Content-Type": "application/json"}, b'{"question": "Who?"}', {401}),
    ("GET", "/nothing-here", {}, None, {404}),
    ("PATCH", "/api/query", {}, None, {405}),
    ("POST", "/api/query", {"Authorization": "Bearer dev-bob", "Content-Type": "application/json"}, b"{", {400}),
]


@pytest.mark.parametrize(
    ("origin", "allow_origins"), [("http://localhost:3000", ["http://localhost:3000"]), ("https://evil.example", [])]
)
def test_no_answer_carries_two_allow_origins_and_another_origin_gets_no_cors_header(client, origin, allow_origins):
    for method, path, headers, body, statuses in CORS_REQUESTS:
        answer = client.request(method, path, headers={"Origin": origin, **headers}, content=body)

        assert answer.status_code in statuses, (method, path, answer.status_code)
        assert answer.headers.get_list("Access-Control-Allow-Origin") == allow_origins, (method, path)
        if not allow_origins:
            assert not [name for name in answer.headers if name.lower().startswith("access-control-")], (method, path)


def test_concurrent_burst_through_several_containers_admits_exactly_the_capacity(client):
    # dev-admin is used by no other test; the stack runs the default policy (burst 15)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda n: ask(client, f"What is a beholder? ({n})", token="dev-admin"), range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 15 + [429] * 5
    assert {r.json()["error"] for r in responses if r.status_code == 429} == {"rate_limited"}
    assert len({r.headers["X-Request-Id"] for r in responses}) == 20
    usage = client.get("/api/usage", headers={"Authorization": "Bearer dev-admin"}).json()
    assert (usage["bucket"]["remaining_burst"], usage["today"]["requests"]) == (0, 15)


def test_the_same_question_twice_is_a_cache_hit_that_costs_nothing_until_the_corpus_is_ingested_again(
    client, stack_env
):
    question = f"{FIGHTER} (cache {uuid.uuid4().hex[:8]})"  # new to this stack's cache
    first = ask(client, question, token="dev-bob").json()

    second = ask(client, question, token="dev-bob").json()

    assert (first["meta"]["cache"], second["meta"]["cache"]) == ("miss", "hit")
    assert first["meta"]["cost"]["query_cost"] > 0
    assert second["meta"]["cost"]["query_cost"] == 0
    assert second["meta"]["cost"]["daily_total"] == first["meta"]["cost"]["daily_total"]
    assert second["answer"] == first["answer"]

    # the README's ingest command, run against this stack: a new corpus version, so a miss
    ingested = subprocess.run(
        [sys.executable, "-m", "infra.scripts.ingest", "infra/corpus"],
        cwd=REPO_ROOT,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert ingested.returncode == 0, ingested.stderr
    assert ask(client, question, token="dev-bob").json()["meta"]["cache"] == "miss"
