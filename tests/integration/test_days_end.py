"""A day that ends with holds in flight (SPEC §4 "Days end"), against the serialized emulator with
an injected clock: every decision about a hold is made against its own day, yesterday's orphans
are charged to yesterday, and a store error after a grant never leaks the caller's hold."""

import time
from datetime import UTC, datetime

import pytest

from dnd_rag.dal.money.budget import DynamoBudgetStore, DynamoLedgers
from dnd_rag.dal.money.user_budget import DynamoUserBudgetStore
from dnd_rag.errors import StoreUnavailableError
from dnd_rag.logic.alerts.budget_alerts import BudgetAlerts
from dnd_rag.logic.money.budget import LEASE_SECONDS, Budget, Charge
from dnd_rag.logic.money.user_budget import UserBudget
from dnd_rag.logic.money.wallet import BY_IN_FLIGHT, Wallet
from dnd_rag.logic.operations.controls import budget_for_day
from dnd_rag.models.controls import BudgetOverride, Controls
from dnd_rag.models.limits import UserLimits
from dnd_rag.pricing import TokenUsage
from tests.support.clock import Clock
from tests.support.events import http_event, lambda_context, parse

D, NEXT = "2026-11-22", "2026-11-23"
BEFORE_MIDNIGHT = datetime(2026, 11, 22, 23, 59, 50, tzinfo=UTC).timestamp()
MODEL = "gpt-4o-mini"


def per_day(controls):
    return lambda day, configured: budget_for_day(controls, day, configured)


@pytest.fixture
def store(dynamodb, table):
    return DynamoBudgetStore(dynamodb, table)


def test_a_hold_grown_after_midnight_is_judged_against_its_own_days_budget(store):
    # Given day D's budget lowered to 1,000 by an operator, and D+1's raised to 100,000
    controls = Controls(budget_override=BudgetOverride(NEXT, 100_000), earlier_override=BudgetOverride(D, 1_000))
    clock = Clock(BEFORE_MIDNIGHT)
    budget = Budget(store, limit=50_000, clock=clock, effective_limit=per_day(controls))
    hold, _ = budget.open("late", MODEL, 600)
    assert hold is not None

    # When the hold grows after midnight
    clock.now += 15
    grown, totals = budget.resize(hold, 1_200)

    # Then D's budget refuses it (D+1's, or the configured one, would have granted it)
    assert grown is None
    assert totals.day == D
    assert budget.available_to(hold, totals) == 1_000
    assert budget.resize(hold, 1_000)[0] is not None


def test_an_operator_override_for_the_new_day_keeps_yesterdays_for_its_late_holds(make_app, call, table):
    clock = Clock(BEFORE_MIDNIGHT)
    app, container = make_app({"DAILY_BUDGET_USD": "5", "TABLE_NAME": table}, clock=clock)

    def set_budget(usd):
        event = http_event("PUT", "/api/admin/budget", token="dev-admin", body={"daily_budget_usd": usd})
        assert parse(call(app, event))[0] == 200

    set_budget(0.5)  # day D
    clock.now += 20
    set_budget(2.0)  # day D+1

    controls = container.controls.refresh(clock.now)
    assert budget_for_day(controls, D, 5_000_000_000) == 500_000_000
    assert budget_for_day(controls, NEXT, 5_000_000_000) == 2_000_000_000
    assert budget_for_day(controls, "2026-11-24", 5_000_000_000) == 5_000_000_000


class RecordingAlerts(BudgetAlerts):
    """The real threshold logic; delivery recorded instead of sent (the notifier is not under test)."""

    def __init__(self, limit):
        self.due = []
        super().__init__(store=None, ledgers=None, notifier=self, limit=limit, clock=lambda: 0.0)

    def emit(self, *due):
        self.due.extend((item.day, item.key) for item in due)
        return set()  # nothing settled: every state that makes them due shows them again


