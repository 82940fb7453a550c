"""The rate limiter under resent writes (SPEC §4 "DynamoDB throttles and resends"): the emulator
applies a write and loses its answer (``lost_response``), the SDK and ``with_retries`` send it
again, and nothing may be counted twice: admissions, the daily count, the bucket, refunds.

Each test limits the faults to its own key and talks through a client of its own (botocore's retry
quota is per client; see test_emulator_faults.py). The counting tests use only ``admit``,
``refund`` and the stored item, so they run unchanged against a limiter without request ids.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.dal.limits.rate_limit import DynamoLimitStore
from dnd_rag.errors import DailyLimitExceededError, RateLimitedError, ServiceError, StoreUnavailableError
from dnd_rag.logic.limits.rate_limit import Admission, Policy, RateLimiter
from tests.support.clock import Clock
from tests.support.servers import REPO_ROOT, python_env

# (probability, max_count, seed): every answer lost until max_count; or half of them, several seeds
LOSSES = [
    pytest.param(1.0, 12, 1, id="all-lost-first-12"),
    pytest.param(0.5, None, 1, id="half-lost-seed1"),
    pytest.param(0.5, None, 2, id="half-lost-seed2"),
    pytest.param(0.5, None, 3, id="half-lost-seed3"),
]
THREADS = 20
# One at a time, a resent write meets the state its first attempt left (a second "tat + interval"
# would still fit); twenty at once, it mostly meets a bucket the others already filled.
WORKERS = [pytest.param(1, id="one-at-a-time"), pytest.param(THREADS, id="20-at-once")]


@pytest.fixture
def key() -> str:
    return f"USER#{uuid.uuid4().hex}"


@pytest.fixture
def client(aws_endpoint: str) -> Any:
    """The Lambda's client configuration (3 attempts, standard mode), with a retry quota of its own."""
    return boto3.client("dynamodb", config=CLIENT_CONFIG)


@pytest.fixture
def limiter(client: Any, table_name: str) -> RateLimiter:
    return RateLimiter(DynamoLimitStore(client, table_name))


def lose_answers(emulator_faults: Any, key: str, probability: float, max_count: int | None, seed: int) -> None:
    rule = {"fault": "lost_response", "key_prefix": key, "probability": probability, "max_count": max_count}
    emulator_faults.set([rule], seed=seed)


def stored(dynamodb: Any, table: str, key: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": key}, "sk": {"S": "LIMITS"}}, ConsistentRead=True
    )["Item"]
    return item


def count_and_tat(dynamodb: Any, table: str, key: str) -> tuple[int, int]:
    item = stored(dynamodb, table, key)
    return int(item["daily_count"]["N"]), int(item["tat"]["N"])


def admit_all(
    limiter: RateLimiter, key: str, policy: Policy, now: float, n: int = THREADS, workers: int = THREADS
) -> list[Any]:
    """``n`` admissions, ``workers`` at a time: each an Admission, or the error it ended with."""

    def attempt(_: int) -> Any:
        try:
            return limiter.admit(key, policy, now)
        except (RateLimitedError, DailyLimitExceededError, ServiceError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(attempt, range(n)))


def admissions(results: list[Any]) -> list[Admission]:
    return [r for r in results if isinstance(r, Admission)]


