"""The day's budget over shards (SPEC §4 "Scale"), against the serialized emulator and its capacity
meter: a shard never carries more than its share of holds, the write capacity a query costs does
not grow with the queries in flight, and an operator's budget splits over the shards exactly."""

import uuid

import pytest

from dnd_rag.dal.money.budget import DynamoBudgetStore
from dnd_rag.logic.money.budget import Budget, Charge
from dnd_rag.pricing import TokenUsage
from infra.local.bootstrap import ensure_table
from tests.support.budget_items import shard_items
from tests.support.capacity import EmulatorCapacity
from tests.support.clock import Clock
from tests.support.events import http_event, parse

D = "2026-11-22"
MODEL = "gpt-4o-mini"


@pytest.fixture
def store(dynamodb, table):
    return DynamoBudgetStore(dynamodb, table)


def sharded(store, clock, shards, holds_per_shard, limit=10**12):
    return Budget(store, limit=limit, clock=clock, shards=shards, holds_per_shard=holds_per_shard)


def test_a_shard_carries_at_most_its_share_of_holds_and_a_query_moves_to_another(store, dynamodb, table):
    budget = sharded(store, Clock(), shards=2, holds_per_shard=3)

    holds = [budget.open(f"u{n}", MODEL, 100)[0] for n in range(6)]
    refused, totals = budget.open("one-too-many", MODEL, 100)

    assert all(hold is not None for hold in holds)
    assert sorted(hold.shard for hold in holds) == [0, 0, 0, 1, 1, 1]
    assert refused is None
    assert (totals.shard, totals.open_holds, totals.committed) == (None, 6, 600)  # judged on the whole day
    items = shard_items(dynamodb, table, D)
    assert sorted(len([a for a in item if a.startswith("h_")]) for item in items) == [3, 3]
    assert budget.refusal(totals, 100).cause == "in_flight"  # running queries hold the room, not spend
    budget.settle(holds[0], Charge("u0", MODEL, TokenUsage(1, 1, 1), 40))
    assert budget.open("one-too-many", MODEL, 100)[0] is not None  # a slot came free


def test_a_shard_short_of_room_sends_the_query_to_one_with_room_and_the_day_is_spent_only_when_all_are(store):
    budget = sharded(store, Clock(), shards=2, holds_per_shard=10, limit=1_000)  # 500 a shard
    first = [budget.open("a", MODEL, 400)[0] for _ in range(2)]
    assert sorted(hold.shard for hold in first) == [0, 1]
    for hold in first:
        budget.settle(hold, Charge("a", MODEL, TokenUsage(1, 1, 1), 400))

    assert budget.open("b", MODEL, 150)[0] is None  # 100 left on each: no single shard fits 150
    hold, totals = budget.open("b", MODEL, 90)
    assert hold is not None  # but one fits 90
    refused, totals = budget.open("c", MODEL, 150)
    assert refused is None
    assert budget.refusal(totals, 150).cause == "spent"  # no shard could fit it, whatever settles


def wcu_per_query(dynamodb, aws_endpoint, in_flight, shards, holds_per_shard):
    """Write units the day's budget items take per answered query (a hold and a settle) while
    ``in_flight`` - 1 other queries hold money, on a table of its own."""
    table = f"shards-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    meter = EmulatorCapacity(aws_endpoint)
    budget = sharded(DynamoBudgetStore(dynamodb, table), Clock(), shards=shards, holds_per_shard=holds_per_shard)
    running = [budget.open(f"r{n}", MODEL, 5_000)[0] for n in range(in_flight - 1)]
    assert all(hold is not None for hold in running)
    meter.reset()
    for n in range(32):
        hold, _ = budget.open(f"q{n}", MODEL, 5_000)
        assert hold is not None
        budget.settle(hold, Charge(f"q{n}", MODEL, TokenUsage(100, 50, 10), 1_234))
    used = meter.snapshot()["items"]
    return sum(v["wcu"] for key, v in used.items() if key.startswith(f"BUDGET#{D}|")) / 32


def test_the_write_capacity_of_a_query_does_not_grow_with_the_queries_in_flight(dynamodb, aws_endpoint):
    # With 16 shards of at most 8 holds, 64 queries in flight cost what one does (items stay ~1 KB)
    w1 = wcu_per_query(dynamodb, aws_endpoint, 1, shards=16, holds_per_shard=8)
    w64 = wcu_per_query(dynamodb, aws_endpoint, 64, shards=16, holds_per_shard=8)
    # (one item carrying every hold, the design before shards, grows with them)
    one_item = wcu_per_query(dynamodb, aws_endpoint, 64, shards=1, holds_per_shard=None)

    assert w1 == 2  # a hold and a settle, 1 WCU each
    assert w64 <= 1.2 * w1, (w1, w64)
    assert one_item >= 3 * w1, one_item


def test_an_operator_budget_splits_over_the_shards_by_what_each_committed(make_app, call, table):
    # Given a budget over 4 shards with money held unevenly
    env = {"TABLE_NAME": table, "DAILY_BUDGET_USD": "1", "BUDGET_SHARDS": "4", "BUDGET_MIN_SHARD_USD": "0"}
    clock = Clock()
    app, container = make_app(env, clock=clock)
    budget = container.budget
    held = [budget.open(f"u-{uuid.uuid4().hex[:6]}", MODEL, 100_000_000)[0] for _ in range(5)]
    committed = {shard: state.committed for shard, state in container.budget._store.read_shards(D).items()}

    # When an operator lowers today's budget below what is held
    event = http_event("PUT", "/api/admin/budget", token="dev-admin", body={"daily_budget_usd": 0.3})
    assert parse(call(app, event))[0] == 200

    # Then the shards' limits add up to it and none has room: nothing more is admitted anywhere
    limits = container.controls.refresh(clock.now).budget_override.shard_limits
    assert sum(limits) == 300_000_000
    assert all(limit <= committed.get(shard, 0) for shard, limit in enumerate(limits))
    assert budget.shard_limits(D) == limits
    assert budget.open("late", MODEL, 1)[0] is None
    assert len([hold for hold in held if hold is not None]) == 5
