"""GET /api/usage: a user's standing under their plan, read without consuming anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.logic.plans import PlanBook
from dnd_rag.logic.query import user_key
from dnd_rag.logic.rate_limit import Policy, RateLimiter, Standing
from dnd_rag.models.domain import User


@dataclass(frozen=True)
class UsageReport:
    plan: str
    policy: Policy
    standing: Standing


class UsageService:
    def __init__(self, limiter: RateLimiter, plans: PlanBook, clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._plans = plans
        self._clock = clock

    def report(self, user: User) -> UsageReport:
        plan, policy = self._plans.policy(user.plan)
        return UsageReport(plan, policy, self._limiter.peek(user_key(user), policy, self._clock()))
