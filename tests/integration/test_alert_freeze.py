"""Alerts under Lambda's freeze (SPEC §4 "Lambda freezes"): a request's alert deliveries end, or
are given up, before its handler returns, and each event reaches each channel once — with
slow store calls, a hanging or slow receiver, a lost SES answer, and frozen workers.

In-process first (the handlers in this process: "frozen" means "still running when the handler
returned", read from the notifier pool's threads), then through the local gateway, whose workers
are SIGSTOPped as soon as their handler returns (infra/local/api_server.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dnd_rag.models.events import event_id
from infra.local.api_server import make_api_server
from tests.fakes.slow_proxy import start_slow_proxy
from tests.integration.test_budget import (
    QUESTION,
    ask,
    both_thresholds_in_one_query,
    budget_env,
    one_query_cost,
    sent_alerts,
    today,
    total_item,
    usd,
)
from tests.support.threads import alert_jobs_running

CLAIM_SECONDS = 10  # ALERT_CLAIM_SECONDS for these tests: the least the settings accept, rounded up


class SlowEventWrites:
    """The DynamoDB client, but every write to an alert claim item takes ``delay`` seconds more
    (a slow store that still answers within its timeouts)."""

    def __init__(self, client: Any, delay: float) -> None:
        self._client = client
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **request: Any) -> Any:
        if request["Key"]["pk"]["S"].startswith("EVENT#"):
            time.sleep(self._delay)
        return self._client.update_item(**request)


def claim_items(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Today's alert claim items by ``<event id>#<channel>`` (not the pending records beside them,
    ``PENDING#<event id>``: tests/integration/test_alert_pending.py)."""
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"EVENT#{today()}"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: item for item in items if not item["sk"]["S"].startswith("PENDING#")}


def test_no_alert_work_outlives_the_request_that_started_it(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, receiver
):
    # Given e-mail and a webhook that hangs (0.5 s timeout), and claims and marks that each take
    # 1 s: every job's steps are within their bounds, together past what the request used to wait
    url, state = receiver
    state.mode = "hang"
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = both_thresholds_in_one_query(cost)
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_TIMEOUT_SECONDS": "0.5",
    }
    app, container = make_app(env, dynamodb_client=SlowEventWrites(dynamodb, 1.0))

    # When the first query crosses 80 % (and leaves too little for another: 100 %) and its handler returns
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")
    returned = time.monotonic()

    # Then no delivery job was still running: nothing for a freeze to stop halfway
    running = alert_jobs_running()
    assert status == 200, body
    assert running == []
    events = [event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)]
    # each e-mail was sent and marked; each webhook call tried once, given up, and its claim dropped
    items = claim_items(dynamodb, table)
    for event in events:
        assert "sent_at" in items[f"{event}#ses"]
        assert "owner" not in items[f"{event}#webhook"]
        assert "sent_at" not in items[f"{event}#webhook"]
    assert state.attempted_ids() == dict.fromkeys(events, 1)
    assert all(a["received_at"] <= returned for a in state.attempts)
    assert len(sent_alerts(aws_endpoint, recipient)) == 2
    # and nothing happens after the return: no late mail, no late webhook call, no late mark
    time.sleep(1.5)
    assert len(sent_alerts(aws_endpoint, recipient)) == 2
    assert len(state.attempts) == 2
    assert claim_items(dynamodb, table) == items
    assert container.notifier.max_seconds == pytest.approx(7.25)  # its bound: 0.2 + 2.025 + 1 + 2 + 2.025


def test_a_slow_answer_is_never_followed_by_a_second_send_within_one_claim(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, receiver, monkeypatch
):
    # Given SES behind a proxy that holds its first answers 4 s (the mails are sent at once), and
    # a webhook receiver that answers each event's first POST a byte at a time for 3 s (0.5 s timeout)
    url, state = receiver
    state.mode, state.first_attempt_only, state.trickle_seconds = "trickle", True, 3.0
    proxy, slow = start_slow_proxy(aws_endpoint)
    slow.marker, slow.count, slow.delay = b"Action=SendEmail", 2, 4.0
    monkeypatch.setenv("AWS_ENDPOINT_URL_SES", f"http://127.0.0.1:{proxy.server_address[1]}")
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = both_thresholds_in_one_query(cost)
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_TIMEOUT_SECONDS": "0.5",
    }
    app, _ = make_app(env)
    token = f"u-{uuid.uuid4().hex}"

    # When a query crosses 80 % and 100 %: every delivery ends without an answer (outcome unknown)
    started = time.monotonic()
    assert ask(call, app, token)[0] == 200
    assert alert_jobs_running() == []

    # Then, well past the moment a retrying client would have sent again (a 3 s read timeout and
    # a resend), SES got each mail once and the receiver each POST once
    time.sleep(max(0.0, started + 4.5 - time.monotonic()))
    events = [event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)]
    assert sorted(mail_ids(aws_endpoint, recipient, events)) == sorted(events)
    assert state.attempted_ids() == dict.fromkeys(events, 1)
    # and every claim was dropped: the outcome is unknown, so a later request delivers again,
    # with the same event id (receivers dedupe on it; the e-mail names it)
    items = claim_items(dynamodb, table)
    assert [name for name, item in items.items() if "owner" in item or "sent_at" in item] == []
    later, _ = make_app(env)  # another container: this one waits RETRY_SECONDS before retrying
    assert ask(call, later, token)[0] == 503
    assert sorted(mail_ids(aws_endpoint, recipient, events)) == sorted(events * 2)
    assert state.wait_answered()
    assert state.delivered_ids() == dict.fromkeys(events, 1)
    assert all("sent_at" in item for item in claim_items(dynamodb, table).values())
    proxy.shutdown()


