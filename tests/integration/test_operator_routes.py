"""The operator routes (SPEC §3, role admin) on the serialized emulator: each route as an admin,
its validation, its audit entry (who, before -> after), and the refusal of everybody else."""

import importlib
import json
import sys
import uuid

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.observability import metrics
from dnd_rag.pricing import NANOS_PER_USD
from infra.local.bootstrap import ensure_table
from tests.support.clock import Clock
from tests.support.events import http_event, lambda_context, parse

ALICE = "00000000-0000-4000-a000-00000000a11c"  # the dev auth server's users (infra/local/auth_server.py)
BOB = "00000000-0000-4000-a000-000000000b0b"
ADMIN = "00000000-0000-4000-a000-0000000ad111"
QUESTION = {"question": "What is a beholder?", "k": 3}

# every operator route, with a valid body
ADMIN_ROUTES = [
    ("GET", "/api/admin/usage", None),
    ("PUT", "/api/admin/budget", {"daily_budget_usd": 2.5}),
    ("POST", "/api/admin/pause", {"reason": "incident"}),
    ("POST", "/api/admin/resume", None),
    ("PUT", f"/api/admin/users/{ALICE}/block", None),
    ("DELETE", f"/api/admin/users/{ALICE}/block", None),
    ("POST", f"/api/admin/users/{ALICE}/reset", None),
    ("GET", "/api/admin/audit", None),
    ("GET", "/api/admin/spend", None),
    ("GET", "/api/admin/reconciliation", None),
]


@pytest.fixture
def env(base_env, dynamodb):
    """A table of its own: the controls are global, so each test starts from none."""
    table = f"ops-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    # the answer cache off: these queries repeat one question and must each be admitted and paid
    return {**base_env, "TABLE_NAME": table, "ANSWER_CACHE_TTL": "0"}


def admin(call, app, method, path, body=None, token="dev-admin", query=None):
    event = http_event(method, path, body=body, token=token)
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return parse(call(app, event))


def ask(call, app, token="dev-alice"):
    return parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))


def audit(call, app, **query):
    status, body, _ = admin(call, app, "GET", "/api/admin/audit", query=query or None)
    assert status == 200, body
    return body["entries"]


def control_item(dynamodb, table):
    key = {"pk": {"S": "CONTROL"}, "sk": {"S": "CURRENT"}}
    return dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_every_operator_route_refuses_users_without_role_admin_and_changes_nothing(
    make_app, call, env, dynamodb, method, path, body
):
    app, _ = make_app(env)

    as_bob = admin(call, app, method, path, body, token="dev-bob")
    anonymous = admin(call, app, method, path, body, token=None)

    assert (as_bob[0], as_bob[1]["error"]) == (403, "forbidden")
    assert (anonymous[0], anonymous[1]["error"]) == (401, "missing_token")
    assert control_item(dynamodb, env["TABLE_NAME"]) is None
    # the refusal is audited (the anonymous request has nobody to name)
    assert [(e["action"], e["who"]) for e in audit(call, app)] == [("denied", BOB)]


def test_pause_answers_503_service_paused_and_resume_undoes_it_both_audited(make_app, call, env):
    clock = Clock()
    app, _ = make_app(env, clock=clock)
    assert ask(call, app)[0] == 200

    status, paused, _ = admin(call, app, "POST", "/api/admin/pause", {"reason": "  runaway costs  "})
    refused = ask(call, app)
    clock.now += 1
    status_resume, resumed, _ = admin(call, app, "POST", "/api/admin/resume")
    answered = ask(call, app)

    assert status == 200, paused
    assert paused["controls"]["paused"]["reason"] == "runaway costs"
    assert paused["controls"]["paused"]["by"] == ADMIN
    assert (refused[0], refused[1]["error"]) == (503, "service_paused")
    assert int(refused[2]["Retry-After"]) > 0
    assert status_resume == 200
    assert resumed["controls"]["paused"] is None
    assert answered[0] == 200
    entries = audit(call, app)
    assert [(e["action"], e["who"], e["before"], e["after"]) for e in entries] == [
        ("resume", ADMIN, {"paused": True, "reason": "runaway costs", "by": ADMIN}, {"paused": False}),
        ("pause", ADMIN, {"paused": False}, {"paused": True, "reason": "runaway costs"}),
    ]
    assert entries[1]["request_id"]
    assert entries[0]["at"] > entries[1]["at"]


