"""The bucket arithmetic (GCRA form) and plan resolution, without any store."""

from datetime import UTC, datetime

import pytest

from dnd_rag.errors import DailyLimitExceededError, RateLimitedError
from dnd_rag.logic.limits.plans import PlanBook
from dnd_rag.logic.limits.rate_limit import BucketState, Policy, Shape, rejection, shape_for, standing
from dnd_rag.settings import PlanLimits

POLICY = Policy(capacity=15, refill_rate=1 / 60, daily_limit=30)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()
NOW_MS = int(NOW * 1000)
MINUTE_MS = 60_000


def state(backlog_ms, count=1, day="2026-11-22"):
    return BucketState(tat_ms=NOW_MS + backlog_ms, day=day, count=count)


def test_interval_is_the_refill_period():
    assert POLICY.interval_ms == MINUTE_MS


def test_no_state_is_a_full_bucket_and_a_fresh_day():
    current = standing(None, POLICY, NOW)

    assert (current.remaining_burst, current.daily_remaining, current.retry_after) == (15, 30, 0)
    assert current.reset_at == datetime(2026, 11, 23, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("backlog_minutes", "remaining"), [(-5, 15), (0, 15), (1, 14), (14, 1), (15, 0)])
def test_remaining_burst_follows_the_backlog(backlog_minutes, remaining):
    assert standing(state(backlog_minutes * MINUTE_MS), POLICY, NOW).remaining_burst == remaining


def test_an_empty_bucket_waits_for_the_next_token():
    error = rejection(state(15 * MINUTE_MS - 20_000), POLICY, NOW)

    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 40
    assert error.context["rate_info"] == {"remaining_burst": 0, "daily_remaining": 29, "retry_after": 40}


def test_one_token_left_is_admitted():
    assert rejection(state(14 * MINUTE_MS), POLICY, NOW) is None


def test_the_daily_quota_waits_for_midnight_and_wins_over_the_bucket():
    error = rejection(state(15 * MINUTE_MS, count=30), POLICY, NOW)

    assert isinstance(error, DailyLimitExceededError)
    assert error.retry_after == 12 * 3600
    assert error.context["rate_info"] == {
        "daily_remaining": 0,
        "retry_after": 43200,
        "reset_at": "2026-11-23T00:00:00Z",
    }


def test_yesterdays_exhausted_state_is_a_new_day():
    yesterday = state(15 * MINUTE_MS, count=30, day="2026-11-21")

    assert rejection(yesterday, POLICY, NOW) is None
    assert shape_for(yesterday, NOW) is Shape.NEW_DAY


@pytest.mark.parametrize(("backlog_ms", "shape"), [(-1, Shape.FULL), (0, Shape.FULL), (1, Shape.DRAINING)])
def test_the_write_shape_follows_the_state(backlog_ms, shape):
    assert shape_for(state(backlog_ms), NOW) is shape


def test_plans_override_only_what_they_name():
    book = PlanBook(POLICY, {"pro": PlanLimits(capacity=60, daily_limit=500)})

    assert book.policy("pro") == ("pro", Policy(capacity=60, refill_rate=1 / 60, daily_limit=500))
    assert book.policy(None) == ("default", POLICY)
    assert book.policy("unknown-plan") == ("unknown-plan", POLICY)
