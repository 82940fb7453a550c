"""Rate limits on the serialized emulator: exact under concurrency, time-travel with an injected
clock, and the HTTP contract (429 shapes, nothing consumed by rejections, refunds)."""

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from dnd_rag.dal.limits.rate_limit import DynamoLimitStore
from dnd_rag.errors import DailyLimitExceededError, InvalidTokenError, IpRateLimitedError, RateLimitedError
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter
from tests.support.clock import Clock
from tests.support.events import http_event, parse
from tests.support.servers import REPO_ROOT, free_port, python_env

QUESTION = {"question": "What is a beholder?"}


@pytest.fixture
def limiter(dynamodb, table_name):
    return RateLimiter(DynamoLimitStore(dynamodb, table_name))


@pytest.fixture
def key():
    return f"USER#{uuid.uuid4().hex}"


def admitted(limiter, key, policy, now, attempts):
    results = []
    for _ in range(attempts):
        try:
            limiter.admit(key, policy, now)
            results.append(True)
        except (RateLimitedError, DailyLimitExceededError):
            results.append(False)
    return results.count(True)


# --- exactness under concurrency -------------------------------------------------------------


def test_50_concurrent_requests_against_capacity_15_admit_exactly_15(limiter, key):
    policy = Policy(capacity=15, refill_rate=1e-6, daily_limit=1000)
    now = time.time()

    def attempt(_):
        try:
            return limiter.admit(key, policy, now)
        except RateLimitedError:
            return None

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(attempt, range(50)))

    assert sum(r is not None for r in results) == 15
    assert limiter.peek(key, policy, now).remaining_burst == 0


def test_two_processes_together_admit_exactly_the_capacity(table_name, aws_endpoint, dynamodb, key):
    start_at = time.time() + 3  # both "containers" are up and waiting by then
    command = [sys.executable, "-m", "tests.support.limiter_worker", table_name, key, "25", "15", "1000", str(start_at)]
    workers = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=python_env(), stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    answers = [worker.communicate(timeout=120)[0].split() for worker in workers]
    admitted, unavailable = (sum(int(answer[n]) for answer in answers) for n in (0, 1))

    assert all(worker.returncode == 0 for worker in workers)
    # never more than the capacity; fewer only by requests a slow machine's store answered 503
    # (their admission given back, after every other thread had been refused for capacity)
    assert admitted <= 15
    assert admitted + unavailable >= 15
    state = RateLimiter(DynamoLimitStore(dynamodb, table_name)).state(key)
    assert state is not None
    assert state.count == admitted  # the books agree with the admissions


def test_20_concurrent_requests_against_3_remaining_daily_admit_exactly_3(limiter, key):
    policy = Policy(capacity=100, refill_rate=1e-6, daily_limit=10)
    now = time.time()
    assert admitted(limiter, key, policy, now, 7) == 7

    def attempt(_):
        try:
            limiter.admit(key, policy, now)
            return "ok"
        except DailyLimitExceededError:
            return "daily"

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))

    assert results.count("ok") == 3
    assert results.count("daily") == 17


# --- time, with the injected clock ------------------------------------------------------------


def test_the_bucket_refills_one_token_per_interval(limiter, key):
    policy = Policy(capacity=15, refill_rate=1 / 60, daily_limit=1000)
    clock = Clock()
    assert admitted(limiter, key, policy, clock(), 16) == 15

    with pytest.raises(RateLimitedError) as raised:
        limiter.admit(key, policy, clock() + 30)
    assert raised.value.retry_after == 30

    clock.now += 60
    assert admitted(limiter, key, policy, clock(), 2) == 1
    clock.now += 5 * 60
    assert admitted(limiter, key, policy, clock(), 6) == 5


def test_the_bucket_never_holds_more_than_its_capacity(limiter, key):
    policy = Policy(capacity=3, refill_rate=1 / 60, daily_limit=1000)
    clock = Clock()
    limiter.admit(key, policy, clock())

    clock.now += 3600  # an hour idle refills 60 tokens' worth, capped at 3
    assert admitted(limiter, key, policy, clock(), 5) == 3


