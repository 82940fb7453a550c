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
from functools import partial
from typing import Any, Literal

from dnd_rag.errors import (
    DailyLimitExceededError,
    InvalidRequestError,
    ServiceError,
    StoreUnavailableError,
    UpstreamError,
)
from dnd_rag.logic.alerts.events import QuotaEvents
from dnd_rag.logic.common.clock import Deadline, utc_day
from dnd_rag.logic.common.concurrently import together
from dnd_rag.logic.limits.plans import PlanBook
from dnd_rag.logic.limits.rate_limit import Admission, Policy, RateLimiter
from dnd_rag.logic.money.fitting import Fit, Ladder
from dnd_rag.logic.money.spending import Tab
from dnd_rag.logic.money.wallet import BY_IN_FLIGHT, Wallet
from dnd_rag.logic.operations.controls import ControlsCache
from dnd_rag.logic.retrieval.answer_cache import AnswerCache, Lookup
from dnd_rag.logic.retrieval.moderation import QuestionModeration
from dnd_rag.logic.retrieval.rag import Answer, RagService, Retrieval, diagnostics
from dnd_rag.logic.retrieval.relevance import NOT_COVERED, RelevanceGate
from dnd_rag.models.domain import User
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import BudgetTotals, TokenUsage
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
# A form fitted to what a refusal showed is refused again when running queries took that money in
# the meantime: after this many such refusals in a row, wait for them as above before fitting again.
REFITS_BEFORE_WAITING = 3


@dataclass(frozen=True)
class UserSpend:
    """The user's day against the user's own cap, once this query is settled."""

    spent: int  # nano-dollars counted against the cap
    cap: int | None  # None: no cap


