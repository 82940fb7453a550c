"""The /api/query use case: admit the user under their plan's limits, answer, refund on failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.logic.plans import PlanBook
from dnd_rag.logic.rag import Answer, RagService
from dnd_rag.logic.rate_limit import Admission, Policy, RateLimiter
from dnd_rag.models.domain import User


@dataclass(frozen=True)
class QueryOutcome:
    answer: Answer
    admission: Admission
    policy: Policy


def user_key(user: User) -> str:
    return f"USER#{user.id}"


class QueryService:
    def __init__(self, rag: RagService, limiter: RateLimiter, plans: PlanBook, clock: Callable[[], float]) -> None:
        self._rag = rag
        self._limiter = limiter
        self._plans = plans
        self._clock = clock

    def ask(self, user: User, question: str, k: int, debug: bool) -> QueryOutcome:
        """Raises RateLimitedError / DailyLimitExceededError before any cost is incurred."""
        _, policy = self._plans.policy(user.plan)
        admission = self._limiter.admit(user_key(user), policy, self._clock())
        try:
            answer = self._rag.answer(question, k, debug)
        except Exception:
            # Admitted but not served: the user gets the request back (SPEC §3).
            self._limiter.refund(admission)
            raise
        return QueryOutcome(answer, admission, policy)
