"""A request's money on both books at once: the global budget and the user's own limits.

Each request holds the same amount under the same id on the day's total (logic/money/budget.py) and on
the user's day (logic/money/user_budget.py). Both holds are opened, and grown, by two independent
conditional writes sent at the same time (one sequential round trip); when one is granted and
the other refused, the granted one is given back. The settle closes both: the user's hold in the
ledger transaction, the global one in the total's write (dal/money/budget.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

from dnd_rag.errors import ServiceError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.common.concurrently import together
from dnd_rag.logic.money.budget import Budget, Hold
from dnd_rag.logic.money.user_budget import UserBudget
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import BudgetTotals, Charge, UserTotals
from dnd_rag.observability import logger

# why an open or a resize was refused
BY_BUDGET, BY_USER_CAP, BY_IN_FLIGHT = "budget", "user_cap", "in_flight"


@dataclass(frozen=True)
class Seen:
    """Both books as the last write of a request found (or left) them."""

    budget: BudgetTotals
    user: UserTotals
    refused_by: str | None = None
    user_id: str = ""


class Wallet:
    def __init__(self, budget: Budget, users: UserBudget, clock: Callable[[], float]) -> None:
        self.budget = budget
        self.users = users
        self._clock = clock

    @property
    def limit(self) -> int:
        return self.budget.limit

    def open(
        self, user_id: str, limits: UserLimits, model: str, amount: int, email: str | None = None
    ) -> tuple[Hold | None, Seen]:
        """Hold ``amount`` on both books: (the hold, or None when either refused, what was seen)."""
        now = self._clock()
        hold_id = uuid.uuid4().hex
        (user_granted, user), (hold, totals) = _both(
            lambda: self.users.open(user_id, hold_id, model, amount, limits, now, email),
            lambda: self.budget.open(user_id, model, amount, hold_id=hold_id, now=now),
            undo_first=lambda _: self.users.release(utc_day(now), user_id, hold_id, amount),
            # granted: give back the hold where it is (its shard); raised: the budget gave back every
            # shard it tried already
            undo_second=lambda result: self.budget.release(result[0]) if result and result[0] else None,
            first_granted=lambda result: result[0],
            second_granted=lambda result: result[0] is not None,
        )
        if user_granted and hold is not None:
            return replace(hold, user_amount=amount, user_limits=limits), Seen(totals, user, None, user_id)
        if user_granted:  # the budget refused: give the user's hold (and in-flight slot) back
            self.users.release(utc_day(now), user_id, hold_id, amount)
            return None, Seen(totals, user, BY_BUDGET, user_id)
        if hold is not None:
            self.budget.release(hold)
        return None, Seen(totals, user, self._user_refusal(user, limits), user_id)

    def resize(self, hold: Hold, amount: int) -> tuple[Hold | None, Seen]:
        """Grow both holds to ``amount``; when either refuses, neither grows."""
        limits, old = hold.user_limits, hold.user_amount
        assert limits is not None, "a wallet hold"
        assert old is not None, "a wallet hold"
        (user_granted, user), (grown, totals) = _both(
            lambda: self.users.resize(hold.day, hold.user_id, hold.id, old, amount, limits),
            lambda: self.budget.resize(hold, amount),
            undo_first=lambda _: self.users.resize(hold.day, hold.user_id, hold.id, amount, old, limits),
            undo_second=lambda _: self.budget.resize(replace(hold, amount=amount), hold.amount),
            first_granted=lambda result: result[0],
            second_granted=lambda result: result[0] is not None,
        )
        if user_granted and grown is not None:
            return replace(grown, user_amount=amount), Seen(totals, user, None, hold.user_id)
        if user_granted:  # shrink the user's hold back: nothing grows
            _, user = self.users.resize(hold.day, hold.user_id, hold.id, amount, old, limits)
            return None, Seen(totals, user, BY_BUDGET, hold.user_id)
        if grown is not None:
            _, totals = self.budget.resize(grown, hold.amount)
        return None, Seen(totals, user, BY_USER_CAP, hold.user_id)

    def settle(self, hold: Hold, charge: Charge) -> BudgetTotals:
        return self.budget.settle(hold, charge)

    def release(self, hold: Hold) -> None:
        """Give back both holds of a request that paid for nothing."""
        if hold.user_amount is None:
            self.budget.release(hold)
            return
        amount = hold.user_amount
        together(
            lambda: self.users.release(hold.day, hold.user_id, hold.id, amount),
            lambda: self.budget.release(hold),
        )

    def available_to(self, hold: Hold, seen: Seen) -> tuple[int, bool]:
        """The most ``hold`` could grow to as of ``seen``, and whether the user's cap is what limits it."""
        overall = self.budget.available_to(hold, seen.budget)
        limits = hold.user_limits
        if limits is None or limits.daily_nanos is None or hold.user_amount is None:
            return overall, False
        own = limits.daily_nanos - seen.user.committed + hold.user_amount
        return min(overall, own), own < overall

    def spent_out(self, seen: Seen, limits: UserLimits, smallest_query: int) -> bool:
        """True when no wait can help: ``smallest_query`` fits neither in what the day has left
        unspent nor in what the user's cap has left."""
        # the user's side first: it needs no round trip (the budget's may read the day's shards)
        return self.users.spent_out(seen.user, limits, smallest_query) or self.budget.spent_out(
            seen.budget, smallest_query
        )

    def refusal(self, seen: Seen, limits: UserLimits, smallest_query: int) -> ServiceError:
        """The answer to a query that does not fit: the user's own limits first (429), then the
        global budget (503)."""
        if seen.refused_by == BY_IN_FLIGHT:
            return self.users.too_many_in_flight(limits)
        if self.users.spent_out(seen.user, limits, smallest_query):
            return self.users.refusal(seen.user_id, seen.user, limits, smallest_query)
        if seen.refused_by != BY_USER_CAP or self.budget.spent_out(seen.budget, smallest_query):
            return self.budget.refusal(seen.budget, smallest_query)
        return self.users.refusal(seen.user_id, seen.user, limits, smallest_query)

    def note_smallest_query(self, cost: int) -> None:
        self.budget.note_smallest_query(cost)

    def _user_refusal(self, user: UserTotals, limits: UserLimits) -> str:
        return BY_IN_FLIGHT if self.users.refused_by_in_flight(user, limits) else BY_USER_CAP


