"""Who may use the operator routes (SPEC §3, issue 19): authenticate (401), then authorize — role
admin and not blocked, both read fresh — then validate (400); an operator cannot unblock or reset
themselves; every denial is in the audit trail; user ids as identity providers issue them.

Operators come from a scripted auth API (tests/fakes/auth_faults.py) so a test can demote or revoke
one while it runs; two containers (two apps) model two Lambda execution environments."""

import importlib
import json
import re
import sys
import uuid
from urllib.parse import quote

import pytest

from dnd_rag.handlers.admin_routes import ROUTE_METHODS
from infra.local.bootstrap import ensure_table
from tests.support.clock import Clock
from tests.support.events import http_event, lambda_context, parse

BOB = "00000000-0000-4000-a000-000000000b0b"  # dev-bob, the dev auth server's user without a role
QUESTION = {"question": "What is a beholder?", "k": 3}
# ids as real identity providers issue them: Auth0 (database and social connections), e-mail
# addresses (many IdPs' subject), a UUID (Cognito's sub)
IDP_IDS = [
    "auth0|abc123",
    "google-oauth2|1234",
    "alice.o'brien+dnd@example.com",
    "5f0c7d3e-9a1b-4c2d-8e3f-0a1b2c3d4e5f",
]


@pytest.fixture
def env(base_env, dynamodb):
    table = f"opauth-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    return {**base_env, "TABLE_NAME": table}


@pytest.fixture
def operators(scripted_auth, env):
    """Two admins (op-a, op-b) and a user (u-carol) on the scripted auth API; returns (env, script)."""
    url, script = scripted_auth
    script.users.update(
        {
            "tok-op-a": {"id": "op-a", "role": "admin"},
            "tok-op-b": {"id": "op-b", "role": "admin"},
            "tok-carol": {"id": "u-carol"},
        }
    )
    return {**env, "AUTH_API_URL": url}, script


def send(call, app, method, path, token, body=None, query=None, raw_body=None):
    event = http_event(method, path, body=body, raw_body=raw_body, token=token)
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return parse(call(app, event))


def every_operator_route(user_id="u-target"):
    """(method, concrete path, template) of every operator route of handlers/admin_routes.py."""
    for template, methods in ROUTE_METHODS.items():
        for method in sorted(methods):
            yield method, template.replace("{user_id}", user_id), template


VALID_BODIES = {
    "/api/admin/budget": {"daily_budget_usd": 2.5},
    "/api/admin/pause": {"reason": "incident"},
}


def test_pause_with_an_empty_body_as_dev_bob_is_403_not_400(make_app, call, env):
    app, _ = make_app(env)
    assert send(call, app, "GET", "/api/admin/usage", "dev-admin")[0] == 200  # nothing of it outlives its request

    status, body, _ = send(call, app, "POST", "/api/admin/pause", "dev-bob", body={})

    assert (status, body["error"]) == (403, "forbidden"), body
    assert "details" not in body


@pytest.mark.parametrize(
    ("method", "path", "template"), list(every_operator_route("sp ace")), ids=lambda v: str(v).replace(" ", "_")
)
@pytest.mark.parametrize("bad", ["empty_body", "wrong_types", "invalid_json", "bad_query"])
def test_non_admins_get_403_before_any_validation_on_every_operator_route_and_method(
    make_app, call, env, method, path, template, bad
):
    app, _ = make_app(env)
    body, raw, query = None, None, None
    if bad == "empty_body":
        body = {}
    elif bad == "wrong_types":
        body = {"daily_budget_usd": "lots", "reason": ["x"]}
    elif bad == "invalid_json":
        raw = '{"daily_budget_usd":'
    else:
        query = {"limit": "0"}

    status, answer, _ = send(call, app, method, path, "dev-bob", body=body, raw_body=raw, query=query)

    assert (status, answer["error"]) == (403, "forbidden"), answer


