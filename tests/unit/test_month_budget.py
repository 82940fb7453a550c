"""The month's cap on a day (logic/money/month.py): what the month leaves a day, from its previous
days' commitments, on the 1st, with an operator's override, with yesterday's holds still open."""

from datetime import UTC, datetime

import pytest

from dnd_rag.errors import StoreUnavailableError
from dnd_rag.logic.common.clock import month_end
from dnd_rag.logic.money.month import MonthBudget, cap_in_order, days_before
from dnd_rag.logic.operations.forecast import month_forecast
from dnd_rag.models.money import BudgetTotals
from tests.support.clock import Clock


def at(day, hour=12, month=11):
    return datetime(2026, month, day, hour, tzinfo=UTC).timestamp()


class Books:
    """Day -> shard -> (committed, open holds); counts the reads (one Query per day)."""

    def __init__(self, days=None):
        self.days = days or {}
        self.reads: list[str] = []
        self.down = False

    def read_shards(self, day):
        if self.down:
            raise StoreUnavailableError("down", retry_after=1)
        self.reads.append(day)
        shards = self.days.get(day, {})
        return {n: BudgetTotals(day, c - 0, c, shard=n, open_holds=h) for n, (c, h) in shards.items()}


def month_budget(books, clock, configured=1_000, overrides=None):
    overrides = overrides or {}
    return MonthBudget(books, configured, overrides.get, clock)


def no_limits(day):
    raise AssertionError(f"yesterday's limits are not needed for {day}")


def test_the_1st_has_the_whole_month_and_reads_nothing():
    books = Books({"2026-10-31": {0: (999, 0)}})  # the previous month does not count
    month = month_budget(books, Clock(at(1)))

    assert days_before("2026-11-01") == []
    assert month.room("2026-11-01", no_limits) == 1_000
    assert books.reads == []


def test_the_month_leaves_a_day_its_budget_less_what_its_previous_days_committed():
    books = Books({"2026-11-01": {0: (300, 0), 1: (100, 0)}, "2026-11-03": {0: (250, 0)}})
    month = month_budget(books, Clock(at(5)))

    # 1st 400 + 2nd nothing + 3rd 250 + 4th (yesterday, no holds) nothing
    assert month.room("2026-11-05", no_limits) == 350
    assert sorted(books.reads) == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    # closed days are read once per container; yesterday, closed too once it holds nothing
    month.room("2026-11-05", no_limits)
    assert len(books.reads) == 4


def test_an_operator_override_for_the_month_replaces_the_configured_budget_and_none_means_no_cap():
    books = Books({"2026-11-01": {0: (300, 0)}})
    overrides = {"2026-11": 5_000}
    assert month_budget(books, Clock(at(2)), overrides=overrides).room("2026-11-02", no_limits) == 4_700
    assert month_budget(books, Clock(at(2)), configured=None).room("2026-11-02", no_limits) is None
    # an override of another month does not count
    assert month_budget(books, Clock(at(2)), overrides={"2026-10": 1}).room("2026-11-02", no_limits) == 700


def test_yesterdays_shards_with_open_holds_count_at_their_limit_until_they_settle():
    # yesterday: shard 0 committed 200 with a hold open (its limit 500), shard 1 committed 100, closed
    books = Books({"2026-11-09": {0: (200, 1), 1: (100, 0)}})
    clock = Clock(at(10, hour=0))
    month = MonthBudget(books, 1_000, {}.get, clock, refresh_seconds=0)
    limits = {"2026-11-09": (500, 500)}

    assert month.room("2026-11-10", limits.__getitem__) == 1_000 - 500 - 100  # the hold may grow to 500
    assert month.committed_before("2026-11-10") == 300  # what reports show: as it is

    # When the hold settles (nothing open): yesterday counts at what it committed, and is closed
    books.days["2026-11-09"] = {0: (260, 0), 1: (100, 0)}
    assert month.room("2026-11-10", limits.__getitem__) == 1_000 - 360
    reads = len(books.reads)
    month.room("2026-11-10", limits.__getitem__)
    assert len(books.reads) == reads


def test_yesterday_is_read_again_only_every_few_seconds_and_an_outage_keeps_the_older_copy():
    books = Books({"2026-11-09": {0: (200, 1)}})
    month = MonthBudget(books, 1_000, {}.get, Clock(at(10, hour=0)), refresh_seconds=60)
    limits = {"2026-11-09": (400,)}.__getitem__

    assert month.room("2026-11-10", limits) == 600
    books.down = True
    assert month.room("2026-11-10", limits) == 600  # the copy, not a read (60 s fresh)

    fresh = MonthBudget(books, 1_000, {}.get, Clock(at(10, hour=0)))
    with pytest.raises(StoreUnavailableError):  # nothing to fall back on: fail closed
        fresh.room("2026-11-10", limits)


def test_the_month_never_leaves_less_than_nothing():
    books = Books({"2026-11-01": {0: (1_500, 0)}})
    assert month_budget(books, Clock(at(2))).room("2026-11-02", no_limits) == 0


def test_capped_shard_limits_fill_in_order_add_up_and_only_rise_with_the_cap():
    base = (250, 250, 250, 250)
    assert cap_in_order(base, 600) == (250, 250, 100, 0)
    assert cap_in_order(base, 0) == (0, 0, 0, 0)
    previous = cap_in_order(base, 0)
    for cap in range(0, 1_001, 37):
        limits = cap_in_order(base, cap)
        assert sum(limits) == cap
        assert all(now >= before for now, before in zip(limits, previous, strict=True))  # monotone
        previous = limits


def test_month_end_and_the_days_before():
    assert datetime.fromtimestamp(month_end("2026-12"), UTC) == datetime(2027, 1, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(month_end("2026-02"), UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    assert days_before("2026-11-03") == ["2026-11-01", "2026-11-02"]


def test_the_month_forecast_says_when_the_month_runs_out_at_the_current_rate():
    now = at(20, hour=12)
    curve = {11 * 60 + 10 * n: 1_000_000 for n in range(6)}  # $0.006 in the last hour: $0.006/h
    outlook = month_forecast(curve, now, budget=1_000_000_000, spent=400_000_000)
    assert outlook.rate_per_hour == 6_000_000
    assert outlook.runs_out_at == pytest.approx(now + 0.6e9 / 6e6 * 3600)  # 100 h later: the 24th
    assert outlook.midnight == month_end("2026-11")
    # a month that lasts at this rate has no run-out time; a spent one runs out now
    assert month_forecast(curve, now, budget=10**12, spent=0).runs_out_at is None
    assert month_forecast({}, now, budget=100, spent=100).runs_out_at == now