# --- admissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(("probability", "max_count", "seed"), LOSSES)
def test_a_burst_of_5_admits_exactly_5_and_stores_exactly_that(
    limiter, key, dynamodb, table_name, emulator_faults, probability, max_count, seed, workers
):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    lose_answers(emulator_faults, key, probability, max_count, seed)

    results = admit_all(limiter, key, policy, now, workers=workers)

    lost = emulator_faults.injected().get("lost_response", {}).get("UpdateItem", 0)
    emulator_faults.clear()
    assert lost > 0
    assert len(admissions(results)) == 5
    # a request whose every answer was lost is answered 503 and consumes nothing (given back)
    assert all(isinstance(r, (Admission, RateLimitedError, StoreUnavailableError)) for r in results)
    count, tat = count_and_tat(dynamodb, table_name, key)
    assert count == 5
    assert tat == int(now * 1000) + 5 * policy.interval_ms  # five tokens taken, not more
    assert limiter.peek(key, policy, now).remaining_burst == 0


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(("probability", "max_count", "seed"), LOSSES)
def test_a_daily_limit_of_4_admits_exactly_4(
    limiter, key, dynamodb, table_name, emulator_faults, probability, max_count, seed, workers
):
    policy = Policy(capacity=100, refill_rate=1e-6, daily_limit=4)
    now = time.time()
    lose_answers(emulator_faults, key, probability, max_count, seed)

    results = admit_all(limiter, key, policy, now, workers=workers)

    lost = emulator_faults.injected().get("lost_response", {}).get("UpdateItem", 0)
    emulator_faults.clear()
    assert lost > 0
    assert len(admissions(results)) == 4
    refused = sum(isinstance(r, DailyLimitExceededError) for r in results)
    unavailable = sum(isinstance(r, StoreUnavailableError) for r in results)  # consumed nothing
    assert refused + unavailable == THREADS - 4
    assert count_and_tat(dynamodb, table_name, key)[0] == 4


def test_two_processes_under_lost_answers_admit_exactly_the_capacity(
    table_name, aws_endpoint, key, dynamodb, emulator_faults
):
    lose_answers(emulator_faults, key, 0.5, None, 7)
    start_at = time.time() + 3  # both "containers" are up and waiting by then
    command = [sys.executable, "-m", "tests.support.limiter_worker", table_name, key, "10", "5", "1000", str(start_at)]
    workers = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=python_env(), stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    answers = [worker.communicate(timeout=120)[0].split() for worker in workers]
    admitted, unavailable = (sum(int(answer[n]) for answer in answers) for n in (0, 1))

    lost = emulator_faults.injected().get("lost_response", {}).get("UpdateItem", 0)
    emulator_faults.clear()
    assert lost > 0
    # a lost answer is resent and recognised as ours: never a second token, never a spurious 429;
    # fewer than 5 only by requests whose every attempt lost its answer (503, given back)
    assert admitted <= 5
    assert admitted + unavailable >= 5
    assert count_and_tat(dynamodb, table_name, key)[0] == admitted


def test_when_no_answer_ever_comes_back_every_admission_is_given_back(
    limiter, key, dynamodb, table_name, emulator_faults
):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    lose_answers(emulator_faults, key, 1.0, None, 1)

    results = admit_all(limiter, key, policy, now, n=5)

    emulator_faults.clear()
    assert all(isinstance(r, StoreUnavailableError) for r in results)  # 503: the answers never came
    # each write was applied, and each 503 gave its admission back by name: nothing consumed
    count, tat = count_and_tat(dynamodb, table_name, key)
    assert (count, tat) == (0, int(now * 1000))
    assert stored(dynamodb, table_name, key)["ids"]["M"] == {}


def test_an_admission_named_twice_is_counted_once(limiter, key, dynamodb, table_name):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()

    first = limiter.admit(key, policy, now, request_id="req-1")
    again = RateLimiter(DynamoLimitStore(dynamodb, table_name)).admit(key, policy, now, request_id="req-1")

    assert (first.request_id, again.request_id) == ("req-1", "req-1")
    assert again.standing.remaining_burst == 4
    assert count_and_tat(dynamodb, table_name, key)[0] == 1


# --- refunds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("probability", "max_count", "seed"), LOSSES)
def test_refunds_under_lost_answers_give_back_exactly_what_they_took(
    limiter, key, dynamodb, table_name, emulator_faults, probability, max_count, seed
):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    admitted = admissions(admit_all(limiter, key, policy, now, n=5))
    assert len(admitted) == 5
    lose_answers(emulator_faults, key, probability, max_count, seed)

    def refund(admission: Admission) -> None:
        limiter.refund(admission)

    with ThreadPoolExecutor(max_workers=6) as pool:
        # three refunds, one of them asked for twice (a caller's double refund is one refund too)
        list(pool.map(refund, [*admitted[:3], admitted[0]]))

    lost = emulator_faults.injected().get("lost_response", {}).get("UpdateItem", 0)
    emulator_faults.clear()
    assert lost > 0
    assert count_and_tat(dynamodb, table_name, key) == (2, int(now * 1000) + 2 * policy.interval_ms)
    assert limiter.peek(key, policy, now).remaining_burst == 3


