"""Alert events a request leaves unsettled are kept pending and delivered by the scheduled
sweeper (logic/alerts/pending.py): an event reaches every channel even when no request comes
after the one that saw it due (a user past the quota who never returns; the day's last query),
exactly once however many sweeper containers run, and the record is removed once delivered.
A request whose deliveries settle writes no pending record at all.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dnd_rag.handlers.scheduled import run_task
from dnd_rag.models.events import event_id
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

SWEEP = {"dnd_rag_task": "sweep"}


class RecordedWrites:
    """The DynamoDB client, noting the key of every write to the alert partitions (``EVENT#``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[tuple[str, str, str]] = []  # (operation, pk, sk)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _note(self, operation: str, key: dict[str, Any]) -> None:
        if key["pk"]["S"].startswith("EVENT#"):
            with self._lock:
                self.writes.append((operation, key["pk"]["S"], key["sk"]["S"]))

    def update_item(self, **request: Any) -> Any:
        self._note("UpdateItem", request["Key"])
        return self._client.update_item(**request)

    def put_item(self, **request: Any) -> Any:
        self._note("PutItem", request["Item"])
        return self._client.put_item(**request)

    def delete_item(self, **request: Any) -> Any:
        self._note("DeleteItem", request["Key"])
        return self._client.delete_item(**request)

    def pending_writes(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [write for write in self.writes if write[2].startswith("PENDING#")]


def pending_items(dynamodb: Any, table: str, day: str) -> dict[str, dict[str, Any]]:
    """The day's pending records by event id."""
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :pending)",
        ExpressionAttributeValues={":pk": {"S": f"EVENT#{day}"}, ":pending": {"S": "PENDING#"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"].removeprefix("PENDING#"): item for item in items}


def sweep_in_two_containers_at_once(make_app: Any, env: dict[str, str]) -> list[dict[str, Any]]:
    """The scheduled sweep, invoked twice at the same time on two fresh containers."""
    sweepers = [make_app(env)[1] for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda container: run_task(container, SWEEP), sweepers))


@pytest.mark.parametrize("mode", ["fail", "hang"])
def test_a_quota_exceeded_event_whose_user_never_returns_is_delivered_once_by_the_sweeper(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver, mode
):
    # Given a daily quota of 2 requests and a webhook that fails (or hangs past its 0.5 s timeout)
    url, state = receiver
    state.mode = mode
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, 1000),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_TIMEOUT_SECONDS": "0.5",
        "DAILY_USER_REQUEST_LIMIT": "2",
    }
    app, _ = make_app(env)
    user = f"u-{uuid.uuid4().hex[:10]}"
    key = f"{user}:requests"
    events = {kind: event_id(kind, today(), key) for kind in ("user_quota_nearing", "user_quota_exceeded")}

    # When the user's second request uses the quota up (both events due, both deliveries fail)
    # and the user never comes back
    assert [ask(call, app, user)[0] for _ in range(2)] == [200, 200]
    assert state.attempted_ids() == dict.fromkeys(events.values(), 1)
    assert state.delivered_ids() == {}

    # Then both events are kept pending, composed, under their day, with a TTL
    pending = pending_items(dynamodb, table, today())
    assert set(pending) == set(events.values())
    exceeded = pending[events["user_quota_exceeded"]]
    assert (exceeded["type"]["S"], exceeded["key"]["S"]) == ("user_quota_exceeded", key)
    assert json.loads(exceeded["data"]["S"])["user_id"] == user
    assert int(exceeded["expires_at"]["N"]) > 0

    # and when the receiver is back, the scheduled sweep (two containers at once) delivers each once
    state.mode = "ok"
    sweep_in_two_containers_at_once(make_app, env)
    assert state.delivered_ids() == dict.fromkeys(events.values(), 1)
    # with the ids and data the request composed
    body = state.delivered_of("user_quota_exceeded")[0]
    assert (body["data"]["user_id"], body["data"]["quota"], body["data"]["limit"]) == (user, "requests", 2)
    # and the records are gone: a later sweep delivers nothing more
    assert pending_items(dynamodb, table, today()) == {}
    assert run_task(make_app(env)[1], SWEEP)["alerts"] == {"settled": 0, "pending": 0}
    assert state.delivered_ids() == dict.fromkeys(events.values(), 1)


