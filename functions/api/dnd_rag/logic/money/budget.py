"""The global daily budget: hold money before every paid call, settle to what could be billed.

All amounts are integer nano-dollars. The store keeps, per UTC day, ``committed`` = spent + every
open hold; a hold is opened or grown only by a conditional write that keeps
``committed <= budget``, so no interleaving of requests can commit more than the budget, and what
OpenAI can bill never exceeds what was committed (SPEC §4).

A hold carries a lease longer than any request can live. A hold whose lease has ended belongs to
a dead request: the next request that sees it reclaims it, at the cost its owner recorded if it
got that far, else in full (an orphan), because the dead request may have been billed.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from dnd_rag.errors import BudgetExceededError
from dnd_rag.logic.common.clock import next_midnight, utc_day
from dnd_rag.logic.operations.forecast import Forecast, forecast
from dnd_rag.logic.ports import BudgetStore
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import BudgetTotals, Charge, HoldEntry
from dnd_rag.observability import logger, metrics
from dnd_rag.pricing import usd_for_display

__all__ = ["Budget", "BudgetTotals", "Charge", "Hold", "budget_info", "percentage"]

LEASE_SECONDS = 60  # twice the Lambda timeout (29 s): a live request always settles before
ORPHAN_GRACE_SECONDS = 600  # how long a late settle may still correct an orphan charge down
IN_FLIGHT_RETRY_AFTER = 5  # seconds: running queries settle within the request deadline
SWEEP_PER_REQUEST = 3  # expired holds one request reclaims at most (bounds its extra latency)


@dataclass(frozen=True)
class Hold:
    """An open reservation of one request."""

    day: str
    id: str
    amount: int
    user_id: str
    model: str
    user_amount: int | None = None  # the user's hold of the same id (logic/money/wallet.py), if any
    user_limits: UserLimits | None = None  # the limits it was opened under


class BudgetObserver(Protocol):
    def observe(self, day: str, totals: BudgetTotals, smallest_query: int | None) -> None:
        """Sees every state of the day's totals; ``smallest_query`` is the cheapest admissible
        query known (what "exhausted" means). Never raises."""
        ...


def percentage(spent: int, limit: int) -> float:
    return round(100 * spent / limit, 2) if limit else 100.0


def budget_info(spent: int, limit: int) -> dict[str, float]:
    return {
        "daily_total": usd_for_display(spent),
        "daily_budget": usd_for_display(limit),
        "percentage": percentage(spent, limit),
    }


class Budget:
    def __init__(
        self,
        store: BudgetStore,
        limit: int,
        clock: Callable[[], float],
        observer: BudgetObserver | None = None,
        lease_seconds: float = LEASE_SECONDS,
        effective_limit: Callable[[int], int] | None = None,
    ) -> None:
        self._store = store
        self._configured_limit = limit
        self._effective_limit = effective_limit
        self._clock = clock
        self._observer = observer
        self._lease_seconds = lease_seconds
        self._smallest_query: int | None = None  # cheapest admissible query seen by this container
        self._expired_orphans: tuple[str, ...] = ()  # orphans past their grace, dropped by the next hold

    @property
    def limit(self) -> int:
        """Today's budget: ``effective_limit(configured)`` (an operator's override for today) when
        given, else the configured one."""
        if self._effective_limit is None:
            return self._configured_limit
        return self._effective_limit(self._configured_limit)

    def open(
        self, user_id: str, model: str, amount: int, hold_id: str | None = None, now: float | None = None
    ) -> tuple[Hold | None, BudgetTotals]:
        """Hold ``amount`` of today's budget for a new request: (hold or None if refused, totals)."""
        now = self._clock() if now is None else now
        day = utc_day(now)
        hold_id = hold_id or uuid.uuid4().hex
        entry = HoldEntry(amount, now + self._lease_seconds, user_id, model)

        def attempt() -> tuple[bool, BudgetTotals]:
            return self._store.try_reserve(
                day, hold_id, entry, self.limit - amount, next_midnight(now), self._expired_orphans
            )

        granted, totals = attempt()
        if self._sweep(day, totals, now):  # dead requests' holds were settled: the state moved
            if granted:
                totals = self._store.read_totals(day)
            else:
                granted, totals = attempt()
        self._remember_orphans(totals, now)
        self._observe(day, totals)
        return (Hold(day, hold_id, amount, user_id, model) if granted else None), totals

    def resize(self, hold: Hold, amount: int) -> tuple[Hold | None, BudgetTotals]:
        """Grow (or shrink) an open hold to ``amount``: (the new hold or None if refused, totals)."""
        granted, totals = self._store.try_resize(
            hold.day, hold.id, hold.amount, amount, self.limit - (amount - hold.amount)
        )
        return (replace(hold, amount=amount) if granted else None), totals

    def available_to(self, hold: Hold, totals: BudgetTotals) -> int:
        """The most ``hold`` could grow to, as of ``totals``."""
        return self.limit - totals.committed + hold.amount

    def settle(self, hold: Hold, charge: Charge) -> BudgetTotals:
        """Replace the hold by what the request was really charged (ledgers included)."""
        now = self._clock()
        totals = self._store.settle(
            hold.day, hold.id, hold.amount, charge, now, next_midnight(now), user_hold=hold.user_amount
        )
        if hold.day == utc_day(now):  # the spend moved: the run-out forecast with it (alarm metric)
            metrics.add_metric(
                name="BudgetRunOutHoursBeforeMidnight",
                unit="None",
                value=self.forecast(totals, now).hours_before_midnight,
            )
        self._observe(hold.day, totals)
        return totals

    def forecast(self, totals: BudgetTotals, now: float) -> Forecast:
        """When today's budget runs out at the current burn rate (logic/operations/forecast.py)."""
        return forecast(totals.spend_curve, now, self.limit, totals.spent)

    def release(self, hold: Hold) -> None:
        """Give back a hold that paid for nothing (the request failed before any billable call)."""
        self._store.release(hold.day, hold.id, hold.amount)

    def note_smallest_query(self, cost: int) -> None:
        """Record the cost of the cheapest query that could still be admitted (degradation floors)."""
        if self._smallest_query is None or cost < self._smallest_query:
            self._smallest_query = cost

    def refusal(self, totals: BudgetTotals, smallest_query: int) -> BudgetExceededError:
        """The 503 for a request whose cheapest form does not fit: ``spent`` when it could not fit
        even if every running query released its hold, otherwise ``in_flight``."""
        now = self._clock()
        self.note_smallest_query(smallest_query)
        info = budget_info(totals.spent, self.limit)
        metrics.add_metric(name="BudgetRefused", unit="Count", value=1)
        if totals.spent + smallest_query > self.limit:
            self._observe(utc_day(now), totals)
            return BudgetExceededError(
                "The service has reached its daily budget and is paused until midnight UTC.",
                cause="spent",
                retry_after=max(1, math.ceil(next_midnight(now) - now)),
                budget_info=info,
            )
        return BudgetExceededError(
            "The rest of today's budget is held by queries that are running now. Please retry shortly.",
            cause="in_flight",
            retry_after=IN_FLIGHT_RETRY_AFTER,
            budget_info=info,
        )

    def totals(self) -> BudgetTotals:
        return self._store.read_totals(utc_day(self._clock()))

    def reclaim_expired(self, day: str, hold_ids: list[str], now: float) -> list[str]:
        """Reclaim these holds where their lease ended on the day's total (a user's expired holds,
        logic/money/user_budget.py), by the same path as the sweep; the ids that have no hold there."""
        totals = self._store.read_totals(day)
        missing = []
        for hold_id in hold_ids:
            entry = totals.holds.get(hold_id)
            if entry is None:
                missing.append(hold_id)
            elif entry.lease_until < now:
                self._reclaim(day, hold_id, entry, now)
        return missing

    def _sweep(self, day: str, totals: BudgetTotals, now: float) -> bool:
        """Reclaim a few holds whose lease ended; True if any money changed hands."""
        expired = [(hold_id, entry) for hold_id, entry in totals.holds.items() if entry.lease_until < now]
        reclaimed = False
        for hold_id, entry in expired[:SWEEP_PER_REQUEST]:
            reclaimed = self._reclaim(day, hold_id, entry, now) or reclaimed
        return reclaimed

    def _reclaim(self, day: str, hold_id: str, entry: HoldEntry, now: float) -> bool:
        """Charge one expired hold (and the user's hold of the same id) in both books."""
        booked = self._store.reclaim(day, hold_id, entry, now, now + ORPHAN_GRACE_SECONDS, next_midnight(now))
        if booked:
            metrics.add_metric(name="HoldReclaimed", unit="Count", value=1)
            metrics.add_metric(name="QueryCostMicroUsd", unit="Count", value=booked / 1000)
            logger.warning("reclaimed the hold of a dead request", extra={"hold": hold_id, "amount": entry.amount})
        return booked > 0

    def _remember_orphans(self, totals: BudgetTotals, now: float) -> None:
        self._expired_orphans = tuple(sorted(o for o, grace_end in totals.orphans.items() if grace_end < now))[:10]

    def _observe(self, day: str, totals: BudgetTotals) -> None:
        if self._observer is not None:
            self._observer.observe(day, totals, self._smallest_query)
