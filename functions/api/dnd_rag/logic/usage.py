"""Usage reports, read without consuming anything: a user's own (GET /api/usage) and the
operator's view of the day (GET /api/admin/usage)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import ForbiddenError
from dnd_rag.logic.budget import Budget, BudgetTotals
from dnd_rag.logic.clock import utc_day
from dnd_rag.logic.forecast import Forecast
from dnd_rag.logic.plans import PlanBook
from dnd_rag.logic.ports import LedgerReader, LedgerRow
from dnd_rag.logic.query import user_key
from dnd_rag.logic.rate_limit import Policy, RateLimiter, Standing
from dnd_rag.models.domain import User

ADMIN_TOP_USERS = 10


@dataclass(frozen=True)
class UsageReport:
    plan: str
    policy: Policy
    standing: Standing
    ledger: LedgerRow | None
    budget: BudgetTotals
    budget_limit: int


@dataclass(frozen=True)
class AdminReport:
    day: str
    budget: BudgetTotals
    budget_limit: int
    models: list[LedgerRow]
    top_users: list[LedgerRow]
    forecast: Forecast


class UsageService:
    def __init__(
        self, limiter: RateLimiter, plans: PlanBook, budget: Budget, ledgers: LedgerReader, clock: Callable[[], float]
    ) -> None:
        self._limiter = limiter
        self._plans = plans
        self._budget = budget
        self._ledgers = ledgers
        self._clock = clock

    def report(self, user: User) -> UsageReport:
        now = self._clock()
        plan, policy = self._plans.policy(user.plan)
        return UsageReport(
            plan,
            policy,
            self._limiter.peek(user_key(user), policy, now),
            self._ledgers.user(utc_day(now), user.id),
            self._budget.totals(),
            self._budget.limit,
        )

    def admin_report(self, user: User) -> AdminReport:
        if not user.is_admin:
            raise ForbiddenError("This report is for administrators.")
        now = self._clock()
        day = utc_day(now)
        totals = self._budget.totals()
        return AdminReport(
            day,
            totals,
            self._budget.limit,
            self._ledgers.models(day),
            self._ledgers.top_users(day, ADMIN_TOP_USERS),
            self._budget.forecast(totals, now),
        )