@dataclass(frozen=True)
class QueryOutcome:
    answer: Answer
    admission: Admission
    policy: Policy
    totals: BudgetTotals | None  # None when the cost could not be recorded
    degraded: dict[str, Any] | None = None
    cache: Literal["hit", "miss", "off"] = "off"  # "miss": computed with the cache on
    user: UserSpend | None = None  # None when the cost could not be recorded


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
        budget: Wallet,
        fitter: Ladder,
        clock: Callable[[], float],
        max_question_chars: int,
        controls: ControlsCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cache: AnswerCache | None = None,
        quota_events: QuotaEvents | None = None,
        relevance: RelevanceGate | None = None,
        moderation: QuestionModeration | None = None,
    ) -> None:
        self._rag = rag
        self._limiter = limiter
        self._plans = plans
        self._budget = budget
        self._fitter = fitter
        self._clock = clock
        self._max_question_chars = max_question_chars
        self._controls = controls
        self._sleep = sleep
        self._cache = cache
        self._quota_events = quota_events
        self._relevance = relevance or RelevanceGate()
        self._moderation = moderation
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
        limits = self._plans.user_limits(user.plan)
        # A user whose cap this container saw spent moments ago is refused without a store call;
        # with the answer cache on, only after the lookup: a hit is free whatever the cap.
        if self._cache is None:
            self._budget.users.refuse_if_known_spent(user.id, limits)
        try:
            admission, lookup = self._admit(user, policy, question, k)
        except DailyLimitExceededError:
            if self._quota_events is not None:  # retries only a delivery that failed: no round trip otherwise
                self._quota_events.observe_rejection(user.id, utc_day(self._clock()))
            raise
        if lookup is not None and lookup.hit is not None:  # free: served whatever the user's cap
            self._with_quota_events(user, admission, policy, lambda: None)
            return self._from_cache(lookup, admission, policy, limits, debug)
        if lookup is not None:
            metrics.add_metric(name="AnswerCacheMiss", unit="Count", value=1)
        try:
            if self._cache is not None:  # (checked before the admission when the cache is off)
                self._budget.users.refuse_if_known_spent(user.id, limits)
            answer, totals, fit, tab = self._with_quota_events(
                user, admission, policy, lambda: self._answer(user, limits, question, k, debug, deadline, lookup)
            )
        except BaseException:
            self._refund(admission)
            raise
        degraded = None
        if fit.degraded:
            metrics.add_metric(name="QueryDegraded", unit="Count", value=1)
            degraded = {
                "reason": tab.degraded_by,
                "k": len(fit.passages),
                "max_completion_tokens": fit.max_completion_tokens,
                "model": answer.model,
            }
        spend = UserSpend(tab.seen.user.spent + tab.charged, limits.daily_nanos) if totals is not None else None
        if spend is not None and spend.cap is not None and self._quota_events is not None:
            self._quota_events.observe_spend(admission.day, user.id, spend.spent, spend.cap)  # at 80 %+ only
        cache: Literal["miss", "off"] = "off" if lookup is None else "miss"
        return QueryOutcome(answer, admission, policy, totals, degraded, cache=cache, user=spend)

    def _admit(self, user: User, policy: Policy, question: str, k: int) -> tuple[Admission, Lookup | None]:
        """The admission, and the cache lookup at the same time (one sequential round trip). A
        refused admission raises once both ended: the lookup's result is simply dropped.

        Both behind the operator controls: paused or blocked answers 503/403 and consumes nothing
        (a stale copy of the controls is re-read at the same time too; see logic/operations/controls.py)."""
        cache = self._cache

        def admit() -> Admission:
            return self._limiter.admit(user_key(user), policy, self._clock())

        def admit_and_look_up() -> tuple[Admission, Lookup | None]:
            if cache is None:
                return admit(), None
            return together(admit, lambda: cache.look_up(question, k, user.id))

        if self._controls is None:
            return admit_and_look_up()
        return self._controls.guard(user.id, admit_and_look_up, lambda admitted: self._refund(admitted[0]))

    def _from_cache(
        self, lookup: Lookup, admission: Admission, policy: Policy, limits: UserLimits, debug: bool
    ) -> QueryOutcome:
        """A hit: no budget held, no ledger written, nothing billed; the admission stays consumed."""
        assert self._cache is not None
        assert lookup.hit is not None
        assert lookup.read is not None
        metrics.add_metric(name="AnswerCacheHit", unit="Count", value=1)
        entry = lookup.hit
        diagnostics = self._cache.diagnostics(entry) if debug else []
        answer = Answer(entry.text, entry.sources, TokenUsage(), entry.model, 0, diagnostics)
        user = None if lookup.read.user is None else UserSpend(lookup.read.user.spent, limits.daily_nanos)
        return QueryOutcome(answer, admission, policy, lookup.read.totals, None, cache="hit", user=user)

    def _with_quota_events[T](self, user: User, admission: Admission, policy: Policy, work: Callable[[], T]) -> T:
        """``work()``; a quota event the admission made due is delivered at the same time (it adds
        no sequential round trip, and it never fails the query)."""
        events = self._quota_events
        due = events.admission_due(user.id, admission, policy.daily_limit) if events is not None else []
        if events is None or not due:
            return work()
        result, _ = together(work, lambda: events.deliver(user.id, due))
        return result

    def _answer(
        self,
        user: User,
        limits: UserLimits,
        question: str,
        k: int,
        debug: bool,
        deadline: Deadline,
        lookup: Lookup | None = None,
    ) -> tuple[Answer, BudgetTotals | None, Fit, Tab]:
        if self._moderation is not None:  # admitted, nothing held yet: a flagged question pays nothing
            self._moderation.check(question, deadline)
        frame = self._fitter.frame_tokens(question)  # the prompt without passages, counted once
        tab = self._open(user, limits, question, k, frame, deadline)
        try:
            retrieval = self._rag.retrieve(question, k, deadline, tab, _no_retry_budget)
            if not self._relevance.covers(retrieval.passages):  # nothing to answer from: no chat call
                return self._not_covered(retrieval, tab, debug)
            fit = self._fit(question, retrieval, tab, frame, deadline)
            started = time.perf_counter()
            generation = self._rag.generate(fit, deadline, tab, _no_retry_budget)
            generate_ms = round((time.perf_counter() - started) * 1000, 2)
        except BaseException:
            self._close_after_failure(tab)
            raise
        reserved = tab.hold.amount
        remember = None
        # degraded answers are not kept, nor an empty one (a reasoning model that spent the cap thinking)
        if self._cache is not None and lookup is not None and not fit.degraded and generation.answer:
            remember = partial(self._cache.remember, lookup, generation.answer, fit.passages, generation.model)
        totals = self._close(tab, alongside=remember)
        answer = Answer(
            generation.answer,
            fit.passages,
            tab.usage,
            generation.model,
            tab.charged,
            diagnostics(retrieval, fit, tab.usage, generate_ms, reserved) if debug else [],
            list(generation.errors),
        )
        return answer, totals, fit, tab

    def _not_covered(self, retrieval: Retrieval, tab: Tab, debug: bool) -> tuple[Answer, BudgetTotals | None, Fit, Tab]:
        """The fixed answer, settled at the embedding's cost; not cached (a new corpus may cover it)."""
        metrics.add_metric(name="QueryNotCovered", unit="Count", value=1)
        # the best score on record helps an operator calibrate MIN_RELEVANCE on real questions
        logger.info("question not covered", extra=self._relevance.diagnostics(retrieval.passages))
        reserved = tab.hold.amount
        totals = self._close(tab)
        nothing = Fit([], [], 0, 0, 0, degraded=False)
        details = []
        if debug:
            details = diagnostics(retrieval, nothing, tab.usage, 0.0, reserved)
            details.insert(1, self._relevance.diagnostics(retrieval.passages))
        answer = Answer(NOT_COVERED, [], tab.usage, self._rag.generator.model, tab.charged, details, answered=False)
        return answer, totals, nothing, tab

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

    def _open(self, user: User, limits: UserLimits, question: str, k: int, frame: int, deadline: Deadline) -> Tab:
        """The first hold (on the budget and the user's limits at once): the whole query as
        estimated, or (near the end of either) just the embedding."""
        embedding = self._rag.embedding_bound(question)
        model = self._rag.generator.model
        estimate = self._fitter.chat_bound(frame + k * self._tokens_per_passage)
        hold, seen = self._budget.open(user.id, limits, model, embedding + estimate, user.email)
        if hold is not None:
            return Tab(self._budget, hold, seen)
        # The cheapest query this container has seen (or, before any, a prompt with no passage, on
        # the cheapest model): when even that cannot fit in what is unspent, refuse now rather than
        # pay for an embedding.
        smallest = embedding + (self._smallest_chat or self._fitter.floor_bound(question))
        waits = 0
        # a user at the in-flight limit is refused at once; when spent, no wait can help
        while seen.refused_by != BY_IN_FLIGHT and not self._budget.spent_out(seen, limits, smallest):
            hold, seen = self._budget.open(user.id, limits, model, embedding, user.email)
            if hold is not None:
                return Tab(self._budget, hold, seen)
            if seen.refused_by == BY_IN_FLIGHT or not self._waited(waits, deadline):
                break
            waits += 1
        raise self._budget.refusal(seen, limits, smallest)

    def _fit(self, question: str, retrieval: Retrieval, tab: Tab, frame: int, deadline: Deadline) -> Fit:
        """The standard form if the budget covers it, else the richest form that fits (a cheaper
        model's standard form first, then fewer passages and a smaller cap on the cheapest), else 503."""
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
        limits = tab.hold.user_limits
        assert limits is not None
        waits = refits = 0
        while True:  # each refusal shows the state that refused it: fit to that, then ask again
            seen = tab.refused
            assert seen is not None
            available, by_user_cap = self._budget.available_to(tab.hold, seen)
            fit = self._fitter.best_within(question, passages, available - tab.charged)
            if fit is not None:
                if tab.cover(fit.bound):
                    tab.degraded_by = "user_budget_low" if by_user_cap else "budget_low"
                    if fit.model != standard.model:  # a fallback answers: its cost is booked under it
                        tab.model = fit.model
                    return fit
                refits += 1
                if refits < REFITS_BEFORE_WAITING:
                    continue
                # running queries keep taking what this one fits to: let them settle, then fit afresh
                # (refusing here is a 503 `in_flight` while money is still there)
            elif self._budget.spent_out(seen, limits, tab.charged + smallest.bound):
                break  # spent: no wait can help
            if not self._waited(waits, deadline):
                break
            waits += 1
            refits = 0
            if tab.cover(standard.bound):  # running queries settled: maybe the whole query fits now
                return standard
        assert tab.refused is not None
        raise self._budget.refusal(tab.refused, limits, tab.charged + smallest.bound)

    def _close(self, tab: Tab, alongside: Callable[[], None] | None = None) -> BudgetTotals | None:
        """Settle; ``alongside`` (the cache write, which never raises) runs at the same time, so
        it adds no sequential round trip."""
        if alongside is None:
            return self._settle(tab)
        totals, _ = together(lambda: self._settle(tab), alongside)
        return totals

    def _settle(self, tab: Tab) -> BudgetTotals | None:
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
