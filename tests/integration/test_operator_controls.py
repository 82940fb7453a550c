"""The operator controls across containers and under concurrency, on the serialized emulator.

Each container keeps a copy of the controls for CONTROLS_REFRESH_SECONDS (4 s by default): a
change made through one container reaches a query on another once that copy is older than the
refresh interval, never later (SPEC §3: within 5 s). Two operators changing the controls at once
both get their change (a conditional version). A paused or blocked query consumes nothing.
"""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from infra.local.bootstrap import ensure_table
from tests.support.clock import Clock
from tests.support.events import http_event, parse

ALICE = "00000000-0000-4000-a000-00000000a11c"
QUESTION = {"question": "What is a beholder?", "k": 3}
REFRESH = 4.0  # CONTROLS_REFRESH_SECONDS' default


@pytest.fixture
def env(base_env, dynamodb):
    table = f"ops-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    # the answer cache off: these queries repeat one question and must each be admitted and paid
    return {**base_env, "TABLE_NAME": table, "ANSWER_CACHE_TTL": "0"}


def ask(call, app, token="dev-alice"):
    return parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION)))


def operator(call, app, method, path, body=None, token="dev-admin"):
    status, answer, _ = parse(call(app, http_event(method, path, body=body, token=token)))
    assert status == 200, answer
    return answer


def standing(call, app, token="dev-alice"):
    """What the user's limits and the day's money look like (read without consuming)."""
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    return usage["bucket"]["remaining_burst"], usage["daily_remaining"], usage["today"], usage["budget"]


def test_a_block_reaches_another_container_with_the_token_cached_once_its_copy_ages(make_app, call, env):
    # Given container B serving alice: her token cached, its copy of the controls just read
    clock_a, clock_b = Clock(), Clock()
    app_a, _ = make_app(env, clock=clock_a)
    app_b, container_b = make_app(env, clock=clock_b)
    assert ask(call, app_b)[0] == 200
    read_at = clock_b.now

    # When an operator blocks alice through container A
    clock_a.now += 1
    operator(call, app_a, "PUT", f"/api/admin/users/{ALICE}/block")
    blocked_on_a = ask(call, app_a)

    # Then A refuses her at once; B keeps serving her from its fresh copy, then refuses her as
    # soon as the copy is REFRESH seconds old (within 5 s), although her token is still cached
    assert (blocked_on_a[0], blocked_on_a[1]["error"]) == (403, "user_blocked")
    clock_b.now = read_at + REFRESH - 0.5
    assert ask(call, app_b)[0] == 200
    clock_b.now = read_at + REFRESH
    assert container_b.authenticator.authenticate("Bearer dev-alice").source == "local"
    refused = ask(call, app_b)
    assert (refused[0], refused[1]["error"]) == (403, "user_blocked")
    assert ask(call, app_b, token="dev-bob")[0] == 200

    # And an unblock travels the same way
    clock_a.now += 1
    operator(call, app_a, "DELETE", f"/api/admin/users/{ALICE}/block")
    unblocked_at = clock_b.now
    clock_b.now = unblocked_at + REFRESH - 0.5
    assert ask(call, app_b)[0] == 403
    clock_b.now = unblocked_at + REFRESH
    assert ask(call, app_b)[0] == 200


def test_pause_and_resume_reach_every_container_within_the_refresh_interval(make_app, call, env):
    clocks = [Clock() for _ in range(3)]
    apps = [make_app(env, clock=clock)[0] for clock in clocks]
    for app in apps:
        assert ask(call, app)[0] == 200  # each copy read at noon

    operator(call, apps[0], "POST", "/api/admin/pause", {"reason": "incident"})
    before = [ask(call, app)[0] for app in apps[1:]]
    for clock in clocks:
        clock.now += REFRESH
    after = [ask(call, app) for app in apps]

    assert before == [200, 200]  # fresh copies, not yet re-read
    assert [(status, body["error"]) for status, body, _ in after] == [(503, "service_paused")] * 3
    assert all(int(headers["Retry-After"]) > 0 for _, _, headers in after)

    operator(call, apps[0], "POST", "/api/admin/resume")
    for clock in clocks:
        clock.now += REFRESH
    assert [ask(call, app)[0] for app in apps] == [200, 200, 200]


