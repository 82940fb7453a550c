"""The monthly budget (SPEC §4 "Scale", issue 21) on the serialized emulator and the fake OpenAI: the
month caps each day by what its previous days left, so a month is refused with ``period: "month"``
once spent and neither the books nor what OpenAI billed ever exceed it, under concurrency in several
containers too; its alerts go out once each; an operator's override for the month; usage shows it."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.dal.money.budget import DynamoBudgetStore
from dnd_rag.logic.common.clock import month_end
from dnd_rag.logic.money.budget import Budget, Charge
from dnd_rag.logic.money.month import MonthBudget
from dnd_rag.models.events import event_id
from dnd_rag.pricing import NANOS_PER_USD, TokenUsage
from infra.local.bootstrap import ensure_table
from infra.scripts.round_trips import RoundTripRecorder
from tests.integration.test_budget import ask, sent_alerts, usd
from tests.support.billing import billed_nanos
from tests.support.budget_items import day_total
from tests.support.clock import Clock
from tests.support.events import http_event, parse

MODEL, EMBEDDING_MODEL = "gpt-4o-mini", "text-embedding-3-small"
MONTH = "2026-11"


def at(day, hour=12):
    return datetime(2026, 11, day, hour, tzinfo=UTC).timestamp()


def day_of(n):
    return f"{MONTH}-{n:02d}"


def spent_on(dynamodb, table, day):
    return int(day_total(dynamodb, table, day).get("spent", {"N": "0"})["N"])


def committed_on(dynamodb, table, day):
    return int(day_total(dynamodb, table, day).get("committed", {"N": "0"})["N"])


@pytest.fixture
def priced(openai_env, any_user_auth_url, table, recipient):
    """The stack on the fake OpenAI with a table (a month of books) of the test's own."""
    return {
        **openai_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "ALERT_EMAIL": recipient,
        "MAX_COMPLETION_TOKENS": "60",
        "BUDGET_MIN_COMPLETION_TOKENS": "20",
        # measured here: refusals retried near the end must not run into the rate limit
        "TOKEN_BUCKET_CAPACITY": "10000",
        "DAILY_USER_REQUEST_LIMIT": "10000",
    }


@pytest.fixture
def query_cost(make_app, call, priced, dynamodb, openai_state):
    """What one standard query costs on the fake OpenAI (on a table of its own); the fake's bill is
    reset after, so the test's ground truth is its own."""
    table = f"month-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    app, _ = make_app({**priced, "TABLE_NAME": table, "DAILY_BUDGET_USD": "1000"}, clock=Clock(at(1)))
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")
    assert status == 200
    openai_state.reset()
    return round(body["meta"]["cost"]["query_cost"] * NANOS_PER_USD)


def until_refused(call, app, users, most=200):
    results = []
    for n in range(most):
        results.append(ask(call, app, users[n % len(users)]))
        status, body, _ = results[-1]
        if status == 503 and body.get("reason") == "spent":
            return results
    raise AssertionError(f"never refused as spent in {most} queries")


def billed(openai_state):
    return billed_nanos(openai_state.billed_records(), MODEL, EMBEDDING_MODEL)


def test_the_month_refuses_with_period_month_once_spent_and_neither_books_nor_billed_exceed_it(
    make_app, call, priced, query_cost, openai_state, dynamodb, table
):
    # Given a day of ~6 queries and a month of ~15: below the sum of its days
    daily, monthly = 6 * query_cost, 15 * query_cost
    env = {**priced, "DAILY_BUDGET_USD": str(usd(daily)), "MONTHLY_BUDGET_USD": str(usd(monthly))}
    clock = Clock(at(1))
    app, _ = make_app(env, clock=clock)
    user = [f"u-{uuid.uuid4().hex[:8]}"]

    # When the 1st and the 2nd are spent (each refused by its day, with the new period field)
    for n in (1, 2):
        clock.now = at(n)
        status, body, headers = until_refused(call, app, user)[-1]
        assert (status, body["error"], body["reason"], body["period"]) == (503, "budget_exceeded", "spent", "day")
        assert 0 < int(headers["Retry-After"]) <= 12 * 3600  # to the day's midnight
        assert "daily_total" in body["budget_info"]  # the old fields stay
        assert spent_on(dynamodb, table, day_of(n)) <= daily

    # Then on the 3rd the month leaves less than a day, and refuses with period "month"
    clock.now = at(3)
    results = until_refused(call, app, user)
    status, body, headers = results[-1]
    assert (status, body["reason"], body["period"]) == (503, "spent", "month")
    assert int(headers["Retry-After"]) == month_end(MONTH) - clock.now  # to the next month
    assert body["budget_info"]["monthly_budget"] == round(monthly / 1e9, 6)
    answered_on_3rd = sum(1 for s, _, _ in results if s == 200)
    assert 1 <= answered_on_3rd < 6  # fewer than a day's worth: the month decided
    # and the books never exceed the month, nor does what the fake OpenAI billed; books >= billed
    books = sum(spent_on(dynamodb, table, day_of(n)) for n in (1, 2, 3))
    assert billed(openai_state) <= books <= monthly
    assert books >= monthly - 2 * query_cost  # the month is usable to its last query or so
    # and a later day of the month is refused at once, before any paid call
    clock.now = at(4)
    before = len(openai_state.billed_records())
    status, body, _ = ask(call, app, user[0])
    assert (status, body["period"]) == (503, "month")
    assert len(openai_state.billed_records()) == before


