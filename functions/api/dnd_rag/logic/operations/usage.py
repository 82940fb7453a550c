"""Usage reports, read without consuming anything: a user's own (GET /api/usage) and the
operator's view of the day (GET /api/admin/usage)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.limits.plans import PlanBook
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter, Standing
from dnd_rag.logic.money.budget import Budget, BudgetTotals
from dnd_rag.logic.money.user_budget import UserBudget
from dnd_rag.logic.operations.controls import ControlsCache, budget_override
from dnd_rag.logic.operations.forecast import Forecast, month_forecast
from dnd_rag.logic.ports import LedgerReader, LedgerRow
from dnd_rag.logic.query import user_key
from dnd_rag.models.controls import Controls
from dnd_rag.models.domain import User
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import UserTotals

ADMIN_TOP_USERS = 10


@dataclass(frozen=True)
class MonthReport:
    """The month's global budget (None in reports when the month has none)."""

    month: str  # YYYY-MM
    spent: int  # the month's days, today's spend included (earlier days' open holds too)
    budget: int
    override: int | None  # the month's budget set by an operator, if any
    forecast: Forecast  # when it runs out at today's current rate (``midnight``: the month's end)


@dataclass(frozen=True)
class UsageReport:
    plan: str
    policy: Policy
    standing: Standing
    ledger: LedgerRow | None
    budget: BudgetTotals
    budget_limit: int
    user_budget: UserTotals | None = None  # the caller's day against the caller's own limits
    user_limits: UserLimits | None = None
    month: MonthReport | None = None


@dataclass(frozen=True)
class AdminReport:
    day: str
    budget: BudgetTotals
    budget_limit: int
    models: list[LedgerRow]
    top_users: list[LedgerRow]
    controls: Controls  # the operator's overrides in force
    budget_override: int | None  # today's budget set by an operator (nano-dollars), if any
    forecast: Forecast
    month: MonthReport | None = None


class UsageService:
    def __init__(
        self,
        limiter: RateLimiter,
        plans: PlanBook,
        budget: Budget,
        ledgers: LedgerReader,
        clock: Callable[[], float],
        controls: ControlsCache | None = None,
        users: UserBudget | None = None,
    ) -> None:
        self._users = users
        self._limiter = limiter
        self._plans = plans
        self._budget = budget
        self._ledgers = ledgers
        self._clock = clock
        self._controls = controls

    def _current_controls(self, now: float) -> Controls:
        """The operator controls, re-read if this container's copy is stale (the budget depends on them)."""
        return Controls() if self._controls is None else self._controls.current(now)

    def report(self, user: User) -> UsageReport:
        now = self._clock()
        self._current_controls(now)
        plan, policy = self._plans.policy(user.plan)
        totals = self._budget.totals()
        return UsageReport(
            plan,
            policy,
            self._limiter.peek(user_key(user), policy, now),
            self._ledgers.user(utc_day(now), user.id),
            totals,
            self._budget.limit,
            self._users.totals(user.id) if self._users is not None else None,
            self._plans.user_limits(user.plan),
            self._month(totals, now),
        )

    def _month(self, totals: BudgetTotals, now: float) -> MonthReport | None:
        standing = self._budget.month_standing(totals.day, totals.spent)
        if standing is None:
            return None
        spent, budget = standing
        month = totals.day[:7]
        override = self._controls.month_override(month) if self._controls is not None else None
        return MonthReport(month, spent, budget, override, month_forecast(totals.spend_curve, now, budget, spent))

    def admin_report(self) -> AdminReport:
        """The whole service's day (the caller's role is checked by the admin routes)."""
        now = self._clock()
        controls = self._current_controls(now)
        day = utc_day(now)
        totals = self._budget.totals()
        return AdminReport(
            day,
            totals,
            self._budget.limit,
            self._ledgers.models(day),
            self._ledgers.top_users(day, ADMIN_TOP_USERS),
            controls,
            budget_override(controls, now),
            self._budget.forecast(totals, now),
            self._month(totals, now),
        )