def test_the_daily_limit_holds_across_refills_then_resets_at_midnight(limiter, key):
    policy = Policy(capacity=2, refill_rate=1, daily_limit=5)
    clock = Clock()
    for _ in range(5):
        limiter.admit(key, policy, clock())
        clock.now += 1

    with pytest.raises(DailyLimitExceededError) as raised:
        limiter.admit(key, policy, clock())
    assert raised.value.context["rate_info"]["reset_at"] == "2026-11-23T00:00:00Z"
    assert raised.value.retry_after == pytest.approx(12 * 3600 - 5, abs=1)

    clock.now = datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC).timestamp()
    admission = limiter.admit(key, policy, clock())
    assert admission.day == "2026-11-23"
    assert admission.standing.daily_remaining == 4
    assert admission.standing.remaining_burst == 1


def test_a_new_day_also_refills_the_bucket(limiter, key):
    policy = Policy(capacity=2, refill_rate=1e-6, daily_limit=100)
    clock = Clock(datetime(2026, 11, 22, 23, 59, 58, tzinfo=UTC).timestamp())
    assert admitted(limiter, key, policy, clock(), 3) == 2

    clock.now += 5  # past midnight
    assert admitted(limiter, key, policy, clock(), 3) == 2


def test_refund_gives_back_the_token_and_the_daily_count(limiter, key):
    policy = Policy(capacity=2, refill_rate=1e-6, daily_limit=100)
    now = time.time()
    limiter.admit(key, policy, now)
    second = limiter.admit(key, policy, now)

    limiter.refund(second)

    after = limiter.peek(key, policy, now)
    assert (after.remaining_burst, after.daily_count) == (1, 1)


def test_a_rejected_request_costs_one_round_trip_with_a_warm_guess(limiter, key, dynamodb):
    policy = Policy(capacity=1, refill_rate=1e-6, daily_limit=100)
    now = time.time()
    limiter.admit(key, policy, now)
    calls = []

    def count(**kwargs):
        calls.append(kwargs["event_name"])

    dynamodb.meta.events.register("before-send.dynamodb", count)
    try:
        with pytest.raises(RateLimitedError):
            limiter.admit(key, policy, now)
    finally:
        dynamodb.meta.events.unregister("before-send.dynamodb", count)

    assert len(calls) == 1


# --- the HTTP contract ------------------------------------------------------------------------


@pytest.fixture
def user_app(make_app, any_user_auth_url):
    def build(env=None, **kwargs):
        return make_app(
            {
                "AUTH_API_URL": any_user_auth_url,
                "TOKEN_BUCKET_CAPACITY": "15",
                "DAILY_USER_REQUEST_LIMIT": "30",
                **(env or {}),
            },
            **kwargs,
        )

    return build


@pytest.fixture
def token():
    return f"u-{uuid.uuid4().hex}"


def ask(call, app, token, body=QUESTION):
    return parse(call(app, http_event("POST", "/api/query", token=token, body=body)))


def usage(call, app, token):
    return parse(call(app, http_event("GET", "/api/usage", token=token)))[1]


def test_meta_rate_limit_reports_the_state_after_admission(user_app, call, token):
    app, _ = user_app()

    bodies = [ask(call, app, token)[1] for _ in range(3)]

    assert [b["meta"]["rate_limit"]["remaining_burst"] for b in bodies] == [14, 13, 12]
    assert [b["meta"]["rate_limit"]["daily_remaining"] for b in bodies] == [29, 28, 27]
    assert bodies[0]["meta"]["rate_limit"]["refill_rate"] == 0.016667


def test_an_empty_bucket_answers_429_rate_limited(user_app, call, token):
    app, _ = user_app({"TOKEN_BUCKET_CAPACITY": "2"})
    ask(call, app, token)
    ask(call, app, token)

    status, body, headers = ask(call, app, token)

    assert (status, body["error"]) == (429, "rate_limited")
    assert body["rate_info"]["remaining_burst"] == 0
    assert body["rate_info"]["daily_remaining"] == 28
    assert 1 <= body["rate_info"]["retry_after"] <= 60
    assert headers["Retry-After"] == str(body["rate_info"]["retry_after"])