def test_a_blocked_admin_gets_403_user_blocked_on_every_route_whatever_its_container_copy_says(
    make_app, call, operators
):
    env, _ = operators
    clock = Clock()
    app_a, _ = make_app(env, clock=clock)
    app_b, _ = make_app(env, clock=clock)  # op-b's container: its copy of the controls is read now
    assert send(call, app_b, "GET", "/api/admin/usage", "tok-op-b")[0] == 200

    status, _, _ = send(call, app_a, "PUT", "/api/admin/users/op-b/block", "tok-op-a")
    assert status == 200
    # same instant: container B's copy of the controls is fresh, and says op-b is not blocked
    answers = {
        (method, template): send(call, app_b, method, path, "tok-op-b", body=VALID_BODIES.get(template))
        for method, path, template in every_operator_route("op-b")
    }
    answers[("DELETE", "unblock someone else")] = send(
        call, app_b, "DELETE", "/api/admin/users/u-carol/block", "tok-op-b"
    )

    refused = {route: (status, body.get("error")) for route, (status, body, _) in answers.items()}
    assert refused == dict.fromkeys(answers, (403, "user_blocked"))
    entries = send(call, app_a, "GET", "/api/admin/audit", "tok-op-a", query={"limit": "100"})[1]["entries"]
    assert [e["action"] for e in entries if e["who"] == "op-b"] == ["denied"] * len(answers)
    assert {e["after"]["error"] for e in entries if e["who"] == "op-b"} == {"user_blocked"}
    assert [e["action"] for e in entries if e["who"] == "op-a"] == ["block"]


@pytest.mark.parametrize(("method", "action"), [("DELETE", "block"), ("POST", "reset")])
def test_an_operator_cannot_unblock_or_reset_themselves(make_app, call, operators, method, action):
    env, _ = operators
    app, _ = make_app(env, clock=Clock())

    status, body, _ = send(call, app, method, f"/api/admin/users/op-a/{action}", "tok-op-a")

    assert (status, body["error"]) == (403, "forbidden"), body
    entry = send(call, app, "GET", "/api/admin/audit", "tok-op-b")[1]["entries"][0]
    assert (entry["action"], entry["who"], entry["after"]["error"]) == ("denied", "op-a", "forbidden")


@pytest.mark.parametrize(("change", "expected"), [("demoted", (403, "forbidden")), ("revoked", (401, "invalid_token"))])
def test_an_admin_demoted_or_revoked_at_the_auth_api_loses_the_operator_routes_within_30_seconds(
    make_app, call, operators, change, expected
):
    env, script = operators
    clock = Clock()
    app, _ = make_app({**env, "TOKEN_CACHE_TTL": "3600"}, clock=clock)
    assert send(call, app, "GET", "/api/admin/usage", "tok-op-a")[0] == 200

    if change == "demoted":
        script.users["tok-op-a"] = {"id": "op-a"}
    else:
        del script.users["tok-op-a"]
    clock.now += 20
    within = send(call, app, "GET", "/api/admin/usage", "tok-op-a")
    clock.now += 11  # 31 s after the auth API last vouched for the role
    after = send(call, app, "GET", "/api/admin/usage", "tok-op-a")
    query_path = send(call, app, "POST", "/api/query", "tok-carol", body=QUESTION)

    assert within[0] == 200  # a role may be trusted for up to 30 s
    assert (after[0], after[1]["error"]) == expected, after[1]
    assert query_path[0] == 200


def test_every_denial_on_an_operator_route_is_audited(make_app, call, env):
    app, _ = make_app(env, clock=Clock())

    for method, path, template in every_operator_route():
        assert send(call, app, method, path, "dev-bob", body=VALID_BODIES.get(template))[0] == 403

    entries = send(call, app, "GET", "/api/admin/audit", "dev-admin", query={"limit": "100"})[1]["entries"]
    routes = list(every_operator_route())
    assert len(entries) == len(routes)
    assert {(e["action"], e["who"], e["after"]["error"]) for e in entries} == {("denied", BOB, "forbidden")}
    assert sorted(e["target"] for e in entries) == sorted(f"{method} {template}" for method, _, template in routes)
    assert all(e["request_id"] for e in entries)