def test_the_budget_exhausted_event_of_the_days_last_query_is_delivered_once_by_the_sweeper(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, receiver
):
    # Given e-mail and a failing webhook, and a budget one query takes past 80 % and 100 %
    url, state = receiver
    state.mode = "fail"
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = both_thresholds_in_one_query(cost)
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)), "ALERT_WEBHOOK_URL": url}
    app, _ = make_app(env)
    events = [event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)]

    # When the day's last query spends the budget (no query comes after it)
    assert ask(call, app, f"u-{uuid.uuid4().hex}")[0] == 200
    assert state.attempted_ids() == dict.fromkeys(events, 1)
    assert len(sent_alerts(aws_endpoint, recipient)) == 2  # e-mail got both at once
    assert set(pending_items(dynamodb, table, today())) == set(events)
    assert "alert_100_sent" not in total_item(dynamodb, table)

    # Then the sweeper delivers both to the webhook once (two containers at once), and e-mail,
    # which has them already, is not sent them again
    state.mode = "ok"
    sweep_in_two_containers_at_once(make_app, env)
    assert state.delivered_ids() == dict.fromkeys(events, 1)
    assert sorted(b["data"]["threshold"] for b in state.delivered_of("budget_threshold")) == [80, 100]
    assert len(sent_alerts(aws_endpoint, recipient)) == 2
    assert pending_items(dynamodb, table, today()) == {}
    run_task(make_app(env)[1], SWEEP)
    assert state.delivered_ids() == dict.fromkeys(events, 1)


def test_a_receiver_still_down_leaves_the_event_pending_for_the_next_sweep(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver
):
    url, state = receiver
    state.mode = "fail"
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, 1000),
        "ALERT_WEBHOOK_URL": url,
        "DAILY_USER_REQUEST_LIMIT": "1",
    }
    app, _ = make_app(env)
    user = f"u-{uuid.uuid4().hex[:10]}"
    assert ask(call, app, user)[0] == 200
    writes = RecordedWrites(dynamodb)

    # a sweep while the receiver still fails: tried again, kept, and not written again
    first = run_task(make_app(env, dynamodb_client=writes)[1], SWEEP)
    assert first["alerts"] == {"settled": 0, "pending": 2}
    assert len(pending_items(dynamodb, table, today())) == 2
    assert writes.pending_writes() == []
    # the next sweep, the receiver back: delivered and cleared
    state.mode = "ok"
    assert run_task(make_app(env)[1], SWEEP)["alerts"] == {"settled": 2, "pending": 0}
    assert sorted(state.delivered_ids().values()) == [1, 1]
    assert pending_items(dynamodb, table, today()) == {}


def test_requests_whose_deliveries_settle_write_no_pending_record(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, receiver
):
    # Given a working webhook and e-mail, and a budget one query takes past 80 % and 100 %
    url, state = receiver
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = both_thresholds_in_one_query(cost)
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)), "ALERT_WEBHOOK_URL": url}
    writes = RecordedWrites(dynamodb)
    app, _ = make_app(env, dynamodb_client=writes)
    # and, on a budget of $1000, a daily quota of 2 requests
    quota_env = {**env, "DAILY_BUDGET_USD": "1000", "DAILY_USER_REQUEST_LIMIT": "2"}
    quota_app, _ = make_app(quota_env, dynamodb_client=writes)
    user = f"u-{uuid.uuid4().hex[:10]}"

    # When a query spends the budget, and a user uses the quota up and asks again
    assert ask(call, app, f"u-{uuid.uuid4().hex}")[0] == 200
    assert [ask(call, quota_app, user)[0] for _ in range(3)] == [200, 200, 429]

    # Then every event was delivered (2 budget events by webhook and e-mail, 2 quota events by
    # webhook) with one claim and one "sent" mark each, and not one pending write
    assert len(state.delivered_ids()) == 4
    assert writes.pending_writes() == []
    assert [operation for operation, _, _ in writes.writes] == ["UpdateItem"] * 2 * 6
    assert pending_items(dynamodb, table, today()) == {}

    # and the same requests against a failing receiver: one pending write per event, no more
    state.mode = "fail"
    other = f"u-{uuid.uuid4().hex[:10]}"
    assert [ask(call, quota_app, other)[0] for _ in range(4)] == [200, 200, 429, 429]
    expected = {
        f"PENDING#{event_id(kind, today(), f'{other}:requests')}"
        for kind in ("user_quota_nearing", "user_quota_exceeded")
    }
    assert sorted(sk for _, _, sk in writes.pending_writes()) == sorted(expected)