def test_a_used_up_day_answers_429_daily_limit_exceeded(user_app, call, token):
    app, _ = user_app({"DAILY_USER_REQUEST_LIMIT": "2"})
    ask(call, app, token)
    ask(call, app, token)

    status, body, headers = ask(call, app, token)

    assert (status, body["error"]) == (429, "daily_limit_exceeded")
    assert body["rate_info"]["daily_remaining"] == 0
    assert body["rate_info"]["reset_at"].endswith("T00:00:00Z")
    assert int(headers["Retry-After"]) == body["rate_info"]["retry_after"] > 0


def test_plan_limits_come_from_the_users_plan(user_app, call, token):
    app, _ = user_app({"PLAN_LIMITS": '{"pro": {"capacity": 40, "daily_limit": 400}}'})

    pro = usage(call, app, f"{token}.pro")
    default = usage(call, app, token)

    assert (pro["plan"], pro["bucket"]["capacity"], pro["daily_limit"]) == ("pro", 40, 400)
    assert (default["plan"], default["bucket"]["capacity"], default["daily_limit"]) == ("default", 15, 30)


def test_usage_reads_without_consuming(user_app, call, token):
    app, _ = user_app()
    ask(call, app, token)

    first = usage(call, app, token)
    second = usage(call, app, token)

    assert first == second
    assert first["bucket"]["remaining_burst"] == 14
    assert first["daily_remaining"] == 29
    assert first["today"]["requests"] == 1
    assert first["reset_at"].endswith("T00:00:00Z")


def test_rejected_requests_consume_nothing(user_app, call, token):
    app, _ = user_app()
    assert ask(call, app, token, body={})[0] == 400
    assert parse(call(app, http_event("POST", "/api/query", token=token, raw_body="{")))[0] == 400
    assert ask(call, app, "not-a-user")[0] == 401
    assert ask(call, app, None)[0] == 401

    after = usage(call, app, token)
    assert (after["bucket"]["remaining_burst"], after["daily_remaining"], after["today"]["requests"]) == (15, 30, 0)


def test_an_upstream_failure_gives_the_request_back(user_app, call, token):
    app, _ = user_app({"CHROMA_PORT": str(free_port())})

    status, _, _ = ask(call, app, token)

    assert status == 502
    after = usage(call, app, token)
    assert (after["bucket"]["remaining_burst"], after["daily_remaining"]) == (15, 30)


def test_repeated_failed_sign_ins_from_one_address_are_429_ip_rate_limited(user_app, call):
    app, _ = user_app({"IP_AUTH_FAILURE_CAPACITY": "3"})
    ip = f"203.0.113.{uuid.uuid4().int % 250}"

    def guess(n):
        return parse(
            call(
                app,
                http_event("POST", "/api/query", token=f"guess-{n}-{uuid.uuid4().hex}", body=QUESTION, source_ip=ip),
            )
        )

    def valid(token):
        return parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION, source_ip=ip)))[0]

    signed_in = f"u-{uuid.uuid4().hex}"
    assert valid(signed_in) == 200  # validated and cached before the guessing starts

    answers = [guess(n) for n in range(5)]

    assert [a[0] for a in answers] == [401, 401, 401, 429, 429]
    assert answers[3][1]["error"] == "ip_rate_limited"
    assert int(answers[4][2]["Retry-After"]) > 0
    assert valid(signed_in) == 200  # a cached token needs no auth API call, so it is not blocked
    assert valid(f"u-{uuid.uuid4().hex}") == 429  # an uncached one from that address would be