@pytest.mark.parametrize("user_id", IDP_IDS)
def test_ids_as_identity_providers_issue_them_can_be_blocked_unblocked_and_reset_percent_encoded(
    make_app, call, operators, user_id
):
    env, script = operators
    script.users["tok-idp"] = {"id": user_id, "email": "someone@example.com"}
    clock = Clock()
    app, _ = make_app(env, clock=clock)
    assert send(call, app, "POST", "/api/query", "tok-idp", body=QUESTION)[0] == 200
    encoded = quote(user_id, safe="")

    blocked = send(call, app, "PUT", f"/api/admin/users/{encoded}/block", "tok-op-a")
    refused = send(call, app, "POST", "/api/query", "tok-idp", body=QUESTION)
    clock.now += 1
    reset = send(call, app, "POST", f"/api/admin/users/{encoded}/reset", "tok-op-a")
    clock.now += 1
    unblocked = send(call, app, "DELETE", f"/api/admin/users/{encoded}/block", "tok-op-a")
    answered = send(call, app, "POST", "/api/query", "tok-idp", body=QUESTION)

    assert blocked[0] == 200, blocked[1]
    assert blocked[1]["controls"]["blocked_users"] == [user_id]
    assert (refused[0], refused[1]["error"]) == (403, "user_blocked")
    assert (reset[0], reset[1]["audit"]["target"]) == (200, user_id)
    assert (unblocked[0], unblocked[1]["audit"]["target"]) == (200, user_id)
    assert answered[0] == 200


@pytest.mark.parametrize("user_id", ["with space", "x" * 129, "tab\there", "émile", "", "line\nbreak"])
def test_an_id_outside_the_rule_is_refused_at_sign_in(make_app, call, operators, user_id):
    env, script = operators
    script.users["tok-odd"] = {"id": user_id}
    app, _ = make_app(env)

    status, body, _ = send(call, app, "POST", "/api/query", "tok-odd", body=QUESTION)

    assert (status, body["error"]) == (403, "forbidden"), body
    assert not user_id or user_id not in body["message"]


@pytest.mark.parametrize("path_id", ["x" * 129, "sp ace", "a%20b", "%FF", "%00", "%"])
def test_an_id_outside_the_rule_in_a_path_is_400_for_an_admin(make_app, call, operators, path_id):
    env, _ = operators
    app, _ = make_app(env)

    status, body, _ = send(call, app, "PUT", f"/api/admin/users/{path_id}/block", "tok-op-a")

    assert (status, body["error"]) == (400, "validation_error"), body
    assert "path.user_id" in {detail["field"] for detail in body["details"]}
    assert not re.search(re.escape(path_id), body["message"])


@pytest.fixture
def entry_point(base_env, corpus_ingested, env, monkeypatch):
    """The Lambda entry module, cold-started on a table of its own (these tests block and reset)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("dnd_rag.handlers.api", None)
    return importlib.import_module("dnd_rag.handlers.api")


def test_no_log_line_carries_a_raw_user_id_whatever_the_users_and_operators_do(entry_point, capfd, caplog):
    caplog.set_level("INFO")
    alice, admin = "00000000-0000-4000-a000-00000000a11c", "00000000-0000-4000-a000-0000000ad111"

    def run(method, path, token, body=None):
        event = http_event(method, path, body=body, token=token)
        return parse(entry_point.lambda_handler(event, lambda_context()))[0]

    statuses = [
        run("POST", "/api/query", "dev-alice", QUESTION),
        run("POST", "/api/query", "dev-bob", QUESTION),
        run("GET", "/api/usage", "dev-bob"),
        run("PUT", f"/api/admin/users/{alice}/block", "dev-admin"),
        run("POST", "/api/query", "dev-alice", QUESTION),
        run("POST", f"/api/admin/users/{BOB}/reset", "dev-admin"),
        run("DELETE", f"/api/admin/users/{alice}/block", "dev-admin"),
        run("POST", f"/api/admin/users/{admin}/reset", "dev-admin"),
        run("POST", "/api/admin/pause", "dev-bob", {"reason": "not mine to pause"}),
        run("GET", "/api/admin/audit", "dev-admin"),
    ]

    stdout = capfd.readouterr().out
    ours = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records if r.name == "dnd_rag"])
    for user_id in (alice, BOB, admin):
        assert user_id not in stdout + ours, user_id
    assert "operator action" in ours
    assert "operator route denied" in ours
    assert statuses == [200, 200, 200, 200, 403, 200, 200, 403, 403, 200]
