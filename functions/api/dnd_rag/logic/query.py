"""The /api/query use case: admit under the user's limits, hold budget, answer, settle.

Order matters for SPEC §3 "what a rejection costs": the limiter admits first (the common
rejection, one write); from then on every failure gives the admission back, whatever failed
(a budget refusal, an upstream error, a store error). Money is different: what a paid call may
have been billed stays on the books even when the request fails (SPEC §4 "ground truth").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dnd_rag.errors import (
    DailyLimitExceededError,
    InvalidRequestError,
    ServiceError,
    StoreUnavailableError,
    UpstreamError,
)
from dnd_rag.logic.budget import Budget
from dnd_rag.logic.clock import Deadline, utc_day
from dnd_rag.logic.concurrently import together
from dnd_rag.logic.events import QuotaEvents
from dnd_rag.logic.fitting import Fit, Fitter
from dnd_rag.logic.plans import PlanBook
from dnd_rag.logic.rag import Answer, RagService, Retrieval, diagnostics
from dnd_rag.logic.rate_limit import Admission, Policy, RateLimiter
from dnd_rag.logic.spending import Tab
from dnd_rag.models.domain import User
from dnd_rag.models.money import BudgetTotals
from dnd_rag.observability import logger, metrics

# Before retrieval the prompt is unknown: the first hold estimates each passage at the largest
# this container has seen (this many tokens until it has seen one). A larger real prompt grows
# the hold once; near the end of the budget only the embedding is held before retrieval.
INITIAL_TOKENS_PER_PASSAGE = 400
# When the money left is held by running queries, they settle (and usually free most of it)
# within moments: wait this long, in steps, before answering 503 `in_flight` — never with less
# than MIN_SECONDS_FOR_QUERY of the deadline left for the query itself.
IN_FLIGHT_WAITS = (0.1, 0.2, 0.4, 0.8)
MIN_SECONDS_FOR_QUERY = 5.0


@dataclass(frozen=True)
class QueryOutcome:
    answer: Answer
    admission: Admission
    policy: Policy
    totals: BudgetTotals | None  # None when the cost could not be recorded
    degraded: dict[str, Any] | None = None


def user_key(user: User) -> str:
    return f"USER#{user.id}"


def _no_retry_budget() -> Exception:
    return UpstreamError(
        "The language model is unavailable right now. Please retry.", reason="no budget left to cover a retry"
    )


class QueryService:
    def __init__(
        self,
        rag: RagService,
        limiter: RateLimiter,
        plans: PlanBook,
        budget: Budget,
        fitter: Fitter,
        clock: Callable[[], float],
        max_question_chars: int,
        sleep: Callable[[float], None] = time.sleep,
        quota_events: QuotaEvents | None = None,
    ) -> None:
        self._rag = rag
        self._limiter = limiter
        self._plans = plans
        self._budget = budget
        self._fitter = fitter
        self._clock = clock
        self._max_question_chars = max_question_chars
        self._sleep = sleep
        self._quota_events = quota_events
        self._tokens_per_passage = INITIAL_TOKENS_PER_PASSAGE
        self._smallest_chat: int | None = None  # the cheapest chat form this container has priced

    def ask(self, user: User, question: str, k: int, debug: bool, deadline: Deadline) -> QueryOutcome:
        """Raises InvalidRequest / RateLimited / DailyLimitExceeded / BudgetExceeded / Upstream..."""
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
        admission = self._admit(user, policy)
        try:
            answer, totals, fit = self._answer_and_notify(user, admission, policy, question, k, debug, deadline)
        except BaseException:
            self._refund(admission)
            raise
        degraded = None
        if fit.degraded:
            metrics.add_metric(name="QueryDegraded", unit="Count", value=1)
            degraded = {
                "reason": "budget_low",
                "k": len(fit.passages),
                "max_completion_tokens": fit.max_completion_tokens,
                "model": answer.model,
            }
        return QueryOutcome(answer, admission, policy, totals, degraded)

    def _admit(self, user: User, policy: Policy) -> Admission:
        now = self._clock()
        try:
            return self._limiter.admit(user_key(user), policy, now)
        except DailyLimitExceededError:
            if self._quota_events is not None:  # only a delivery that failed earlier: no round trip otherwise
                self._quota_events.observe_rejection(user.id, utc_day(now))
            raise

    def _answer_and_notify(
        self, user: User, admission: Admission, policy: Policy, question: str, k: int, debug: bool, deadline: Deadline
    ) -> tuple[Answer, BudgetTotals | None, Fit]:
        """The answer; a quota event the admission made due is delivered at the same time (it
        adds no sequential round trip, and it never fails the query)."""
        events = self._quota_events
        due = events.admission_due(user.id, admission, policy.daily_limit) if events is not None else []
        if events is None or not due:
            return self._answer(user, question, k, debug, deadline)
        result, _ = together(
            lambda: self._answer(user, question, k, debug, deadline), lambda: events.deliver(user.id, due)
        )
        return result

    def _answer(
        self, user: User, question: str, k: int, debug: bool, deadline: Deadline
    ) -> tuple[Answer, BudgetTotals | None, Fit]:
        frame = self._fitter.frame_tokens(question)  # the prompt without passages, counted once
        tab = self._open(user, question, k, frame, deadline)
        try:
            retrieval = self._rag.retrieve(question, k, deadline, tab, _no_retry_budget)
            fit = self._fit(question, retrieval, tab, frame, deadline)
            started = time.perf_counter()
            generation = self._rag.generate(fit, deadline, tab, _no_retry_budget)
            generate_ms = round((time.perf_counter() - started) * 1000, 2)
        except BaseException:
            self._close_after_failure(tab)
            raise
        reserved = tab.hold.amount
        totals = self._close(tab)
        answer = Answer(
            generation.answer,
            fit.passages,
            tab.usage,
            generation.model,
            tab.charged,
            diagnostics(retrieval, fit, tab.usage, generate_ms, reserved) if debug else [],
        )
        return answer, totals, fit

    def _waited(self, number: int, deadline: Deadline) -> bool:
        """Wait for running queries to settle (the ``number``-th time); False when waiting is over."""
        if number >= len(IN_FLIGHT_WAITS):
            return False
        wait = IN_FLIGHT_WAITS[number]
        if deadline.remaining() - wait < MIN_SECONDS_FOR_QUERY:
            return False
        metrics.add_metric(name="BudgetWaitedInFlight", unit="Count", value=1)
        self._sleep(wait)
        return True

    def _open(self, user: User, question: str, k: int, frame: int, deadline: Deadline) -> Tab:
        """The first hold: the whole query as estimated, or (near the end) just the embedding."""
        embedding = self._rag.embedding_bound(question)
        model = self._rag.generator.model
        estimate = self._fitter.chat_bound(frame + k * self._tokens_per_passage)
        hold, totals = self._budget.open(user.id, model, embedding + estimate)
        if hold is not None:
            return Tab(self._budget, hold)
        # The cheapest query this container has seen (or, before any, a prompt with no passage):
        # when even that cannot fit in what is unspent, refuse now rather than pay for an embedding.
        smallest = embedding + (self._smallest_chat or self._fitter.chat_bound(frame, floor=True))
        waits = 0
        while totals.spent + smallest <= self._budget.limit:  # else spent: no wait can help
            hold, totals = self._budget.open(user.id, model, embedding)
            if hold is not None:
                return Tab(self._budget, hold)
            if not self._waited(waits, deadline):
                break
            waits += 1
        raise self._budget.refusal(totals, smallest)

    def _fit(self, question: str, retrieval: Retrieval, tab: Tab, frame: int, deadline: Deadline) -> Fit:
        """The standard form if the budget covers it, else the richest form that fits, else 503."""
        passages = retrieval.passages
        standard = self._fitter.standard(question, passages)
        if passages:  # learn how large passages really are, for the next first hold
            passage_tokens = standard.prompt_tokens - frame
            self._tokens_per_passage = max(self._tokens_per_passage, -(-passage_tokens // len(passages)))
        smallest = self._fitter.smallest(question, passages)
        self._smallest_chat = min(self._smallest_chat or smallest.bound, smallest.bound)
        self._budget.note_smallest_query(tab.charged + smallest.bound)
        if tab.cover(standard.bound):
            return standard
        waits = refits = 0
        while refits < 3:  # each refusal shows the state that refused it: fit to that, then ask again
            totals = tab.refused_totals
            assert totals is not None
            available = self._budget.available_to(tab.hold, totals) - tab.charged
            fit = self._fitter.best_within(question, passages, available)
            if fit is not None:
                if tab.cover(fit.bound):
                    return fit
                refits += 1
                continue
            if totals.spent + tab.charged + smallest.bound > self._budget.limit:
                break  # spent: no wait can help
            if not self._waited(waits, deadline):
                break
            waits += 1
            if tab.cover(standard.bound):  # running queries settled: maybe the whole query fits now
                return standard
        assert tab.refused_totals is not None
        raise self._budget.refusal(tab.refused_totals, tab.charged + smallest.bound)

    def _close(self, tab: Tab) -> BudgetTotals | None:
        try:
            return tab.close()
        except StoreUnavailableError as exc:
            # The answer exists and was paid for: deliver it. The hold stays until its lease ends
            # and is then charged in full, so the books never fall below what was billed.
            metrics.add_metric(name="SettleFailed", unit="Count", value=1)
            logger.error("could not record the cost of an answered query", extra={"reason": exc.reason})
            return None

    def _close_after_failure(self, tab: Tab) -> None:
        """Settle what the failed request may have been billed (or release an unused hold)."""
        try:
            if tab.charged == 0:
                self._budget.release(tab.hold)
            else:
                tab.close()
                # spent although unanswered: the cost metric counts every cent on the books
                metrics.add_metric(name="QueryCostMicroUsd", unit="Count", value=tab.charged / 1000)
        except ServiceError as exc:
            metrics.add_metric(name="SettleFailed", unit="Count", value=1)
            logger.error("could not settle a failed query; its hold will be reclaimed", extra={"reason": exc.reason})

    def _refund(self, admission: Admission) -> None:
        try:
            self._limiter.refund(admission)
        except ServiceError as exc:
            logger.error("could not refund a failed query's admission", extra={"reason": exc.reason})