@pytest.mark.parametrize("copy", ["fresh", "stale"])
@pytest.mark.parametrize("control", ["pause", "block"])
def test_a_paused_or_blocked_query_consumes_nothing(make_app, call, env, control, copy):
    # Given alice with some of her limits and some of the budget used
    clock = Clock()
    limits = {"TOKEN_BUCKET_CAPACITY": "5", "TOKEN_REFILL_RATE": "0.0001", "DAILY_USER_REQUEST_LIMIT": "10"}
    app, _ = make_app({**env, **limits}, clock=clock)
    assert ask(call, app)[0] == 200
    if control == "pause":
        operator(call, app, "POST", "/api/admin/pause", {"reason": "test"})
    else:
        operator(call, app, "PUT", f"/api/admin/users/{ALICE}/block")
    before = standing(call, app)

    # When she asks three times
    statuses = set()
    for _ in range(3):
        if copy == "stale":  # the re-read runs beside the admission, which must then be given back
            clock.now += REFRESH
        statuses.add(ask(call, app)[0])

    # Then she is refused and nothing was taken: no token, no daily count, no money
    assert statuses == ({503} if control == "pause" else {403})
    assert standing(call, app) == before


class _Body:
    def __init__(self, data):
        self._data = data

    def stream(self, **_):
        yield self._data


def failing_control_reads(client, failing):
    """DynamoDB answers 500 to every read of the control item while ``failing`` holds a True
    (the emulator injects faults into writes only; this is the same answer, on the wire)."""

    def answer(request, **_):
        if failing[0] and b'"CONTROL"' in (request.body or b""):
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError"}).encode()
            return AWSResponse(request.url, 500, {"content-type": "application/x-amz-json-1.0"}, _Body(body))
        return None

    client.meta.events.register("before-send.dynamodb.GetItem", answer)


def test_a_store_error_reading_the_controls_fails_closed_and_gives_the_admission_back(make_app, call, env):
    clock, failing = Clock(), [False]
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    failing_control_reads(client, failing)
    limits = {"TOKEN_BUCKET_CAPACITY": "5", "DAILY_USER_REQUEST_LIMIT": "10"}
    app, _ = make_app({**env, **limits}, clock=clock, dynamodb_client=client)
    assert ask(call, app)[0] == 200
    before = standing(call, app)
    clock.now += REFRESH  # the copy is stale: the next query must re-read it

    failing[0] = True
    status, body, headers = ask(call, app)
    failing[0] = False

    assert (status, body["error"]) == (503, "service_unavailable")
    assert int(headers["Retry-After"]) > 0
    assert standing(call, app) == before
    assert ask(call, app)[0] == 200


def test_two_operators_blocking_users_at_once_lose_no_update(make_app, call, env, dynamodb, emulator_faults):
    # Given operators' requests in flight at once on 12 containers, and DynamoDB losing some
    # answers of applied writes (the SDK re-sends them)
    users = [f"user-{n:02d}" for n in range(12)]
    apps = [make_app(env)[0] for _ in users]  # a container serves one request at a time

    def block(n):
        return parse(call(apps[n], http_event("PUT", f"/api/admin/users/{users[n]}/block", token="dev-admin")))

    with emulator_faults.injecting(
        [{"fault": "lost_response", "operations": ["TransactWriteItems"], "key_prefix": "CONTROL", "probability": 0.2}],
        seed=7,
    ):
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(block, range(12)))
        lost = emulator_faults.total_injected()

    # Then every block was applied once, and audited once
    assert [status for status, _, _ in results] == [200] * 12, [body for _, body, _ in results]
    item = dynamodb.get_item(
        TableName=env["TABLE_NAME"], Key={"pk": {"S": "CONTROL"}, "sk": {"S": "CURRENT"}}, ConsistentRead=True
    )["Item"]
    assert sorted(item["blocked"]["SS"]) == users
    assert int(item["version"]["N"]) == 12
    entries = parse(call(apps[0], http_event("GET", "/api/admin/audit", token="dev-admin")))[1]["entries"]
    assert sorted(e["target"] for e in entries) == users
    assert lost > 0  # the lost answers really happened
