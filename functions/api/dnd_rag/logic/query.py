"""The /api/query use case: admit under the user's limits, reserve budget, answer, settle.

Order matters for "a rejection costs nothing" (SPEC §3): the limiter admits first (the common
rejection, one write); a budget refusal gives the admission back; a failure after admission
gives back both the admission and the reservation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import BudgetExceededError, InvalidRequestError, StoreUnavailableError
from dnd_rag.logic.budget import Budget, BudgetTotals, Charge, CostBound, Reservation
from dnd_rag.logic.clock import Deadline
from dnd_rag.logic.plans import PlanBook
from dnd_rag.logic.rag import Answer, RagService
from dnd_rag.logic.rate_limit import Admission, Policy, RateLimiter
from dnd_rag.models.domain import User
from dnd_rag.observability import logger, metrics


@dataclass(frozen=True)
class QueryOutcome:
    answer: Answer
    admission: Admission
    policy: Policy
    totals: BudgetTotals | None  # None when the cost could not be recorded


def user_key(user: User) -> str:
    return f"USER#{user.id}"


class QueryService:
    def __init__(
        self,
        rag: RagService,
        limiter: RateLimiter,
        plans: PlanBook,
        budget: Budget,
        bound: CostBound,
        clock: Callable[[], float],
        max_question_chars: int,
    ) -> None:
        self._rag = rag
        self._limiter = limiter
        self._plans = plans
        self._budget = budget
        self._bound = bound
        self._clock = clock
        self._max_question_chars = max_question_chars

    def ask(self, user: User, question: str, k: int, debug: bool, deadline: Deadline | None = None) -> QueryOutcome:
        """Raises InvalidRequest / RateLimited / DailyLimitExceeded / BudgetExceeded before any cost."""
        if len(question) > self._max_question_chars:
            raise InvalidRequestError(
                "Some fields are missing or wrong; see details.",
                details=[
                    {
                        "field": "question",
                        "type": "string_too_long",
                        "message": f"String should have at most {self._max_question_chars} characters",
                    }
                ],
            )
        _, policy = self._plans.policy(user.plan)
        admission = self._limiter.admit(user_key(user), policy, self._clock())
        try:
            reservation = self._budget.reserve(self._bound.for_question(question, k))
        except BudgetExceededError:
            self._limiter.refund(admission)
            raise
        try:
            answer = self._rag.answer(question, k, debug, deadline)
        except Exception:
            self._budget.release(reservation)
            self._limiter.refund(admission)
            raise
        return QueryOutcome(answer, admission, policy, self._settle(reservation, user, answer))

    def _settle(self, reservation: Reservation, user: User, answer: Answer) -> BudgetTotals | None:
        charge = Charge(user.id, answer.model, answer.usage, answer.cost_nanos)
        try:
            return self._budget.settle(reservation, charge)
        except StoreUnavailableError as exc:
            # The answer exists and was paid for: deliver it. The reservation stays held until
            # its lease ends, so the budget stays safe meanwhile.
            metrics.add_metric(name="SettleFailed", unit="Count", value=1)
            logger.error("could not record the cost of an answered query", extra={"reason": exc.reason})
            return None