def _both[A, B](
    first: Callable[[], A],
    second: Callable[[], B],
    undo_first: Callable[[A | None], object],
    undo_second: Callable[[B | None], object],
    first_granted: Callable[[A], bool],
    second_granted: Callable[[B], bool],
) -> tuple[A, B]:
    """``together(first, second)``; when one of them raised (a store error), both are undone before
    the error goes on: the one that was granted, and the one that raised too, since a write whose
    answer was lost may have been applied. A hold nobody will settle would otherwise be charged in
    full when its lease ends. Undoing is idempotent (a hold that is not there is left alone); each
    undo gets its call's result (None when it raised)."""
    outcome_first, outcome_second = together(lambda: _outcome(first), lambda: _outcome(second))
    failure = outcome_first[1] or outcome_second[1]
    if failure is None:
        return cast("A", outcome_first[0]), cast("B", outcome_second[0])
    _undo_if(outcome_first[1] is not None or first_granted(cast("A", outcome_first[0])), undo_first, outcome_first[0])
    _undo_if(
        outcome_second[1] is not None or second_granted(cast("B", outcome_second[0])), undo_second, outcome_second[0]
    )
    raise failure


def _undo_if[T](needed: bool, undo: Callable[[T | None], object], result: T | None) -> None:
    try:
        if needed:
            undo(result)
    except Exception as undo_failure:
        logger.error("could not give back a hold after a store error", extra={"reason": str(undo_failure)})


def _outcome[T](call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc
