"""The burn-rate forecast: from the day's spend curve (10-minute buckets), the rate and the time
the budget runs out at that rate."""

from datetime import UTC, datetime

import pytest

from dnd_rag.logic.operations.forecast import bucket_attribute, bucket_of, forecast

DAY = datetime(2026, 11, 22, tzinfo=UTC).timestamp()
MIDNIGHT = DAY + 86_400
USD = 1_000_000_000


def at(hour, minute=0, second=0):
    return DAY + hour * 3600 + minute * 60 + second


def test_buckets_are_named_by_the_ten_minutes_they_start():
    assert (bucket_of(at(9, 37, 12)), bucket_attribute(at(9, 37, 12))) == (570, "s_0930")
    assert (bucket_of(at(0, 0)), bucket_attribute(at(23, 59, 59))) == (0, "s_2350")


def test_no_spend_means_no_rate_and_no_run_out():
    result = forecast({}, at(12), 10 * USD, 0)

    assert (result.rate_per_hour, result.runs_out_at, result.hours_before_midnight) == (0, None, 0.0)


def test_the_rate_is_the_last_hour_of_spend_and_the_run_out_follows_from_what_is_left():
    # $0.50 in each 10-minute bucket from 10:00 to 11:50 ($3/hour), $6 spent of $9 at 12:00
    buckets = dict.fromkeys(range(600, 720, 10), USD // 2)

    result = forecast(buckets, at(12), 9 * USD, 6 * USD)

    assert result.rate_per_hour == 3 * USD  # only 11:00-11:50 counts: the last hour
    assert result.runs_out_at == at(13)  # $3 left at $3/hour
    assert result.hours_before_midnight == 11.0


def test_older_spend_does_not_inflate_the_rate():
    buckets = {60: 50 * USD, 660: USD // 2}  # a burst at 01:00, then $0.50 at 11:00

    result = forecast(buckets, at(12), 100 * USD, 50 * USD + USD // 2)

    assert result.rate_per_hour == USD // 2


def test_the_rate_since_a_first_spend_less_than_an_hour_ago_is_per_hour_of_that_time():
    # the day's first spend at 11:30; $1 in 30 minutes
    buckets = {690: USD // 2, 710: USD // 2}

    result = forecast(buckets, at(12), 10 * USD, USD)

    assert result.rate_per_hour == 2 * USD
    assert result.runs_out_at == at(16, 30)  # $9 at $2/hour


def test_the_first_minutes_never_extrapolate_from_less_than_one_bucket():
    result = forecast({720: USD}, at(12, 0, 5), 100 * USD, USD)

    assert result.rate_per_hour == 6 * USD  # $1 over 10 minutes, not over 5 seconds


def test_a_budget_that_lasts_past_midnight_has_no_run_out_time():
    buckets = dict.fromkeys(range(1200, 1260, 10), USD // 100)  # $0.06/hour in the evening

    result = forecast(buckets, at(21), 10 * USD, 5 * USD)

    assert result.rate_per_hour == pytest.approx(USD * 6 // 100)
    assert (result.runs_out_at, result.hours_before_midnight) == (None, 0.0)


def test_a_budget_exactly_at_its_limit_has_run_out_now():
    result = forecast({600: 2 * USD}, at(10, 30), 2 * USD, 2 * USD)

    assert result.runs_out_at == at(10, 30)
    assert result.hours_before_midnight == 13.5