def test_block_refuses_that_users_queries_with_403_only_and_unblock_restores_them(make_app, call, env):
    clock = Clock()
    app, container = make_app(env, clock=clock)
    assert ask(call, app)[0] == 200  # alice's token is now cached in this container

    status, blocked, _ = admin(call, app, "PUT", f"/api/admin/users/{ALICE}/block")
    alice = ask(call, app)
    bob = ask(call, app, token="dev-bob")
    clock.now += 1
    admin(call, app, "DELETE", f"/api/admin/users/{ALICE}/block")

    assert status == 200
    assert blocked["controls"]["blocked_users"] == [ALICE]
    assert container.authenticator.authenticate("Bearer dev-alice").source == "local"
    assert (alice[0], alice[1]["error"]) == (403, "user_blocked")
    assert bob[0] == 200
    assert ask(call, app)[0] == 200
    assert [(e["action"], e["target"], e["before"], e["after"]) for e in audit(call, app)] == [
        ("unblock", ALICE, {"blocked": True}, {"blocked": False}),
        ("block", ALICE, {"blocked": False}, {"blocked": True}),
    ]


def test_reset_refills_the_bucket_zeroes_the_daily_count_and_the_dollar_use(make_app, call, env):
    clock = Clock()
    resets = []

    class RecordingSpendReset:  # the per-user dollar cap's store is another feature's; this port is ours
        def reset_spend(self, day, user_id):
            resets.append((day, user_id))

    app, container = make_app({**env, "TOKEN_BUCKET_CAPACITY": "5", "DAILY_USER_REQUEST_LIMIT": "10"}, clock=clock)
    container.spend_reset = RecordingSpendReset()
    for _ in range(3):
        assert ask(call, app)[0] == 200
    before = parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[1]

    status, body, _ = admin(call, app, "POST", f"/api/admin/users/{ALICE}/reset")
    after = parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[1]

    assert (before["bucket"]["remaining_burst"], before["daily_remaining"]) == (2, 7)
    assert status == 200, body
    assert (after["bucket"]["remaining_burst"], after["daily_remaining"], after["today"]["requests"]) == (5, 10, 0)
    assert resets == [("2026-11-22", ALICE)]
    assert (body["audit"]["action"], body["audit"]["target"], body["audit"]["who"]) == ("reset", ALICE, ADMIN)
    assert body["audit"]["before"] == {"daily_count": 3}
    assert body["audit"]["after"] == {"daily_count": 0, "bucket": "full", "dollar_use_reset": True}
    assert audit(call, app)[0]["id"] == body["audit"]["id"]


def test_reset_lets_a_user_past_the_dollar_cap_query_again_and_keeps_the_ledger(make_app, call, env):
    # Given alice refused by her own dollar cap (the real per-user store, wired by the container)
    app, container = make_app({**env, "USER_DAILY_BUDGET_USD": "0.0002", "MAX_COMPLETION_TOKENS": "60"})
    for _ in range(60):
        status, body, _ = ask(call, app)
        if status != 200:
            break
    assert (status, body["error"]) == (429, "user_budget_exceeded")
    spent_before = parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[1]["today"]["cost"]
    total_before = container.budget.totals().spent

    # When an operator resets her
    status, body, _ = admin(call, app, "POST", f"/api/admin/users/{ALICE}/reset")

    # Then her next query is answered; the books still hold what she spent before the reset
    assert status == 200, body
    assert body["audit"]["after"]["dollar_use_reset"] is True
    status, answered, _ = ask(call, app)
    assert status == 200, answered
    assert answered["meta"]["cost"]["user_daily_total"] == answered["meta"]["cost"]["query_cost"]
    usage = parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[1]
    # each figure is shown rounded to the micro-dollar: their sum may differ from the total's by one
    assert usage["today"]["cost"] == pytest.approx(spent_before + answered["meta"]["cost"]["query_cost"], abs=1e-6)
    assert container.budget.totals().spent > total_before