def test_failed_sign_ins_are_limited_per_ipv6_64_not_per_address(user_app, call):
    app, _ = user_app({"IP_AUTH_FAILURE_CAPACITY": "3"})
    prefix = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:{uuid.uuid4().int % 0xFFFF:x}"

    def guess(ip):
        token = f"guess-{uuid.uuid4().hex}"
        return parse(call(app, http_event("POST", "/api/query", token=token, body=QUESTION, source_ip=ip)))[:2]

    # every guess from a new address of the same /64, as an attacker owning the /64 could send
    answers = [guess(f"{prefix}:{n:x}::1") for n in range(1, 5)]

    assert [status for status, _ in answers] == [401, 401, 401, 429]
    assert answers[3][1]["error"] == "ip_rate_limited"
    other_64 = f"{prefix[:-1]}{(int(prefix[-1], 16) + 1) % 16:x}:1::1"
    assert guess(other_64)[0] == 401  # a neighbouring /64 is another client


def test_parallel_guesses_from_one_address_reach_the_auth_api_no_more_often_than_sequential_ones(
    make_app, scripted_auth
):
    """40 guesses at once from one address, spread over 8 containers, against a slow auth API: each
    guess takes its failure slot by a conditional write before the auth API is asked, so exactly
    IP_AUTH_FAILURE_CAPACITY of them reach it, as when they come one by one. (Reading the limit,
    asking, then counting the failure let every guess in flight through: 40, 39, 33 per burst.)"""
    url, script = scripted_auth
    script.delay = 0.3  # a slow auth API keeps every guess in flight at once
    env = {
        "AUTH_API_URL": url,
        "IP_AUTH_FAILURE_CAPACITY": "5",
        "IP_AUTH_FAILURE_REFILL_RATE": "0.0001",  # no refill during the test
        "TOKEN_NEGATIVE_CACHE_TTL": "0",
    }
    containers = [make_app(env)[1] for _ in range(8)]

    def guess(n, ip):
        try:
            containers[n % len(containers)].authenticator.authenticate(f"Bearer guess-{uuid.uuid4().hex}", ip)
        except InvalidTokenError:
            return 401
        except IpRateLimitedError:
            return 429
        return 200

    parallel_ip, sequential_ip = (f"198.18.{uuid.uuid4().int % 250}.{n}" for n in (1, 2))
    with ThreadPoolExecutor(max_workers=40) as pool:
        parallel = list(pool.map(lambda n: guess(n, parallel_ip), range(40)))
    parallel_calls, script.calls = script.calls, 0
    sequential = [guess(n, sequential_ip) for n in range(40)]

    assert (parallel_calls, parallel.count(401), parallel.count(429)) == (5, 5, 35)
    assert (script.calls, sequential.count(401), sequential.count(429)) == (5, 5, 35)


def test_valid_sign_ins_give_their_slot_back(make_app, scripted_auth):
    url, script = scripted_auth
    _, container = make_app({"AUTH_API_URL": url, "IP_AUTH_FAILURE_CAPACITY": "3"})
    ip = f"198.18.{uuid.uuid4().int % 250}.3"
    tokens = [f"tok-{n}-{uuid.uuid4().hex}" for n in range(10)]
    script.users.update({token: {"id": f"u-{n}"} for n, token in enumerate(tokens)})

    signed_in = [container.authenticator.authenticate(f"Bearer {token}", ip).user.id for token in tokens]

    assert signed_in == [f"u-{n}" for n in range(10)]
    assert script.calls == 10
    standing = container.limiter.peek(f"IP#{ip}", Policy(3, 0.1, 10_000), container.clock())
    assert (standing.remaining_burst, standing.daily_count) == (3, 0)


