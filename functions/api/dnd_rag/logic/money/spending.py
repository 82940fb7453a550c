"""One request's account with the budget, and the paid calls it makes against it.

Every attempt of a paid call (an embedding, a chat completion) runs only once the request's hold
covers everything charged so far plus that attempt's upper bound. After the attempt, the tab is
charged what the provider reported, or the bound when the attempt failed in a way the provider
may still bill (a timeout after sending, a dropped connection, a 5xx). Retries are explicit here
(the SDK's own are off), each one covered and charged, each one inside the request deadline,
including the wait the provider asks for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import AttemptError, UpstreamError
from dnd_rag.logic.common.clock import Deadline
from dnd_rag.logic.money.budget import Hold
from dnd_rag.logic.money.wallet import Seen, Wallet
from dnd_rag.models.money import BudgetTotals, Charge, TokenUsage
from dnd_rag.observability import logger, metrics

MAX_ATTEMPTS = 3
MIN_ATTEMPT_SECONDS = 0.5  # no attempt is started with less time than this left
BACKOFF_SECONDS = 0.25


class Tab:
    """The hold of one request (on the global budget and the user's limits) and what it has
    been charged so far."""

    def __init__(self, budget: Wallet, hold: Hold, seen: Seen) -> None:
        self._budget = budget
        self.hold = hold
        self.charged = 0
        self.usage = TokenUsage()
        self.seen = seen  # both books as this request's last hold write found or left them
        self.refused: Seen | None = None  # the state seen when a cover was refused
        self.degraded_by = "budget_low"  # which money a degraded fit was cut to: budget_low / user_budget_low
        self.model: str | None = None  # the chat model the query was fitted to, when not the hold's (a fallback)

    def cover(self, more: int) -> bool:
        """Make the hold cover what is charged plus ``more``; False if the budget refuses."""
        needed = self.charged + more
        if needed <= self.hold.amount:
            return True
        hold, seen = self._budget.resize(self.hold, needed)
        self.seen = seen
        if hold is None:
            self.refused = seen
            return False
        self.hold = hold
        return True

    def charge(self, cost: int, usage: TokenUsage | None = None) -> None:
        self.charged += cost
        if usage is not None:
            self.usage = self.usage + usage

    def close(self) -> BudgetTotals:
        """Settle: the hold is replaced by what was charged (the books keep every billable cent)."""
        model = self.model or self.hold.model  # booked under the model that answered (the per-model ledger)
        return self._budget.settle(self.hold, Charge(self.hold.user_id, model, self.usage, self.charged))


@dataclass(frozen=True)
class PaidCall:
    name: str  # "embeddings" / "chat completion", for logs and messages
    bound: int  # the most one attempt can be billed, nano-dollars
    timeout_seconds: float  # per attempt, before the deadline cuts it


class PaidCalls:
    def __init__(
        self,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._jitter = jitter

    def run[T](
        self,
        tab: Tab,
        call: PaidCall,
        attempt: Callable[[float], T],
        cost_of: Callable[[T], tuple[int, TokenUsage]],
        deadline: Deadline,
        not_covered: Callable[[], Exception],
    ) -> T:
        """``attempt(timeout)`` until it succeeds, each attempt covered first and charged after.

        Raises ``not_covered()`` when the budget will not cover an attempt, UpstreamError when
        the attempts (or the time) run out."""
        for number in range(1, self._max_attempts + 1):
            timeout = min(call.timeout_seconds, deadline.remaining())
            if timeout < MIN_ATTEMPT_SECONDS:
                raise _gave_up(call, "no time left before the request deadline")
            if not tab.cover(call.bound):
                raise not_covered()
            try:
                result = attempt(timeout)
            except AttemptError as failure:
                if failure.billable:
                    tab.charge(call.bound)
                    metrics.add_metric(name="BillableAttemptFailed", unit="Count", value=1)
                logger.warning(
                    "paid call attempt failed",
                    extra={
                        "call": call.name,
                        "attempt": number,
                        "reason": failure.reason,
                        "billable": failure.billable,
                    },
                )
                if not failure.retryable or number == self._max_attempts:
                    raise _gave_up(call, failure.reason) from None
                wait = failure.retry_after if failure.retry_after is not None else self._backoff(number)
                if deadline.remaining() - wait < MIN_ATTEMPT_SECONDS:
                    raise _gave_up(call, f"{failure.reason}; retry after {wait:.1f}s would pass the deadline") from None
                self._sleep(wait)
                continue
            cost, usage = cost_of(result)
            tab.charge(cost, usage)
            return result
        raise AssertionError("unreachable")

    def _backoff(self, number: int) -> float:
        return BACKOFF_SECONDS * (2 ** (number - 1)) * (0.5 + self._jitter() / 2)


def _gave_up(call: PaidCall, reason: str) -> UpstreamError:
    return UpstreamError("The language model is unavailable right now. Please retry.", reason=f"{call.name}: {reason}")