def test_the_budget_override_lets_queries_through_after_budget_exceeded_and_ends_at_midnight(make_app, call, env):
    # Given a budget of a few queries, spent
    clock = Clock()
    configured = "0.0002"
    app, _ = make_app({**env, "DAILY_BUDGET_USD": configured, "MAX_COMPLETION_TOKENS": "60"}, clock=clock)
    statuses = []
    for _ in range(60):
        status, body, _ = ask(call, app)
        statuses.append(status)
        if status == 503:
            break
    assert statuses[0] == 200
    assert (status, body["error"], body["reason"]) == (503, "budget_exceeded", "spent")

    # When an operator doubles today's budget
    status, changed, _ = admin(call, app, "PUT", "/api/admin/budget", {"daily_budget_usd": 0.0004})
    answered = ask(call, app)
    usage = admin(call, app, "GET", "/api/admin/usage")[1]

    # Then queries are answered again, within the new budget, and the change is audited
    assert status == 200, changed
    assert changed["controls"]["daily_budget"] == 0.0004
    assert changed["controls"]["budget_override"] == {
        "daily_budget_usd": 0.0004,
        "day": "2026-11-22",
        "until": "2026-11-23T00:00:00Z",
    }
    assert answered[0] == 200, answered[1]
    assert answered[1]["meta"]["cost"]["daily_budget"] == 0.0004
    assert usage["budget"]["daily_budget"] == 0.0004
    assert usage["budget"]["daily_total"] * NANOS_PER_USD <= 0.0004 * NANOS_PER_USD
    assert usage["overrides"]["budget_override"]["daily_budget_usd"] == 0.0004
    entry = audit(call, app)[0]
    assert (entry["action"], entry["before"], entry["after"]) == (
        "budget",
        {"daily_budget_usd": 0.0002},
        {"daily_budget_usd": 0.0004, "until": "2026-11-23T00:00:00Z"},
    )

    # And at the next UTC midnight the configured budget applies again, by itself
    clock.now += 12 * 3600 + 1
    next_day = admin(call, app, "GET", "/api/admin/usage")[1]
    assert next_day["budget"]["daily_budget"] == float(configured)
    assert next_day["overrides"]["budget_override"] is None
    assert ask(call, app)[1]["meta"]["cost"]["daily_budget"] == float(configured)


def test_a_budget_lowered_below_what_is_spent_refuses_new_queries(make_app, call, env):
    app, _ = make_app(env, clock=Clock())
    assert ask(call, app)[0] == 200

    admin(call, app, "PUT", "/api/admin/budget", {"daily_budget_usd": 0.000000001})
    status, body, _ = ask(call, app)

    assert (status, body["error"], body["reason"]) == (503, "budget_exceeded", "spent")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/api/admin/budget", {"daily_budget_usd": 0}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {"daily_budget_usd": -1}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {"daily_budget_usd": 1000.5}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {"daily_budget_usd": "2.5"}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {"daily_budget_usd": True}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {"daily_budget_usd": 0.0000000001}, "daily_budget_usd"),
        ("PUT", "/api/admin/budget", {}, "daily_budget_usd"),
        ("POST", "/api/admin/pause", {}, "reason"),
        ("POST", "/api/admin/pause", {"reason": " \t "}, "reason"),
        ("POST", "/api/admin/pause", {"reason": "x" * 501}, "reason"),
        ("PUT", "/api/admin/users/bad%20id/block", None, "path.user_id"),
        ("PUT", f"/api/admin/users/{'u' * 129}/block", None, "path.user_id"),
        ("DELETE", "/api/admin/users/a%FFb/block", None, "path.user_id"),
        ("POST", "/api/admin/users/sp ace/reset", None, "path.user_id"),
    ],
)
def test_invalid_operator_input_is_a_clear_400_and_changes_nothing(
    make_app, call, env, dynamodb, method, path, body, field
):
    app, _ = make_app(env)

    status, error, _ = admin(call, app, method, path, body)

    assert status == 400, error
    assert error["error"] == "validation_error"
    assert field in {detail["field"] for detail in error["details"]}
    assert control_item(dynamodb, env["TABLE_NAME"]) is None


@pytest.mark.parametrize("limit", ["0", "101", "ten", "1.5"])
def test_the_audit_limit_is_validated(make_app, call, env, limit):
    app, _ = make_app(env)

    status, error, _ = admin(call, app, "GET", "/api/admin/audit", query={"limit": limit})

    assert (status, error["error"]) == (400, "validation_error")
    assert error["details"][0]["field"] == "query.limit"


