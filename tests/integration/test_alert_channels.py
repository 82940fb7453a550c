"""Alert events on every channel (SES, SNS through the emulator, a real local webhook receiver):
each event exactly once under concurrency, a failing receiver never fails a query, and a failed
delivery is retried by a later request with the same event id."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from dnd_rag.handlers.scheduled import run_task
from dnd_rag.logic.common.clock import iso
from dnd_rag.models.domain import User
from dnd_rag.models.events import EVENT_TYPES, SCHEMA_VERSION, event_id
from tests.integration.test_budget import (
    ask,
    both_thresholds_in_one_query,
    budget_env,
    one_query_cost,
    sent_alerts,
    today,
    total_item,
    usd,
)
from tests.support.clock import Clock
from tests.support.events import http_event, parse
from tests.support.servers import free_port


def spend_until_refused(call, app, tokens):
    statuses = []
    while not statuses or statuses[-1] == 200:
        statuses.append(ask(call, app, tokens[len(statuses) % len(tokens)])[0])
        assert len(statuses) < 200
    return statuses


def test_concurrent_queries_deliver_each_budget_event_exactly_once_on_every_channel(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, receiver, sns_topic
):
    # Given a budget of about 40 queries, and e-mail, SNS and a webhook configured
    url, state = receiver
    topic, published = sns_topic
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = 40 * cost
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_SNS_TOPIC_ARN": topic,
    }
    containers = [make_app(env)[0] for _ in range(6)]
    users = [f"u-{uuid.uuid4().hex[:10]}" for _ in range(4)]

    # When 6 containers answer 4 users at once until the budget refuses
    def container_work(index):
        return spend_until_refused(call, containers[index], users[index % 4 :] + users[: index % 4])

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = [s for batch in pool.map(container_work, range(6)) for s in batch]

    # Then every query was answered or refused for budget, never failed by an alert
    assert set(statuses) == {200, 503}
    # and the webhook got each threshold's event exactly once, with its id in the header and the body
    expected = {event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)}
    assert state.delivered_ids() == dict.fromkeys(expected, 1)
    bodies = state.delivered_of("budget_threshold")
    assert sorted(b["data"]["threshold"] for b in bodies) == [80, 100]
    warning = next(b for b in bodies if b["data"]["threshold"] == 80)
    assert warning["schema_version"] == SCHEMA_VERSION
    assert warning["data"]["spent_usd"] >= 0.8 * warning["data"]["budget_usd"]
    assert {u["user_id"] for u in warning["data"]["top_users"]} == set(users)
    assert warning["data"]["forecast"]["rate_usd_per_hour"] > 0
    # and SNS published each once, with the id to dedupe on
    messages = published()
    assert sorted(m["MessageAttributes"]["event_id"]["StringValue"] for m in messages) == sorted(expected)
    assert {json.loads(m["Body"])["id"] for m in messages} == expected
    # and SES mailed each once
    assert len(sent_alerts(aws_endpoint, recipient)) == 2


def test_a_failing_receiver_never_fails_a_query_and_gets_the_event_once_after_it_recovers(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver
):
    url, state = receiver
    state.mode = "fail"
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = 8 * cost
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)), "ALERT_WEBHOOK_URL": url}
    app, _ = make_app(env)
    token = f"u-{uuid.uuid4().hex}"

    statuses = spend_until_refused(call, app, [token])

    warning = event_id("budget_threshold", today(), f"80@{limit}")
    assert statuses[-1] == 503
    assert set(statuses[:-1]) == {200}
    assert state.attempted_ids()[warning] >= 1  # it was tried (and refused)
    assert state.delivered_ids() == {}
    assert "alert_80_sent" not in total_item(dynamodb, table)  # still owed

    # When the receiver recovers, a later request (another container) delivers what is owed, once
    state.mode = "ok"
    later, _ = make_app(env)
    assert ask(call, later, token)[0] == 503
    assert ask(call, later, token)[0] == 503

    exhausted = event_id("budget_threshold", today(), f"100@{limit}")
    assert state.delivered_ids() == {warning: 1, exhausted: 1}
    assert {item["body"]["id"] for item in state.delivered} == {warning, exhausted}  # the ids tried before
    # and the day's total now notes both as delivered everywhere: later requests skip them for free
    assert {"alert_80_sent", "alert_100_sent"} <= set(total_item(dynamodb, table))


def test_a_changed_budget_re_arms_the_budget_events_once_for_the_new_budget(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, receiver
):
    # Given a budget of a few queries, spent: its 80 % and 100 % events delivered
    url, state = receiver
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = 8 * cost
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)), "ALERT_WEBHOOK_URL": url}
    app, container = make_app(env)
    token = f"u-{uuid.uuid4().hex}"
    assert spend_until_refused(call, app, [token])[-1] == 503
    first = {event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)}

    # When an operator doubles today's budget and it is spent again
    container.operator.set_budget(User(id="u-operator", role="admin"), 2 * limit, "request-1")
    statuses = spend_until_refused(call, app, [token])

    # Then the new budget's 80 % and 100 % events arrive once each, and the first ones not again
    second = {event_id("budget_threshold", today(), f"{threshold}@{2 * limit}") for threshold in (80, 100)}
    assert (statuses[0], statuses[-1]) == (200, 503)
    budget_events = {i: n for i, n in state.delivered_ids().items() if i in first | second}
    assert budget_events == dict.fromkeys(first | second, 1)
    assert sorted(b["data"]["budget_usd"] for b in state.delivered_of("budget_threshold")) == sorted(
        [float(usd(limit))] * 2 + [float(usd(2 * limit))] * 2
    )
    assert len(sent_alerts(aws_endpoint, recipient)) == 4
    # and later requests under the new budget send nothing more
    assert ask(call, app, token)[0] == 503
    assert len(state.delivered_of("budget_threshold")) == 4


def test_a_hanging_or_refusing_receiver_costs_a_query_only_its_bounded_timeout(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver
):
    url, state = receiver
    state.mode = "hang"
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = both_thresholds_in_one_query(cost)
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_TIMEOUT_SECONDS": "0.5",
    }
    app, container = make_app(env)

    # the first query crosses 80 %: its alert meets a receiver that never answers
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200, body
    assert state.attempted_ids()[event_id("budget_threshold", today(), f"80@{limit}")] == 1
    assert not state.release.is_set()  # answered while the receiver still held the request
    # what a request may wait at most: pick-up, claim, compose, the slowest channel (SES), mark
    assert container.notifier.max_seconds == pytest.approx(0.2 + 2.025 + 1.0 + 2.0 + 2.025)
    assert "alert_80_sent" not in total_item(dynamodb, table)

    # and a receiver that refuses connections: answered too, the event still owed
    closed = {**env, "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"}
    refused_app, _ = make_app(closed)
    assert ask(call, refused_app, f"u-{uuid.uuid4().hex}")[0] in (200, 503)
    assert "alert_80_sent" not in total_item(dynamodb, table)


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "lost-responses"])
def test_the_daily_request_quota_emits_nearing_and_exceeded_once_each_under_concurrency(
    make_app, call, base_env, any_user_auth_url, table, recipient, receiver, emulator_faults, faults
):
    # Given a daily quota of 5 requests and 6 containers (and, in one run, DynamoDB losing the
    # answers to half the claim, sent and drop writes, which the SDK then sends again)
    url, state = receiver
    if faults:
        emulator_faults.set(
            [{"fault": "lost_response", "operations": ["UpdateItem"], "key_prefix": "EVENT#", "probability": 0.5}],
            seed=7,
        )
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, 1000),
        "ALERT_WEBHOOK_URL": url,
        "DAILY_USER_REQUEST_LIMIT": "5",
    }
    containers = [make_app(env)[0] for _ in range(6)]
    user = f"u-{uuid.uuid4().hex[:10]}"

    # When 12 queries of one user arrive at once, two in a row on each of 6 containers (a
    # container, like a Lambda one, serves one request at a time)
    with ThreadPoolExecutor(max_workers=6) as pool:
        batches = pool.map(lambda app: [ask(call, app, user)[0] for _ in range(2)], containers)
        statuses = [status for batch in batches for status in batch]

    # Then 5 were admitted
    assert sorted(statuses) == [200] * 5 + [429] * 7
    # and each event was delivered exactly once: by a request, or at the latest by the next
    # scheduled sweep, since the user may never come back (a job that found no thread in time,
    # or met another container's claim, leaves its event pending; two sweeper containers at once)
    sweepers = [make_app(env)[1] for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda container: run_task(container, {"dnd_rag_task": "sweep"}), sweepers))
    key = f"{user}:requests"
    assert state.delivered_ids() == {
        event_id("user_quota_nearing", today(), key): 1,
        event_id("user_quota_exceeded", today(), key): 1,
    }
    if faults:
        assert emulator_faults.injected()["lost_response"]["UpdateItem"] >= 1
    nearing = state.delivered_of("user_quota_nearing")[0]["data"]
    assert (nearing["user_id"], nearing["quota"], nearing["limit"]) == (user, "requests", 5)
    assert nearing["used"] >= 4


def test_the_dollar_cap_and_operator_actions_emit_each_event_once(make_app, table, recipient, base_env, receiver):
    url, state = receiver
    _, container = make_app({**base_env, "TABLE_NAME": table, "ALERT_EMAIL": recipient, "ALERT_WEBHOOK_URL": url})
    quota, operator = container.quota_events, container.operator_events
    day, cap = today(), 1_000_000

    # the usercap branch reports each settle's spend: 8 concurrent observations crossing 80 % and 100 %
    spends = [700_000, 790_000, 800_000, 850_000, 900_000, 1_000_000, 1_000_000, 990_000]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda spent: quota.observe_spend(day, "u-capped", spent, cap), spends))
    # two actions with their audit ids, one of them reported twice
    for action_id in ("a-1", "a-2", "a-2"):
        operator.on_action("dev-admin", "pause", {"paused": False}, {"paused": True}, action_id=action_id)

    assert state.delivered_ids() == {
        event_id("user_quota_nearing", day, "u-capped:usd"): 1,
        event_id("user_quota_exceeded", day, "u-capped:usd"): 1,
        event_id("operator_action", day, "a-1"): 1,
        event_id("operator_action", day, "a-2"): 1,
    }
    action = state.delivered_of("operator_action")[0]
    assert action["data"]["who"] == "dev-admin"
    assert (action["data"]["before"], action["data"]["after"]) == ({"paused": False}, {"paused": True})
    assert {item["header_type"] for item in state.delivered} <= set(EVENT_TYPES)
    assert {item["content_type"] for item in state.delivered} == {"application/json"}


def test_the_spend_curve_rides_on_the_settle_and_the_admin_report_forecasts_the_run_out(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    # Given a clock standing at 12:00:30 UTC today, and a budget of 10 queries
    noon = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC).timestamp() + 12 * 3600 + 30
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(10 * cost))
    app, _ = make_app(env, clock=Clock(noon))
    for _ in range(3):
        assert ask(call, app, f"u-{uuid.uuid4().hex}")[0] == 200

    admin_app, _ = make_app({**env, "AUTH_API_URL": base_env["AUTH_API_URL"]}, clock=Clock(noon))
    status, report, _ = parse(call(admin_app, http_event("GET", "/api/admin/usage", token="dev-admin")))

    # Then the day's curve holds every settled cent in the 12:00 bucket
    total = total_item(dynamodb, table)
    spent, limit = int(total["spent"]["N"]), 10 * cost
    assert {name: int(value["N"]) for name, value in total.items() if name.startswith("s_")} == {"s_1200": spent}
    # and the forecast extrapolates it over one bucket (10 minutes): runs out before midnight
    rate = spent * 6
    assert status == 200
    assert report["forecast"]["rate_usd_per_hour"] == pytest.approx(rate / 1e9, abs=1e-6)
    assert report["forecast"]["runs_out_at"] == iso(noon + (limit - spent) * 3600 / rate)
    assert 0 < report["forecast"]["hours_before_midnight"] < 12


def test_an_operator_route_delivers_its_action_once_with_the_audit_id(make_app, call, base_env, table, receiver):
    url, state = receiver
    app, _ = make_app({**base_env, "TABLE_NAME": table, "ALERT_WEBHOOK_URL": url})

    status, answer, _ = parse(
        call(app, http_event("POST", "/api/admin/pause", body={"reason": "incident"}, token="dev-admin"))
    )

    assert status == 200, answer
    audit_id = answer["audit"]["id"]
    assert state.delivered_ids() == {event_id("operator_action", today(), audit_id): 1}
    data = state.delivered_of("operator_action")[0]["data"]
    assert (data["who"], data["action"], data["target"]) == (answer["audit"]["who"], "pause", "service")
    assert (data["before"], data["after"]) == (answer["audit"]["before"], answer["audit"]["after"])


def test_the_dollar_cap_makes_nearing_and_exceeded_due_from_real_queries(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver
):
    # Given a per-user cap of about 5 queries (the answer cache off: each query is paid)
    url, state = receiver
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, 1000),
        "ALERT_WEBHOOK_URL": url,
        "USER_DAILY_BUDGET_USD": str(usd(5 * cost)),
        "ANSWER_CACHE_TTL": "0",
    }
    app, _ = make_app(env)
    user = f"u-{uuid.uuid4().hex[:10]}"

    # When the user asks until the cap refuses
    statuses = []
    while not statuses or statuses[-1] == 200:
        statuses.append(ask(call, app, user)[0])
        assert len(statuses) < 50

    # Then the user's dollar events came once each
    key = f"{user}:usd"
    assert statuses[-1] == 429
    assert state.delivered_ids() == {
        event_id("user_quota_nearing", today(), key): 1,
        event_id("user_quota_exceeded", today(), key): 1,  # the cap can no longer pay for a query
    }
    nearing = state.delivered_of("user_quota_nearing")[0]["data"]
    assert (nearing["quota"], nearing["user_id"]) == ("usd", user)
    assert nearing["used"] >= 0.8 * nearing["limit"]
