"""The day's budget split over shards (SPEC §4 "Scale"), so that no item every query writes grows
with traffic or takes more writes per second than one DynamoDB partition allows.

Each shard is an item of its own holding a share of the day's budget; a query holds on one shard
and moves on to another when its shard cannot cover it. Overshoot is impossible by construction:
the shards' limits always add up to the day's budget, and each shard's conditional write keeps its
own ``committed <= limit``. A shard carries at most ``holds_per_shard`` open holds, so its item (and
the write capacity each write costs) stays the same size at 1 or 1,000 queries in flight.

How many shards a day uses depends on the configured budget only (never on an override, which
could change it in the middle of a day): each shard gets at least ``min_shard`` nano-dollars, so a
small budget is not cut into crumbs too small for a query. The crumbs left unusable at the end of a
day are at most one cheapest query per shard.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from dnd_rag.models.money import BudgetTotals

SEEN_FOR_SECONDS = 2.0  # what a container saw of a shard guides its choice this long


def shard_count(configured: int, most: int, min_shard: int) -> int:
    """How many shards a day with the configured budget ``configured`` uses: 1..``most``."""
    if min_shard <= 0:
        return max(1, most)
    return max(1, min(most, configured // min_shard))


def even_split(budget: int, count: int) -> tuple[int, ...]:
    """``budget`` in ``count`` shares differing by at most one nano-dollar, adding up exactly."""
    base, extra = divmod(max(0, budget), count)
    return tuple(base + (1 if n < extra else 0) for n in range(count))


def split_override(budget: int, committed: list[int]) -> tuple[int, ...]:
    """Shard limits for a budget an operator sets in the middle of a day, from what each shard has
    committed now: each keeps what it committed and gets an even share of the rest, so no shard's
    running queries are stranded and the limits add up to ``budget``. Below what is committed
    already, every shard is closed (its limit at most its commitments) and the limits still add up."""
    count = len(committed)
    held = sum(committed)
    if budget >= held:
        rest = even_split(budget - held, count)
        return tuple(c + r for c, r in zip(committed, rest, strict=True))
    limits, left = [], budget
    for used in committed:  # fill in order: the sum is exactly ``budget``, each at most its commitments
        take = min(used, left)
        limits.append(take)
        left -= take
    return tuple(limits)


def merge_shards(day: str, shards: list[BudgetTotals]) -> BudgetTotals:
    """The day as a whole from its shards' totals (alert marks live on shard 0)."""
    curve: dict[int, int] = {}
    for totals in shards:
        for minute, nanos in totals.spend_curve.items():
            curve[minute] = curve.get(minute, 0) + nanos
    return BudgetTotals(
        day=day,
        spent=sum(t.spent for t in shards),
        committed=sum(t.committed for t in shards),
        shard=None,
        open_holds=sum(t.open_holds for t in shards),
        alerts_sent=next((t.alerts_sent for t in shards if t.shard == 0), {}),
        holds={hold_id: entry for t in shards for hold_id, entry in t.holds.items()},
        orphans={orphan: grace for t in shards for orphan, grace in t.orphans.items()},
        spend_curve=curve,
    )


@dataclass(frozen=True)
class ShardView:
    committed: int
    open_holds: int
    seen_at: float


class ShardPicker:
    """This container's memory of the shards it wrote or read, to try a likely one first: a random
    one among those not known to be full or short of room (so containers spread over the shards)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not security
        self._seen: dict[tuple[str, int], ShardView] = {}

    def note(self, totals: BudgetTotals) -> None:
        if totals.shard is not None:
            self._seen[(totals.day, totals.shard)] = ShardView(totals.committed, totals.open_holds, time.monotonic())
        if len(self._seen) > 4096:  # old days' entries
            self._seen.clear()

    def order(self, day: str, limits: tuple[int, ...], amount: int, max_holds: int) -> list[int]:
        """The shards to try for a hold of ``amount``: likely ones first (random among them), then
        those this container saw full or short of room moments ago (they may have settled since)
        and those whose limit could never cover it."""
        now = time.monotonic()
        likely: list[int] = []
        unlikely: list[int] = []
        for shard, limit in enumerate(limits):
            view = self._seen.get((day, shard))
            fresh = view is not None and now - view.seen_at < SEEN_FOR_SECONDS
            full = view is not None and (view.committed + amount > limit or view.open_holds >= max_holds)
            short = limit < amount or (fresh and full)  # a shard the month's cap (or an override) closed: last
            (unlikely if short else likely).append(shard)
        self._rng.shuffle(likely)
        unlikely.sort(key=lambda shard: self._room(day, shard, limits[shard]), reverse=True)
        return likely + unlikely

    def _room(self, day: str, shard: int, limit: int) -> int:
        view = self._seen.get((day, shard))
        return limit if view is None else limit - view.committed