def test_invalid_json_to_an_operator_route_is_invalid_json(make_app, call, env):
    app, _ = make_app(env)

    response = call(app, http_event("PUT", "/api/admin/budget", raw_body='{"daily_budget_usd":', token="dev-admin"))

    assert parse(response)[:2][1]["error"] == "invalid_json"


def test_the_audit_trail_is_newest_first_and_limited(make_app, call, env):
    clock = Clock()
    app, _ = make_app(env, clock=clock)
    for n in range(5):
        clock.now += 1
        admin(call, app, "POST", "/api/admin/pause", {"reason": f"reason {n}"})

    latest = audit(call, app, limit="3")
    everything = audit(call, app)

    assert [e["after"]["reason"] for e in latest] == ["reason 4", "reason 3", "reason 2"]
    assert len(everything) == 5
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)


def test_a_wrong_method_on_an_operator_route_is_405_with_allow(make_app, call, env):
    app, _ = make_app(env)

    status, body, headers = admin(call, app, "GET", f"/api/admin/users/{ALICE}/block")

    assert (status, body["error"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "DELETE, OPTIONS, PUT"


def test_the_admin_report_shows_the_overrides_in_force(make_app, call, env):
    app, _ = make_app(env, clock=Clock())
    admin(call, app, "POST", "/api/admin/pause", {"reason": "maintenance"})
    admin(call, app, "PUT", f"/api/admin/users/{BOB}/block")

    status, report, _ = admin(call, app, "GET", "/api/admin/usage")

    assert status == 200
    overrides = report["overrides"]
    assert overrides["version"] == 2
    assert overrides["paused"] == {"reason": "maintenance", "by": ADMIN, "at": "2026-11-22T12:00:00Z"}
    assert overrides["blocked_users"] == [BOB]
    assert overrides["budget_override"] is None
    assert overrides["daily_budget"] == 1.0
    assert report["in_flight_reserved"] == 0


def test_every_change_emits_the_operator_action_metric_and_notifies_the_hook(env, corpus_ingested, monkeypatch, capfd):
    # Given the Lambda entry point (cold start) on a table of its own, with a notification hook
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("dnd_rag.handlers.api", None)
    module = importlib.import_module("dnd_rag.handlers.api")
    notified = []
    module.container.on_operator_action = notified.append
    metrics.clear_metrics()  # what earlier in-process tests recorded without a Lambda entry point to flush it
    capfd.readouterr()

    # When an operator pauses the service
    event = http_event("POST", "/api/admin/pause", body={"reason": "metric check"}, token="dev-admin")
    status = module.lambda_handler(event, lambda_context())["statusCode"]

    # Then one OperatorAction is published (EMF) and the hook saw the audit entry
    documents = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    assert status == 200
    published = [d["OperatorAction"] for d in documents if "OperatorAction" in d]
    assert published == [[1.0]]  # one EMF document, one data point (Powertools writes values as lists)
    assert [(entry.action, entry.who, entry.after) for entry in notified] == [
        ("pause", ADMIN, {"paused": True, "reason": "metric check"})
    ]


def test_what_a_user_or_operator_reads_right_after_a_write_is_read_consistently(make_app, call, env):
    # DynamoDB's default reads may miss a write made a moment before; moto's never do, so the
    # harness cannot show the staleness: the reads the routes send are checked instead.
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    reads: list[tuple[str, dict]] = []

    def record(params, model, **_):
        if model.name in ("GetItem", "Query", "BatchGetItem"):
            reads.append((model.name, params))

    client.meta.events.register("provide-client-params.dynamodb", record)
    app, _ = make_app(env, dynamodb_client=client)
    assert ask(call, app)[0] == 200
    admin(call, app, "POST", "/api/admin/pause", {"reason": "maintenance"})
    reads.clear()

    assert parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[0] == 200
    assert admin(call, app, "GET", "/api/admin/usage")[0] == 200
    audit(call, app)

    def consistent(operation, params):
        if operation == "BatchGetItem":
            return all(request.get("ConsistentRead") for request in params["RequestItems"].values())
        return params.get("ConsistentRead") is True

    # the shared token cache (sk AUTH) may be stale: a validation result, not a write of the caller's
    others = [(op, p) for op, p in reads if p.get("Key", {}).get("sk", {}).get("S") != "AUTH"]
    assert {op for op, _ in others} >= {"GetItem", "Query"}
    assert [(op, p) for op, p in others if not consistent(op, p)] == []