def test_a_refund_whose_answers_never_come_back_is_applied_once(limiter, key, dynamodb, table_name, emulator_faults):
    policy = Policy(capacity=5, refill_rate=1e-6, daily_limit=1000)
    now = time.time()
    limiter.admit(key, policy, now)
    second = limiter.admit(key, policy, now)
    lose_answers(emulator_faults, key, 1.0, None, 1)

    with pytest.raises(StoreUnavailableError):  # the caller logs it (logic/query.py _refund)
        limiter.refund(second)

    resent = emulator_faults.injected()["lost_response"]["UpdateItem"]
    emulator_faults.clear()
    assert resent > 1
    assert count_and_tat(dynamodb, table_name, key) == (1, int(now * 1000) + policy.interval_ms)


# --- the ids stay few --------------------------------------------------------------------------


def test_the_ids_map_stays_bounded_over_many_admissions(client, key, dynamodb, table_name, emulator_faults):
    from dnd_rag.logic.limits.rate_limit import ID_LIFETIME_MS  # here: the module imports as before the ids

    policy = Policy(capacity=5, refill_rate=1, daily_limit=100_000)
    store = DynamoLimitStore(client, table_name)
    containers = [RateLimiter(store), RateLimiter(store)]  # two warm containers taking turns
    clock = Clock()
    step_s = 3
    lose_answers(emulator_faults, key, 0.2, None, 5)
    sizes = []
    for n in range(200):  # ten minutes of simulated traffic, one request every 3 s
        limiter = RateLimiter(store) if n % 25 == 0 else containers[n % 2]  # now and then a cold one
        limiter.admit(key, policy, clock())
        sizes.append(len(stored(dynamodb, table_name, key)["ids"]["M"]))
        clock.now += step_s

    emulator_faults.clear()
    window = ID_LIFETIME_MS // (step_s * 1000)  # the ids any request may still need
    assert max(sizes) <= window + 3  # not the 200 admitted
    assert count_and_tat(dynamodb, table_name, key)[0] == 200


# --- items written before request ids ----------------------------------------------------------


@pytest.mark.parametrize("backlog_ms", [-1000, 120_000], ids=["full", "draining"])
def test_an_item_without_ids_is_admitted_and_starts_its_map(
    limiter, key, dynamodb, table_name, emulator_faults, backlog_ms
):
    policy = Policy(capacity=5, refill_rate=1 / 60, daily_limit=1000)
    clock = Clock()
    now_ms = int(clock() * 1000)
    legacy = {"tat": {"N": str(now_ms + backlog_ms)}, "day": {"S": "2026-11-22"}, "daily_count": {"N": "3"}}
    dynamodb.put_item(TableName=table_name, Item={"pk": {"S": key}, "sk": {"S": "LIMITS"}, **legacy})
    with pytest.raises(DailyLimitExceededError):  # a refusal shows this container the item (no ids)
        limiter.admit(key, Policy(capacity=5, refill_rate=1 / 60, daily_limit=3), clock())
    lose_answers(emulator_faults, key, 1.0, 1, 1)  # the write that starts the map loses its answer

    first = limiter.admit(key, policy, clock())
    second = limiter.admit(key, policy, clock())

    assert emulator_faults.injected() == {"lost_response": {"UpdateItem": 1}}
    emulator_faults.clear()
    item = stored(dynamodb, table_name, key)
    assert int(item["daily_count"]["N"]) == 5
    assert set(item["ids"]["M"]) == {first.request_id, second.request_id}