def test_a_refusal_after_midnight_judges_yesterdays_totals_as_yesterdays(store):
    # Given D spent to 900 of 1,000, and a D query still running at midnight
    alerts = RecordingAlerts(limit=lambda day: {D: 1_000, NEXT: 100_000}[day])
    clock = Clock(BEFORE_MIDNIGHT)
    budget = Budget(store, limit=1_000, clock=clock, observer=alerts)
    spender, _ = budget.open("a", MODEL, 900)
    budget.settle(spender, Charge("a", MODEL, TokenUsage(1, 1, 1), 900))
    late, _ = budget.open("b", MODEL, 50)
    alerts.due.clear()

    # When, after midnight, the late query cannot grow and is refused from D's totals
    clock.now += 30
    grown, totals = budget.resize(late, 500)
    assert grown is None
    refusal = budget.refusal(totals, 500)

    # Then the alerts that state makes due are D's, never D+1's; and its retry is not "wait a day"
    assert alerts.due
    assert {day for day, _ in alerts.due} == {D}
    assert {key for _, key in alerts.due} <= {"80@1000", "100@1000"}
    assert (refusal.cause, refusal.retry_after) == ("spent", 1)


def test_an_orphan_of_a_quiet_day_is_charged_to_its_own_day_model_and_user_by_the_sweep(store, dynamodb, table):
    # Given a container killed at 23:59:50 after its call was billed: its hold is never settled
    clock = Clock(BEFORE_MIDNIGHT)
    budget = Budget(store, limit=10_000, clock=clock)
    users = UserBudget(DynamoUserBudgetStore(dynamodb, table), budget, clock)
    wallet = Wallet(budget, users, clock)
    dead, _ = wallet.open("ghost", UserLimits(daily_nanos=None, max_in_flight=2), MODEL, 700)
    assert dead is not None

    # When no query comes after midnight, only the scheduled sweep runs, once the lease ended
    clock.now += LEASE_SECONDS + 30
    left = Budget(store, limit=10_000, clock=clock).sweep_recent(clock.now)

    # Then D holds no hold, and the orphan is charged in full to D, its model and its user
    assert left == {D: 0, NEXT: 0}
    totals = store.read_totals(D)
    assert (totals.spent, totals.committed, totals.holds) == (700, 700, {})
    ledgers = DynamoLedgers(dynamodb, table)
    assert [(row.name, row.cost) for row in ledgers.models(D)] == [(MODEL, 700)]
    assert ledgers.user(D, "ghost").cost == 700
    assert DynamoUserBudgetStore(dynamodb, table).read(D, "ghost").in_flight == 0
    assert store.read_totals(NEXT).spent == 0


def test_the_first_queries_after_midnight_sweep_yesterday_too(store):
    clock = Clock(BEFORE_MIDNIGHT)
    budget = Budget(store, limit=10_000, clock=clock)
    assert budget.open("ghost", MODEL, 700)[0] is not None  # never settled

    clock.now += LEASE_SECONDS + 30
    assert Budget(store, limit=10_000, clock=clock).open("next", MODEL, 100)[0] is not None

    assert (store.read_totals(D).spent, store.read_totals(D).holds) == (700, {})


def test_a_users_in_flight_slots_do_not_double_across_midnight(dynamodb, table, store):
    clock = Clock(BEFORE_MIDNIGHT)
    budget = Budget(store, limit=10_000, clock=clock)
    wallet = Wallet(budget, UserBudget(DynamoUserBudgetStore(dynamodb, table), budget, clock), clock)
    limits = UserLimits(daily_nanos=None, max_in_flight=2)
    first = wallet.open("busy", limits, MODEL, 100)[0]
    assert first is not None
    assert wallet.open("busy", limits, MODEL, 100)[0] is not None

    clock.now += 15  # D+1: both D queries still run
    refused, seen = wallet.open("busy", limits, MODEL, 100)

    assert refused is None
    assert seen.refused_by == BY_IN_FLIGHT
    assert DynamoUserBudgetStore(dynamodb, table).read(NEXT, "busy").in_flight == 0  # the slot given back
    wallet.settle(first, Charge("busy", MODEL, TokenUsage(1, 1, 1), 50))
    assert wallet.open("busy", limits, MODEL, 100)[0] is not None  # one of D's ended: a slot is free


class ReclaimFails(DynamoBudgetStore):
    def reclaim(self, *args, **kwargs):
        raise StoreUnavailableError("unavailable", retry_after=5, reason="injected: reclaim")