def mail_ids(aws_endpoint: str, recipient: str, events: list[str]) -> list[str]:
    """The event id each alert mail to ``recipient`` names."""
    return [event for mail in sent_alerts(aws_endpoint, recipient) for event in events if event in mail["body"]]


# --- through the gateway, workers frozen between invocations ----------------------------------


@pytest.fixture
def gateway(monkeypatch) -> Iterator[Any]:
    """Start the local gateway (template.yaml's routes, 2 containers, freezing on) once the test
    has put the workers' configuration in the environment: ``start()`` returns its URL."""
    started: list[Any] = []

    def start() -> str:
        monkeypatch.delenv("LOCAL_API_FREEZE", raising=False)
        monkeypatch.delenv("LOCAL_API_TIMEOUT_SECONDS", raising=False)
        server, pool = make_api_server("127.0.0.1", 0, 2)
        assert pool.freeze
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, pool))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, pool in started:
        server.shutdown()
        server.server_close()
        pool.shutdown()


def test_through_the_freezing_gateway_each_budget_event_reaches_each_channel_once(
    make_app,
    call,
    base_env,
    any_user_auth_url,
    table,
    recipient,
    dynamodb,
    aws_endpoint,
    receiver,
    gateway,
    monkeypatch,
):
    # Given a webhook receiver that answers each event's first POST a byte at a time for 14 s
    # (each byte within the read timeout, the whole answer past ALERT_WEBHOOK_TIMEOUT_SECONDS
    # and past ALERT_CLAIM_SECONDS), e-mail, and a budget of 6 queries, behind the gateway
    url, state = receiver
    state.mode, state.first_attempt_only, state.trickle_seconds = "trickle", True, 14.0
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = 6 * cost
    env = {
        **budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)),
        "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_TIMEOUT_SECONDS": "1",
        "ALERT_CLAIM_SECONDS": str(CLAIM_SECONDS),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    api = gateway()
    events = {threshold: event_id("budget_threshold", today(), f"{threshold}@{limit}") for threshold in (80, 100)}

    with httpx.Client(base_url=api, timeout=40) as client, ThreadPoolExecutor(max_workers=2) as pool:

        def query(user: str) -> int:
            return client.post(
                "/api/query", json={"question": QUESTION, "k": 3}, headers={"Authorization": f"Bearer {user}"}
            ).status_code

        def both_containers() -> list[int]:  # two at once: one goes to each container
            return list(pool.map(query, [f"u-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"]))

        assert both_containers() == [200, 200]  # both containers warm
        # When one user spends the budget (one container: the warmest takes each request)
        statuses = [query("u-spender")]
        while statuses[-1] == 200:
            statuses.append(query("u-spender"))
            assert len(statuses) < 20
        assert statuses[-1] == 503
        first_tries = {a["header_id"]: a for a in reversed(state.attempts)}
        assert set(first_tries) == set(events.values())  # both tried, and answered slowly
        tried_at = [a["received_at"] for a in first_tries.values()]

        # and requests keep coming on both containers once the claims of those first tries have
        # expired, while the slow answers are still trickling in (a frozen sender's socket takes them)
        time.sleep(max(0.0, max(tried_at) + CLAIM_SECONDS + 0.5 - time.monotonic()))
        give_up = time.monotonic() + 10
        while set(state.delivered_ids()) != set(events.values()) and time.monotonic() < give_up:
            both_containers()
            time.sleep(0.3)
        # and again once every slow answer is over
        time.sleep(max(0.0, max(tried_at) + state.trickle_seconds + 1 - time.monotonic()))
        both_containers()
        time.sleep(1)

    # Then the webhook got each event exactly once (tried at most twice: the slow first POST,
    # cut by its sender before its handler returned, and one retry), SES mailed each once, and
    # the day's total notes both as sent
    assert state.delivered_ids() == dict.fromkeys(events.values(), 1)
    assert all(n <= 2 for n in state.attempted_ids().values())
    assert [a["sender_left"] for a in first_tries.values()] == [True, True]
    assert len(sent_alerts(aws_endpoint, recipient)) == 2
    assert {"alert_80_sent", "alert_100_sent"} <= set(total_item(dynamodb, table))
