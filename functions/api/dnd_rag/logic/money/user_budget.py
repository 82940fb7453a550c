"""A user's own limits: a daily dollar cap and how many of the user's queries may run at once.

Both are one hold per request on the user's day (the same id and amount as the request's hold on
the global budget, logic/money/wallet.py), opened by one conditional write that keeps the user's
``committed <= cap`` and the open holds below ``max_in_flight``. The hold is the in-flight slot:
it is freed when the request settles (in the same transaction as its ledger), releases, or, once
its lease has ended, is reclaimed: through the global budget's reclaim, so a dead request's
orphan is charged once, in the user's books and in the total alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from dnd_rag.errors import TooManyInFlightError, UserBudgetExceededError
from dnd_rag.logic.alerts.events import QuotaEvents
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import day_start, iso, next_midnight, utc_day
from dnd_rag.logic.common.concurrently import together
from dnd_rag.logic.money.budget import LEASE_SECONDS, Budget
from dnd_rag.logic.ports import UserBudgetStore
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import UserHoldEntry, UserTotals
from dnd_rag.observability import metrics

IN_FLIGHT_RETRY_AFTER = 2  # seconds: a running query ends within the request deadline, usually far sooner
OWN_HOLDS_RETRY_AFTER = 5  # the cap's rest is held by the user's own running queries
# A user refused as ``spent`` is refused again by the same container, with no round trip, for
# this long: an operator's reset of the user's cap reaches every container within it.
SPENT_MEMO_SECONDS = 5.0
SPENT_MEMO_USERS = 1000


class UserBudget:
    def __init__(
        self,
        store: UserBudgetStore,
        budget: Budget,
        clock: Callable[[], float],
        lease_seconds: float = LEASE_SECONDS,
        quota_events: QuotaEvents | None = None,
    ) -> None:
        self._store = store
        self._quota_events = quota_events  # user_quota_exceeded when the cap is spent out
        self._budget = budget
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._spent_out: BoundedMap[str, tuple[int | None, float]] = BoundedMap(SPENT_MEMO_USERS)  # cap, until

    def open(
        self,
        user_id: str,
        hold_id: str,
        model: str,
        amount: int,
        limits: UserLimits,
        now: float,
        email: str | None = None,
    ) -> tuple[bool, UserTotals]:
        """Open the user's hold ``hold_id``: (granted, the user's totals after it or as found).
        Holds of the user's dead requests found on the way are reclaimed first."""
        day = utc_day(now)
        entry = UserHoldEntry(amount, now + self._lease_seconds, model)
        headroom = None if limits.daily_nanos is None else limits.daily_nanos - amount

        def attempt() -> tuple[bool, UserTotals]:
            return self._store.try_open(
                day, user_id, hold_id, entry, limits.max_in_flight, headroom, next_midnight(now), email
            )

        if now - day_start(now) <= self._lease_seconds:  # yesterday's queries may still be running
            (granted, totals), carried = together(attempt, lambda: self._running_since_yesterday(user_id, now))
        else:
            (granted, totals), carried = attempt(), 0
        # dead requests' holds are freed on the normal path too, not only when they refuse one
        if self._reclaim(day, user_id, totals, now) and not granted:
            granted, totals = attempt()
        if granted and carried and totals.in_flight + carried > limits.max_in_flight:
            # the in-flight limit counts the user's queries, not the day's: give the slot back
            self._store.release(day, user_id, hold_id, amount)
            return False, replace(totals, in_flight=totals.in_flight - 1 + carried)
        return granted, totals

    def _running_since_yesterday(self, user_id: str, now: float) -> int:
        """How many of the user's holds of yesterday are still leased (right after midnight only)."""
        holds = self._store.read(utc_day(now - 86_400), user_id).holds.values()
        return sum(1 for hold in holds if hold.lease_until >= now)

    def resize(
        self, day: str, user_id: str, hold_id: str, old: int, new: int, limits: UserLimits
    ) -> tuple[bool, UserTotals]:
        headroom = None if limits.daily_nanos is None else limits.daily_nanos - (new - old)
        return self._store.try_resize(day, user_id, hold_id, old, new, headroom)

    def release(self, day: str, user_id: str, hold_id: str, amount: int) -> None:
        """Close the user's hold at whatever amount it has (a resize whose answer was lost may have
        grown it although the caller saw an error); a hold that is not there is left alone."""
        if self._store.release(day, user_id, hold_id, amount):
            return
        entry = self._store.read(day, user_id).holds.get(hold_id)
        if entry is not None and entry.amount != amount:
            self._store.release(day, user_id, hold_id, entry.amount)

    def totals(self, user_id: str) -> UserTotals:
        return self._store.read(utc_day(self._clock()), user_id)

    def reset_spend(self, day: str, user_id: str) -> None:
        """Forgive the user's cap use of ``day`` (the operator's reset); ledgers are untouched.
        Other containers stop refusing the user from memory within SPENT_MEMO_SECONDS."""
        self._store.reset_spend(day, user_id)
        self._spent_out.pop(user_id)

    def refuse_if_known_spent(self, user_id: str, limits: UserLimits) -> None:
        """Raise the ``spent`` refusal at once for a user this container saw spend the cap moments ago."""
        memo = self._spent_out.get(user_id)
        if memo is None:
            return
        cap, until = memo
        now = self._clock()
        if now >= until or cap != limits.daily_nanos:
            self._spent_out.pop(user_id)
            return
        raise self._spent(now)

    def refused_by_in_flight(self, totals: UserTotals, limits: UserLimits) -> bool:
        return totals.in_flight >= limits.max_in_flight

    def too_many_in_flight(self, limits: UserLimits) -> TooManyInFlightError:
        metrics.add_metric(name="UserInFlightRefused", unit="Count", value=1)
        return TooManyInFlightError(
            f"You already have {limits.max_in_flight} questions being answered. Please retry shortly.",
            retry_after=IN_FLIGHT_RETRY_AFTER,
            rate_info={"retry_after": IN_FLIGHT_RETRY_AFTER, "max_in_flight": limits.max_in_flight},
        )

    def spent_out(self, totals: UserTotals, limits: UserLimits, smallest_query: int) -> bool:
        """True when even ``smallest_query`` cannot fit in the cap, whatever the user's running queries do."""
        return limits.daily_nanos is not None and totals.spent + smallest_query > limits.daily_nanos

    def refusal(
        self, user_id: str, totals: UserTotals, limits: UserLimits, smallest_query: int
    ) -> UserBudgetExceededError:
        """The 429 for a query the user's cap cannot cover: ``spent`` until midnight, or ``in_flight``
        when the rest of the cap is held by the user's own running queries."""
        now = self._clock()
        midnight = next_midnight(now)
        metrics.add_metric(name="UserBudgetRefused", unit="Count", value=1)
        if self.spent_out(totals, limits, smallest_query):
            self._spent_out.put(user_id, (limits.daily_nanos, min(midnight, now + SPENT_MEMO_SECONDS)))
            if self._quota_events is not None and limits.daily_nanos is not None:  # once per container and day
                self._quota_events.observe_spend(
                    utc_day(now), user_id, totals.spent, limits.daily_nanos, exhausted=True
                )
            return self._spent(now)
        return UserBudgetExceededError(
            "The rest of your daily spending limit is held by your questions being answered now. Please retry shortly.",
            cause="in_flight",
            retry_after=OWN_HOLDS_RETRY_AFTER,
            reset_at=iso(midnight),
        )

    def _spent(self, now: float) -> UserBudgetExceededError:
        midnight = next_midnight(now)
        return UserBudgetExceededError(
            "You have reached your daily spending limit; it resets at midnight UTC.",
            cause="spent",
            retry_after=max(1, math.ceil(midnight - now)),
            reset_at=iso(midnight),
        )

    def _reclaim(self, day: str, user_id: str, totals: UserTotals, now: float) -> bool:
        """Free the user's holds whose lease ended: charged through the global reclaim (both
        books), or, without a hold on the total (it was refused or released), just closed."""
        expired = {hold_id: entry for hold_id, entry in totals.holds.items() if entry.lease_until < now}
        if not expired:
            return False
        for hold_id in self._budget.reclaim_expired(day, sorted(expired), now):
            self._store.release(day, user_id, hold_id, expired[hold_id].amount, expired_before=now)
        metrics.add_metric(name="UserHoldReclaimed", unit="Count", value=len(expired))
        return True
