"""Reclaiming an expired hold races its owner: the reclaim must charge what the hold holds now."""

import time
import uuid

import pytest

from dnd_rag.dal.money.budget import DynamoBudgetStore, DynamoLedgers
from dnd_rag.models.money import HoldEntry
from infra.local.bootstrap import ensure_table

DAY = "2026-11-28"


@pytest.mark.parametrize("shard", [0, 3])  # the day's first shard (TOTAL) and another
def test_a_reclaim_that_saw_a_hold_before_its_owner_grew_it_charges_nothing_stale(dynamodb, shard):
    table = f"reclaim-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    store = DynamoBudgetStore(dynamodb, table)
    now = time.time()
    seen = HoldEntry(100, now - 1, "u-slow", "gpt-4o-mini", shard)  # its lease has ended (a skewed clock)
    assert store.try_reserve(DAY, "h1", seen, 10_000, now, shard=shard)[0]
    # the reclaimer has read the hold at 100; its owner, still alive, grows it to 300 and is billed up to that
    assert store.try_resize(DAY, "h1", 100, 300, 10_000, shard=shard)[0]

    store.reclaim(DAY, "h1", seen, now, now + 600, now)  # with what it read
    fresh = store.read_totals(DAY)
    for hold_id, entry in fresh.holds.items():  # the next sweep, with what it reads then
        store.reclaim(DAY, hold_id, entry, now, now + 600, now)

    totals = store.read_totals(DAY)
    assert totals.holds == {}
    assert totals.spent == 300  # the owner may have been billed its whole hold
    assert totals.committed == totals.spent  # nothing left held by a hold that no longer exists
    assert store.read_shard(DAY, shard).open_holds == 0
    assert sum(row.cost for row in DynamoLedgers(dynamodb, table).all_users(DAY)) == totals.spent