@pytest.mark.parametrize("shards", [1, 4])
def test_concurrent_queries_in_several_containers_never_overshoot_a_tight_month(
    make_app, call, priced, query_cost, openai_state, dynamodb, table, shards
):
    # Given the 1st already spent a little, and a month that leaves the 2nd ~20 queries of a day of 30
    clock = Clock(at(1))
    daily = 30 * query_cost
    env = {**priced, "DAILY_BUDGET_USD": str(usd(daily))}
    env |= {"BUDGET_SHARDS": str(shards), "BUDGET_MIN_SHARD_USD": "0", "BUDGET_HOLDS_PER_SHARD": "6"}
    first, _ = make_app(env, clock=clock)
    for _ in range(4):
        assert ask(call, first, "u-early-bird")[0] == 200
    before = spent_on(dynamodb, table, day_of(1))
    monthly = before + 20 * query_cost
    env |= {"MONTHLY_BUDGET_USD": str(usd(monthly))}
    clock.now = at(2)
    containers = [make_app(env, clock=clock)[0] for _ in range(6)]
    users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(4)]

    # When 6 containers answer 4 users at once until the month refuses
    def container_work(index):
        return until_refused(call, containers[index], users[index % 4 :] + users[: index % 4])

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = [r for batch in pool.map(container_work, range(6)) for r in batch]

    # Then what the fake OpenAI billed never exceeded the month, nor did the books
    assert {status for status, _, _ in results} <= {200, 503}
    assert {b["period"] for s, b, _ in results if s == 503} == {"month"}
    books = before + spent_on(dynamodb, table, day_of(2))
    assert billed(openai_state) <= books <= monthly
    assert committed_on(dynamodb, table, day_of(2)) == spent_on(dynamodb, table, day_of(2))  # no hold left
    assert books >= monthly - (shards + 2) * query_cost  # nearly all of it usable


def test_the_month_alerts_go_out_once_each_on_every_channel_from_two_containers_at_once(
    make_app,
    call,
    base_env,
    any_user_auth_url,
    table,
    recipient,
    aws_endpoint,
    dynamodb,
    receiver,
    sns_topic,
):
    # Given a month of ~12 queries (days of 100), e-mail, SNS and a webhook configured
    url, state = receiver
    topic, published = sns_topic
    clock = Clock(at(5))
    env = {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "ALERT_EMAIL": recipient,
        "ALERT_WEBHOOK_URL": url,
        "ALERT_SNS_TOPIC_ARN": topic,
        "MAX_COMPLETION_TOKENS": "60",
        "BUDGET_MIN_COMPLETION_TOKENS": "20",
    }
    table_probe = f"month-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table_probe)
    probe, _ = make_app({**env, "TABLE_NAME": table_probe, "DAILY_BUDGET_USD": "1000"}, clock=Clock(at(5)))
    cost = round(ask(call, probe, "u-probe")[1]["meta"]["cost"]["query_cost"] * NANOS_PER_USD)
    monthly = 12 * cost
    env |= {"DAILY_BUDGET_USD": str(usd(100 * cost)), "MONTHLY_BUDGET_USD": str(usd(monthly))}
    containers = [make_app(env, clock=clock)[0] for _ in range(2)]
    users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(2)]

    # When both containers answer at once until the month refuses
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = list(pool.map(lambda n: until_refused(call, containers[n], users), range(2)))

    # Then the webhook got the month's 80 % and 100 % events exactly once each, and SNS and SES too
    assert {b["period"] for batch in batches for s, b, _ in batch if s == 503} == {"month"}
    expected = {event_id("budget_threshold", MONTH, f"month:{t}@{monthly}") for t in (80, 100)}
    assert state.delivered_ids() == dict.fromkeys(expected, 1)
    bodies = {b["data"]["threshold"]: b for b in state.delivered_of("budget_threshold")}
    assert bodies[80]["day"] == MONTH
    assert bodies[80]["data"]["period"] == "month"
    assert bodies[80]["data"]["spent_usd"] >= 0.8 * bodies[80]["data"]["budget_usd"]
    assert sorted(m["MessageAttributes"]["event_id"]["StringValue"] for m in published()) == sorted(expected)
    subjects = [m["subject"] for m in sent_alerts(aws_endpoint, recipient)]
    assert sorted(subjects) == sorted(
        [
            f"[dnd_rag] Warning: {bodies[80]['data']['percentage']:.0f} % of the monthly budget used ({MONTH})",
            f"[dnd_rag] Monthly budget exhausted: queries paused until the next month ({MONTH})",
        ]
    ), subjects
    # and no daily alert: the day (100 queries) was never the limit
    assert {b["data"].get("period") for b in state.delivered_of("budget_threshold")} == {"month"}