class ReadFails(DynamoBudgetStore):
    def read_totals(self, day):
        raise StoreUnavailableError("unavailable", retry_after=5, reason="injected: read")

    def read_shard(self, day, shard):
        raise StoreUnavailableError("unavailable", retry_after=5, reason="injected: read")


def leave_an_expired_hold(store, clock):
    assert Budget(store, limit=10_000, clock=clock).open("dead", MODEL, 300)[0] is not None
    clock.now += LEASE_SECONDS + 1


def test_a_sweep_that_fails_is_housekeeping_the_caller_still_gets_its_hold(dynamodb, table, store):
    clock = Clock()
    leave_an_expired_hold(store, clock)

    hold, _ = Budget(ReclaimFails(dynamodb, table), limit=10_000, clock=clock).open("caller", MODEL, 200)

    assert hold is not None
    assert hold.id in store.read_totals(D).holds


def test_a_store_error_after_the_grant_never_leaks_the_callers_hold(dynamodb, table, store):
    # Given an expired hold that the next open sweeps, and a store that fails the read after it
    clock = Clock()
    leave_an_expired_hold(store, clock)

    # When the open was granted and then a store error ends the request (answered 503)
    with pytest.raises(StoreUnavailableError):
        Budget(ReadFails(dynamodb, table), limit=10_000, clock=clock).open("victim", MODEL, 400)

    # Then its hold is not left to be charged in full 60 s later
    totals = store.read_totals(D)
    assert [entry.user_id for entry in totals.holds.values()] == []
    assert (totals.spent, totals.committed) == (300, 300)  # only the dead request's orphan


@pytest.mark.parametrize("shards", [1, 4])
@pytest.mark.parametrize("prefix", ["BUDGET#", "LEDGER#"])
def test_a_hold_whose_every_answer_was_lost_is_given_back_on_both_books(
    dynamodb, table, store, emulator_faults, prefix, shards
):
    # Given DynamoDB that applies every write on one book but loses every answer (the SDK's resends too)
    clock = Clock()
    budget = Budget(store, limit=10_000, clock=clock, shards=shards)
    user_store = DynamoUserBudgetStore(dynamodb, table)
    wallet = Wallet(budget, UserBudget(user_store, budget, clock), clock)
    limits = UserLimits(daily_nanos=5_000, max_in_flight=8)

    # When requests' holds raise although they were written (answered 503: OpenAI never called),
    # on whichever shard each landed
    lost = [{"fault": "lost_response", "key_prefix": prefix}]
    with emulator_faults.injecting(lost):
        for _ in range(4):
            with pytest.raises(StoreUnavailableError):
                wallet.open("unlucky", limits, MODEL, 400)

    # Then neither book keeps a hold of them: nothing is charged in full when its lease ends
    totals = store.read_totals(D)
    user = user_store.read(D, "unlucky")
    assert (totals.committed, totals.holds) == (0, {})
    assert (user.committed, user.in_flight, user.holds) == (0, 0, {})


def test_the_scheduled_sweep_event_reaches_the_sweep_through_the_lambda_entry_point(lambda_module, dynamodb):
    # Given a hold opened two minutes ago by a request that died (on the function's own table)
    table = lambda_module.container.settings.table_name
    store = DynamoBudgetStore(dynamodb, table)
    opened_at = time.time() - 120
    dead, _ = Budget(store, limit=10**12, clock=lambda: opened_at).open("sweep-ghost", MODEL, 321)
    assert dead is not None

    # When EventBridge Scheduler invokes the function with the sweep event
    result = lambda_module.lambda_handler({"dnd_rag_task": "sweep"}, lambda_context())

    # Then the dead request's hold is charged in full to its own day, and none is left
    assert result["task"] == "sweep"
    assert dead.day in result["holds_left"]
    totals = store.read_totals(dead.day)
    assert dead.id not in totals.holds
    assert dead.id in totals.orphans
    with pytest.raises(ValueError, match="unknown scheduled task"):
        lambda_module.lambda_handler({"dnd_rag_task": "compact"}, lambda_context())
