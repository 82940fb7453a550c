"""The global daily budget: reserve an upper bound before spending, settle to the real cost after.

All amounts are integer nano-dollars. The store keeps, per UTC day, ``committed`` = spent + every
open reservation, and a reservation is only granted by a conditional write that keeps
``committed <= budget``; settling replaces the reservation by the (smaller) real cost. So no
interleaving of requests can spend more than the budget. A reservation carries a lease: one left
behind by a crashed container is released by the next request that would otherwise be refused.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import BudgetExceededError
from dnd_rag.logic.clock import next_midnight, utc_day
from dnd_rag.logic.ports import BudgetStore
from dnd_rag.logic.prompt import embedding_token_bound, prompt_token_bound
from dnd_rag.pricing import PriceBook, TokenUsage, usd_for_display

LEASE_SECONDS = 120  # far beyond the Lambda timeout (29 s): only a dead request holds it that long


@dataclass(frozen=True)
class BudgetTotals:
    """One day's counters as the store returned them."""

    spent: int
    committed: int
    alerts_sent: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Reservation:
    day: str
    id: str
    amount: int
    totals: BudgetTotals  # as of the reservation


@dataclass(frozen=True)
class Charge:
    """The settled cost of one answered query, for the ledgers."""

    user_id: str
    model: str
    usage: TokenUsage
    cost: int


def percentage(spent: int, limit: int) -> float:
    return round(100 * spent / limit, 2) if limit else 100.0


def budget_info(spent: int, limit: int) -> dict[str, float]:
    return {
        "daily_total": usd_for_display(spent),
        "daily_budget": usd_for_display(limit),
        "percentage": percentage(spent, limit),
    }


class CostBound:
    """The most a query can cost before its prompt is known: what the budget reserves."""

    def __init__(self, prices: PriceBook, max_completion_tokens: int) -> None:
        self._prices = prices
        self._max_completion_tokens = max_completion_tokens

    def for_question(self, question: str, k: int) -> int:
        return self._prices.cost_nanos(
            TokenUsage(
                prompt_tokens=prompt_token_bound(question, k),
                completion_tokens=self._max_completion_tokens,
                embedding_tokens=embedding_token_bound(question),
            )
        )


class Budget:
    def __init__(
        self,
        store: BudgetStore,
        limit: int,
        clock: Callable[[], float],
        on_totals: Callable[[str, BudgetTotals, int | None], None] | None = None,
    ) -> None:
        """``on_totals(day, totals, refused_amount)`` sees every state the store returns, with the
        amount that was refused when it was a refusal (alerting hooks in here)."""
        self._store = store
        self.limit = limit
        self._clock = clock
        self._on_totals = on_totals or (lambda day, totals, refused_amount: None)

    def reserve(self, amount: int) -> Reservation:
        """Hold ``amount`` of today's budget or raise BudgetExceededError (nothing held then)."""
        now = self._clock()
        day = utc_day(now)
        reservation_id = uuid.uuid4().hex
        for attempt in range(2):
            granted, totals = self._store.try_reserve(
                day, reservation_id, amount, self.limit - amount, now + LEASE_SECONDS, next_midnight(now)
            )
            if granted:
                self._on_totals(day, totals, None)
                return Reservation(day, reservation_id, amount, totals)
            if attempt == 0 and self._store.release_expired(day, now) == 0:
                break  # nothing was orphaned: the refusal stands
        self._on_totals(day, totals, amount)
        retry_after = max(1, math.ceil(next_midnight(now) - now))
        raise BudgetExceededError(
            "The service has reached its daily budget and is paused until midnight UTC.",
            retry_after=retry_after,
            budget_info=budget_info(totals.spent, self.limit),
        )

    def settle(self, reservation: Reservation, charge: Charge) -> BudgetTotals:
        """Replace the reservation by the real cost and add it to the ledgers.

        Returns the day's totals as known here: the state at reservation plus this charge
        (concurrent queries may have added more since).
        """
        self._store.settle(reservation.day, reservation.id, reservation.amount, charge, next_midnight(self._clock()))
        known = reservation.totals
        totals = BudgetTotals(
            known.spent + charge.cost, known.committed - reservation.amount + charge.cost, known.alerts_sent
        )
        self._on_totals(reservation.day, totals, None)
        return totals

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unused (the query failed before costing anything we know of)."""
        self._store.release(reservation.day, reservation.id, reservation.amount)

    def totals(self) -> BudgetTotals:
        return self._store.read_totals(utc_day(self._clock()))