def admin(call, app, method, path, body=None):
    return parse(call(app, http_event(method, path, token="dev-admin", body=body)))


def test_an_operator_lowers_and_raises_the_month_audited_and_usage_shows_it(make_app, call, base_env, table):
    # Given a month of $10 and days of $5 on the 7th, nothing spent yet
    clock = Clock(at(7))
    env = {**base_env, "TABLE_NAME": table, "DAILY_BUDGET_USD": "5", "MONTHLY_BUDGET_USD": "10"}
    app, _ = make_app(env, clock=clock)
    other, _ = make_app(env, clock=clock)  # another container
    status, usage, _ = parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))
    assert status == 200
    assert usage["month"] == {
        "month": MONTH,
        "spent": 0.0,
        "budget": 10.0,
        "percentage": 0.0,
        "remaining": 10.0,
        "reset_at": "2026-12-01T00:00:00Z",
    }

    # When an operator lowers the month below what one query costs
    status, change, _ = admin(call, app, "PUT", "/api/admin/budget", {"monthly_budget_usd": 0.000001})
    assert status == 200
    assert change["controls"]["month_override"] == {
        "monthly_budget_usd": 0.000001,
        "month": MONTH,
        "until": "2026-12-01T00:00:00Z",
    }
    assert change["audit"]["before"] == {"monthly_budget_usd": 10.0}
    assert change["audit"]["after"]["monthly_budget_usd"] == 0.000001

    # Then queries are refused for the month, in this container and (within 5 s) in the other
    status, body, _ = ask(call, app, "dev-alice")
    assert (status, body["reason"], body["period"]) == (503, "spent", "month")
    clock.now += 5
    assert ask(call, other, "dev-bob")[1]["period"] == "month"

    # When it raises the month again, queries are answered, and the admin report shows the month
    assert admin(call, app, "PUT", "/api/admin/budget", {"monthly_budget_usd": 40})[0] == 200
    clock.now += 5
    assert ask(call, other, "dev-bob")[0] == 200
    status, report, _ = admin(call, app, "GET", "/api/admin/usage")
    month = report["month"]
    assert (month["budget"], month["override"], month["month"]) == (40.0, 40.0, MONTH)
    assert 0 < month["spent"] == report["budget"]["daily_total"]
    assert month["remaining"] == round(40 - month["spent"], 6)
    assert set(month["forecast"]) == {"rate_usd_per_hour", "runs_out_at", "hours_before_month_end"}
    # and both changes are on the audit trail
    entries = admin(call, app, "GET", "/api/admin/audit")[1]["entries"]
    months = [e["after"]["monthly_budget_usd"] for e in entries if e["action"] == "budget"]
    assert months == [40.0, 0.000001]


def test_no_monthly_budget_shows_none_and_a_body_without_either_budget_is_refused(make_app, call, base_env, table):
    app, _ = make_app({**base_env, "TABLE_NAME": table}, clock=Clock(at(8)))
    assert parse(call(app, http_event("GET", "/api/usage", token="dev-alice")))[1]["month"] is None
    assert admin(call, app, "PUT", "/api/admin/budget", {})[0] == 400
    status, error, _ = admin(call, app, "PUT", "/api/admin/budget", {"monthly_budget_usd": 0})
    assert status == 400
    assert "monthly_budget_usd" in {detail["field"] for detail in error["details"]}