def test_valid_sign_ins_at_once_from_one_address_wait_for_each_other_instead_of_being_refused(make_app, scripted_auth):
    """An office behind one NAT address: 24 people sign in at once over 8 containers, against a
    slow auth API, with 5 failure slots. Each check holds a slot while the auth API answers; a
    charge refused while others are in flight waits for them to be given back, so every valid
    token is let in, and the address ends with its 5 slots. (Refusing at once answered 19 of them
    429 ip_rate_limited for tokens that were valid.)"""
    url, script = scripted_auth
    script.delay = 0.3
    env = {"AUTH_API_URL": url, "IP_AUTH_FAILURE_CAPACITY": "5", "IP_AUTH_FAILURE_REFILL_RATE": "0.0001"}
    containers = [make_app(env)[1] for _ in range(8)]
    ip = f"198.18.{uuid.uuid4().int % 250}.4"
    tokens = [f"office-{n}-{uuid.uuid4().hex}" for n in range(24)]
    script.users.update({token: {"id": f"u-{n}"} for n, token in enumerate(tokens)})

    def sign_in(n):
        try:
            return containers[n % 8].authenticator.authenticate(f"Bearer {tokens[n]}", ip).user.id
        except IpRateLimitedError:
            return 429

    with ThreadPoolExecutor(max_workers=24) as pool:
        signed_in = list(pool.map(sign_in, range(24)))

    assert signed_in == [f"u-{n}" for n in range(24)]
    assert script.calls == 24
    standing = containers[0].limiter.peek(f"IP#{ip}", Policy(5, 0.0001, 10_000), containers[0].clock())
    assert (standing.remaining_burst, standing.daily_count) == (5, 0)


def test_a_failed_sign_in_is_not_waited_for_once_the_auth_api_refused_it(make_app, scripted_auth):
    """A guess that the auth API refused keeps its slot and leaves the in-flight record: the next
    guess from the address, past the capacity, is refused without waiting for it."""
    url, script = scripted_auth
    env = {"AUTH_API_URL": url, "IP_AUTH_FAILURE_CAPACITY": "2", "IP_AUTH_FAILURE_REFILL_RATE": "0.0001"}
    _, container = make_app(env)
    ip = f"198.18.{uuid.uuid4().int % 250}.5"
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            container.authenticator.authenticate(f"Bearer guess-{uuid.uuid4().hex}", ip)

    state = container.limiter.state(f"IP#{ip}")

    assert state is not None
    assert (state.count, state.ids) == (2, {})  # both counted, neither in flight
    with pytest.raises(IpRateLimitedError):
        container.authenticator.authenticate(f"Bearer guess-{uuid.uuid4().hex}", ip)
    assert script.calls == 2


class ItemlessRefusals:
    """The DynamoDB client as a DynamoDB-compatible engine that does not return the item with a
    refused condition (ReturnValuesOnConditionCheckFailure unsupported); every call is counted."""

    def __init__(self, client):
        self._client = client
        self.calls = []

    def update_item(self, **request):
        self.calls.append("UpdateItem")
        try:
            return self._client.update_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            exc.response.pop("Item", None)
            raise

    def get_item(self, **request):
        self.calls.append(f"GetItem(consistent={request.get('ConsistentRead', False)})")
        return self._client.get_item(**request)


def test_a_refusal_without_the_item_falls_back_to_one_consistent_read(dynamodb, table_name, key):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    RateLimiter(DynamoLimitStore(dynamodb, table_name)).admit(key, policy, now)  # the item exists
    client = ItemlessRefusals(dynamodb)
    fresh_container = RateLimiter(DynamoLimitStore(client, table_name))  # guesses "new day": refused

    admission = fresh_container.admit(key, policy, now)

    assert admission.standing.remaining_burst == 3
    assert client.calls == ["UpdateItem", "GetItem(consistent=True)", "UpdateItem"]


def test_without_the_item_an_empty_bucket_is_still_an_honest_429(dynamodb, table_name, key):
    policy = Policy(capacity=2, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    first = RateLimiter(DynamoLimitStore(dynamodb, table_name))
    first.admit(key, policy, now)
    first.admit(key, policy, now)
    client = ItemlessRefusals(dynamodb)

    with pytest.raises(RateLimitedError) as refused:
        RateLimiter(DynamoLimitStore(client, table_name)).admit(key, policy, now)

    assert refused.value.retry_after > 1  # the real wait for a token, not the "retry" of a lost race
    assert client.calls == ["UpdateItem", "GetItem(consistent=True)"]
