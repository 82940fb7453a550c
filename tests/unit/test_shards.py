"""How the day's budget is split over shards (logic/money/shards.py): the limits always add up."""

import random

import pytest

from dnd_rag.logic.money.shards import ShardPicker, even_split, shard_count, split_override
from dnd_rag.models.money import BudgetTotals


@pytest.mark.parametrize(
    ("configured", "most", "min_shard", "expected"),
    [
        (10_000_000, 16, 50_000_000, 1),  # $0.01 with $0.05 shards: one shard, no crumbs
        (1_000_000_000, 16, 50_000_000, 16),  # $1: 20 would fit, 16 configured
        (120_000_000, 16, 50_000_000, 2),
        (5, 4, 0, 4),  # no floor: as configured
    ],
)
def test_shard_count_depends_on_the_configured_budget(configured, most, min_shard, expected):
    assert shard_count(configured, most, min_shard) == expected


def test_an_even_split_adds_up_exactly():
    for budget in (0, 1, 15, 1_000_000_007):
        for count in (1, 3, 16):
            shares = even_split(budget, count)
            assert sum(shares) == budget
            assert max(shares) - min(shares) <= 1


def test_an_override_above_what_is_committed_keeps_each_shards_commitments_and_shares_the_rest():
    committed = [700, 0, 250, 50]
    limits = split_override(2_000, committed)
    assert sum(limits) == 2_000
    assert all(limit >= used for limit, used in zip(limits, committed, strict=True))
    assert (
        max(limit - used for limit, used in zip(limits, committed, strict=True))
        - min(limit - used for limit, used in zip(limits, committed, strict=True))
        <= 1
    )


def test_an_override_below_what_is_committed_closes_every_shard_and_still_adds_up():
    committed = [700, 0, 250, 50]
    limits = split_override(600, committed)
    assert sum(limits) == 600
    assert all(limit <= used for limit, used in zip(limits, committed, strict=True))


def test_random_overrides_always_add_up():
    rng = random.Random(5)
    for _ in range(500):
        committed = [rng.randrange(0, 1000) for _ in range(rng.randrange(1, 17))]
        budget = rng.randrange(0, 20_000)
        assert sum(split_override(budget, committed)) == budget


def test_the_picker_tries_shards_known_short_of_room_last():
    picker = ShardPicker(random.Random(1))
    limits = (100, 100, 100, 100)
    picker.note(BudgetTotals("2026-11-22", spent=95, committed=95, shard=2, open_holds=0))
    picker.note(BudgetTotals("2026-11-22", spent=0, committed=10, shard=0, open_holds=8))
    order = picker.order("2026-11-22", limits, amount=20, max_holds=8)
    assert sorted(order) == [0, 1, 2, 3]
    assert set(order[:2]) == {1, 3}  # the ones nothing is known against, in a random order
    assert order[2:] == [0, 2]  # then the full one (room 90), then the one short of room (5)
