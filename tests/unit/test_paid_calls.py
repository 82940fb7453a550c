"""Explicit retries of paid calls: every attempt covered first, every billable one charged."""

import pytest

from dnd_rag.errors import AttemptError, UpstreamError
from dnd_rag.logic.common.clock import Deadline
from dnd_rag.logic.money.spending import PaidCall, PaidCalls
from dnd_rag.models.money import TokenUsage

CALL = PaidCall("chat completion", bound=1000, timeout_seconds=2.0)


class RecordingTab:
    """A tab whose hold can cover ``limit`` nano-dollars in all."""

    def __init__(self, limit=10_000):
        self.limit = limit
        self.charged = 0
        self.usage = TokenUsage()
        self.covers = []

    def cover(self, more):
        self.covers.append(self.charged + more)
        return self.charged + more <= self.limit

    def charge(self, cost, usage=None):
        self.charged += cost
        if usage:
            self.usage = self.usage + usage


class Provider:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.timeouts = []

    def __call__(self, timeout):
        self.timeouts.append(timeout)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def run(provider, tab, sleeps, deadline_seconds=20.0):
    calls = PaidCalls(sleep=sleeps.append, jitter=lambda: 0.5)
    return calls.run(
        tab,
        CALL,
        provider,
        lambda cost: (cost, TokenUsage(prompt_tokens=cost)),
        Deadline(deadline_seconds),
        NoBudgetError,
    )


class NoBudgetError(Exception):
    pass


def timeout():
    return AttemptError("timeout", billable=True, retryable=True)


def test_a_first_attempt_success_is_charged_what_it_cost():
    tab, sleeps = RecordingTab(), []

    assert run(Provider(300), tab, sleeps) == 300

    assert (tab.charged, tab.covers, sleeps) == (300, [1000], [])


def test_a_billable_failure_is_charged_at_its_bound_and_the_retry_is_covered_on_top():
    tab, sleeps = RecordingTab(), []

    run(Provider(timeout(), 300), tab, sleeps)

    assert tab.charged == 1000 + 300
    assert tab.covers == [1000, 2000]  # the retry needs the first attempt's bound plus its own
    assert len(sleeps) == 1


def test_a_rate_limited_attempt_costs_nothing_and_waits_what_the_provider_asked():
    tab, sleeps = RecordingTab(), []

    run(Provider(AttemptError("429", billable=False, retryable=True, retry_after=1.5), 300), tab, sleeps)

    assert (tab.charged, sleeps) == (300, [1.5])


def test_a_wait_that_would_pass_the_deadline_gives_up_instead_of_sleeping():
    tab, sleeps = RecordingTab(), []

    with pytest.raises(UpstreamError):
        run(Provider(AttemptError("429", billable=False, retryable=True, retry_after=30)), tab, sleeps)

    assert sleeps == []


def test_a_retry_the_budget_cannot_cover_is_not_made():
    tab, sleeps = RecordingTab(limit=1500), []
    provider = Provider(timeout(), 300)

    with pytest.raises(NoBudgetError):
        run(provider, tab, sleeps)

    assert tab.charged == 1000  # the first attempt may be billed: it stays on the tab
    assert len(provider.timeouts) == 1


def test_every_failed_billable_attempt_is_charged_and_the_attempts_are_bounded():
    tab, sleeps = RecordingTab(), []
    provider = Provider(timeout(), timeout(), timeout(), 300)

    with pytest.raises(UpstreamError):
        run(provider, tab, sleeps)

    assert len(provider.timeouts) == 3
    assert tab.charged == 3000


def test_a_failure_that_retrying_cannot_fix_is_not_retried():
    tab, sleeps = RecordingTab(), []
    provider = Provider(AttemptError("400", billable=False, retryable=False), 300)

    with pytest.raises(UpstreamError):
        run(provider, tab, sleeps)

    assert (len(provider.timeouts), tab.charged) == (1, 0)


def test_attempt_timeouts_never_run_past_the_deadline():
    tab, sleeps = RecordingTab(), []
    provider = Provider(300)

    run(provider, tab, sleeps, deadline_seconds=1.2)

    assert provider.timeouts[0] <= 1.2


def test_no_attempt_starts_without_time_for_it():
    tab, sleeps = RecordingTab(), []
    provider = Provider(300)

    with pytest.raises(UpstreamError):
        run(provider, tab, sleeps, deadline_seconds=0.1)

    assert provider.timeouts == []