@pytest.mark.parametrize("shards", [1, 2])
def test_a_hold_of_yesterday_still_growing_after_midnight_counts_at_its_shards_limit(dynamodb, table, shards):
    # Given days of 800, a month of 1,000, and a query that held 100 at 23:59:50 on the 1st
    store = DynamoBudgetStore(dynamodb, table)
    clock = Clock(at(1, hour=23) + 3590)
    budget = Budget(store, limit=800, clock=clock, shards=shards, month=MonthBudget(store, 1_000, {}.get, clock))
    hold, _ = budget.open("late", MODEL, 100)
    assert hold is not None

    # When the 2nd starts with the hold still open: it may still grow to its shard's limit
    clock.now += 15
    share = 800 // shards
    assert budget.limit_for(day_of(2)) == min(800, 1_000 - share)  # its shard of the 1st counts at its limit
    # and it does grow, against the 1st's budget, and settles
    grown, _ = budget.resize(hold, share)
    assert grown is not None
    budget.settle(grown, Charge("late", MODEL, TokenUsage(1, 1, 1), share))

    # Then the 2nd gets what the month really left (re-read once the 1st holds nothing)
    clock.now += 5
    month = MonthBudget(store, 1_000, {}.get, clock)  # a container that sees the 1st closed
    assert Budget(store, limit=800, clock=clock, shards=shards, month=month).limit_for(day_of(2)) == min(
        800, 1_000 - share
    )
    # and however the 2nd spends, the month holds: the 1st's final spend plus the 2nd's limit
    assert spent_on(dynamodb, table, day_of(1)) + budget.limit_for(day_of(2)) <= 1_000


def test_an_operator_lowering_the_month_below_what_today_holds_closes_every_shard(make_app, call, table):
    # Given days of $1 over 4 shards on the 9th, a month of $10, and money held unevenly
    env = {"TABLE_NAME": table, "DAILY_BUDGET_USD": "1", "MONTHLY_BUDGET_USD": "10"}
    env |= {"BUDGET_SHARDS": "4", "BUDGET_MIN_SHARD_USD": "0"}
    clock = Clock(at(9))
    app, container = make_app(env, clock=clock)
    budget = container.budget
    held = [budget.open(f"u-{uuid.uuid4().hex[:6]}", MODEL, 100_000_000)[0] for _ in range(5)]
    assert all(hold is not None for hold in held)
    committed = {n: s.committed for n, s in budget._store.read_shards(day_of(9)).items()}

    # When an operator lowers the month to $0.30: less than today holds ($0.50)
    status, _, _ = admin(call, app, "PUT", "/api/admin/budget", {"monthly_budget_usd": 0.3})
    assert status == 200

    # Then the day's shard limits add up to what the month leaves, none above what it holds: nothing more is admitted
    limits = budget.shard_limits(day_of(9))
    assert sum(limits) == 300_000_000
    assert all(limit <= committed.get(n, 0) for n, limit in enumerate(limits))
    assert budget.open("late", MODEL, 1)[0] is None
    assert budget.period_of(day_of(9)) == "month"


def test_the_month_adds_no_round_trip_and_no_write_to_an_answered_query_on_a_warm_container(
    make_app, call, base_env, any_user_auth_url, table, dynamodb
):
    # Given a month with earlier days on the books, and a container that has read them once
    env = {**base_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url, "MONTHLY_BUDGET_USD": "25"}
    env |= {"BUDGET_SHARDS": "1"}
    clock = Clock(at(1))
    first, _ = make_app(env, clock=clock)
    assert ask(call, first, "u-early")[0] == 200
    clock.now = at(6)
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    app, _ = make_app(env, clock=clock, dynamodb_client=client)
    token = f"u-{uuid.uuid4().hex}"
    assert ask(call, app, token)[0] == 200  # cold: the month's previous days read (once)
    trips = RoundTripRecorder(client)

    # When it answers the next query
    trips.start()
    status, body, _ = ask(call, app, token)
    trips.stop()

    # Then the same 4 steps as without a month, and the month is in the answer's budget
    assert status == 200
    steps = [sorted(step) for step in trips.steps()]
    assert steps == [["UpdateItem"], ["UpdateItem", "UpdateItem"], ["TransactWriteItems"], ["UpdateItem"]]
    assert body["meta"]["cost"]["daily_budget"] == 1.0  # the month ($25, $24.99… left) does not cap the day


def test_a_new_month_starts_whole_while_the_last_days_late_hold_is_judged_against_its_own_month(dynamodb, table):
    # Given November's last day, its month nearly spent, and a query holding money at 23:59:50
    store = DynamoBudgetStore(dynamodb, table)
    clock = Clock(at(29))
    budget = Budget(store, limit=800, clock=clock, month=MonthBudget(store, 1_000, {}.get, clock))
    early = budget.open("early", MODEL, 700)[0]
    budget.settle(early, Charge("early", MODEL, TokenUsage(1, 1, 1), 700))
    clock.now = at(30, hour=23) + 3590
    late, _ = budget.open("late", MODEL, 100)
    assert late is not None

    # When December starts: it has its whole budget, with no previous day counted
    clock.now += 15
    assert budget.limit_for("2026-12-01") == 800
    # while November's late hold still grows only within what November left its last day (300)
    assert budget.resize(late, 301)[0] is None
    assert budget.resize(late, 300)[0] is not None
