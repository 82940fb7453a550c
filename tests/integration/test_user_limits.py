"""Each user's own limits on the serialized emulator: the daily dollar cap is exact under
concurrency and against what the fake OpenAI billed, the in-flight limit is exact, a dead
request's slot comes back after its lease and its hold is charged in both books, and lost
responses, throttles and conflicts on the user's item keep the books exact (issue 11, items 1-2)."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.dal.money.budget import DynamoBudgetStore, DynamoLedgers
from dnd_rag.dal.money.user_budget import DynamoUserBudgetStore
from dnd_rag.logic.money.budget import LEASE_SECONDS, Budget, Charge
from dnd_rag.logic.money.user_budget import UserBudget
from dnd_rag.logic.money.wallet import BY_IN_FLIGHT, Wallet
from dnd_rag.models.limits import UserLimits
from dnd_rag.pricing import NANOS_PER_USD, TokenUsage
from infra.local.bootstrap import ensure_table
from infra.scripts.round_trips import RoundTripRecorder
from tests.support.billing import billed_nanos
from tests.support.budget_items import day_total
from tests.support.clock import Clock
from tests.support.events import http_event, parse

QUESTION = "How many experience points does a fighter need to become 9th level?"
CHAT_MODEL, EMBEDDING_MODEL = "gpt-4o-mini", "text-embedding-3-small"


def today():
    return datetime.now(UTC).strftime("%Y-%m-%d")


def user_item(dynamodb, table, user, day=None):
    key = {"pk": {"S": f"LEDGER#{day or today()}"}, "sk": {"S": f"USER#{user}"}}
    return dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})


def total_item(dynamodb, table, day=None):
    return day_total(dynamodb, table, day or today())


def n(item, name):
    return int(item.get(name, {}).get("N", 0))


def ask(call, app, token, question=QUESTION, k=3):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": question, "k": k})))


def tag_openai(container, tag):
    """Send this container's OpenAI calls under ``/t/<tag>/``: the fake's billed records then say whose they are."""
    client = container._openai_client()
    scheme, _, rest = str(client.base_url).partition("://")
    host, _, path = rest.partition("/")
    client.base_url = f"{scheme}://{host}/t/{tag}/{path}"


def billed_for(state, tag):
    return billed_nanos([r for r in state.billed_records() if f"/t/{tag}/" in r["path"]], CHAT_MODEL, EMBEDDING_MODEL)


def user_env(openai_env, any_user_auth_url, table, **extra):
    return {
        **openai_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "MAX_COMPLETION_TOKENS": "60",
        "BUDGET_MIN_COMPLETION_TOKENS": "20",
        "DAILY_BUDGET_USD": "1000",
        **extra,
    }


def one_query_cost(make_app, call, env, dynamodb, openai_state):
    """What one standard query really costs (billed by the fake OpenAI), on a table of its own."""
    scratch = f"user-cal-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, scratch)
    app, _ = make_app({**env, "TABLE_NAME": scratch})
    status, body, _ = ask(call, app, f"u-cal-{uuid.uuid4().hex[:8]}")
    assert status == 200, body
    cost = billed_nanos(openai_state.billed_records(), CHAT_MODEL, EMBEDDING_MODEL)
    openai_state.reset()
    return cost


def test_thirty_concurrent_requests_of_one_user_never_pass_the_cap_and_use_it_up_and_another_user_is_answered(
    make_app, call, openai_env, any_user_auth_url, table, dynamodb, openai_state
):
    # Given a per-user cap worth about 5 queries, a global budget far above it, no in-flight limit in the way
    env = user_env(openai_env, any_user_auth_url, table, MAX_IN_FLIGHT_PER_USER="100")
    cost = one_query_cost(make_app, call, env, dynamodb, openai_state)
    cap = 5 * cost + cost // 2
    env["USER_DAILY_BUDGET_USD"] = str(Decimal(cap) / NANOS_PER_USD)
    alice, bob = f"u-alice-{uuid.uuid4().hex[:6]}", f"u-bob-{uuid.uuid4().hex[:6]}"
    apps = []
    for _ in range(30):
        app, container = make_app(env)
        tag_openai(container, alice)
        apps.append(app)
    start = threading.Barrier(len(apps))

    # When 30 requests of one user arrive at once, and each asks again until the cap is spent
    # (one user per test process: Powertools keeps the current event in a class attribute, so
    # in-process containers answering two users at once could mix their events up)
    def work(app):
        start.wait()
        results = []
        for _ in range(20):
            results.append(ask(call, app, alice))
            status, body, _ = results[-1]
            if status == 429 and body.get("reason") == "spent":
                break
        return results

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        alice_results = [r for results in pool.map(work, apps) for r in results]

    # Then the user's books never passed the cap, nor did what OpenAI billed for the user
    statuses = {(status, body.get("error"), body.get("reason")) for status, body, _ in alice_results}
    assert statuses <= {
        (200, None, None),
        (429, "user_budget_exceeded", "spent"),
        (429, "user_budget_exceeded", "in_flight"),
    }, statuses
    item = user_item(dynamodb, table, alice)
    spent, billed = n(item, "cost"), billed_for(openai_state, alice)
    figures = {"cap": cap, "spent": spent, "billed": billed, "query": cost, "statuses": statuses}
    assert billed <= cap, figures
    assert spent <= cap, figures
    assert spent >= billed, figures  # every billed cent on the user's books
    assert n(item, "ucommitted") == spent, figures  # the cap's use is the spend, no hold left
    assert n(item, "inflight") == 0, figures
    assert not [name for name in item if name.startswith("uh_")], figures
    # and the cap was used up to within one query
    assert cap - spent < cost, figures
    assert any(status == 429 and body["reason"] == "spent" for status, body, _ in alice_results)
    refused = next(body for status, body, _ in alice_results if status == 429 and body["reason"] == "spent")
    assert set(refused["rate_info"]) == {"retry_after", "reset_at"}
    # and another user is still answered, at the user's own cost
    bob_app, bob_container = make_app(env)
    tag_openai(bob_container, bob)
    assert [ask(call, bob_app, bob)[0] for _ in range(4)] == [200] * 4
    assert n(user_item(dynamodb, table, bob), "cost") == billed_for(openai_state, bob)
    # and the two users' ledgers add up to the total
    assert n(total_item(dynamodb, table), "spent") == spent + n(user_item(dynamodb, table, bob), "cost")


def test_the_in_flight_limit_is_exact_and_a_refused_request_consumes_nothing(
    make_app, call, openai_env, any_user_auth_url, table, dynamodb, openai_state
):
    # Given MAX_IN_FLIGHT_PER_USER=2 and an OpenAI that takes a while to answer each call
    env = user_env(openai_env, any_user_auth_url, table, MAX_IN_FLIGHT_PER_USER="2", OPENAI_TIMEOUT_SECONDS="5")
    user = f"u-busy-{uuid.uuid4().hex[:6]}"
    apps = [make_app(env)[0] for _ in range(6)]
    warm = f"u-warm-{uuid.uuid4().hex[:6]}"
    ask(call, apps[0], warm)  # the corpus connection and tokenizer are warm
    for app in apps:  # the user's token validated in every container: the sign-in is not what is measured
        assert parse(call(app, http_event("GET", "/api/usage", token=user)))[0] == 200
    openai_state.reset()
    openai_state.control({"delay": 1.0})
    start = threading.Barrier(len(apps))

    # When 6 requests of the user arrive at once
    def work(app):
        start.wait()
        return ask(call, app, user)

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        results = list(pool.map(work, apps))
    openai_state.control({"delay": 0})

    # Then exactly 2 ran (never more at once at OpenAI's end), the others were refused at once
    answered = [body for status, body, _ in results if status == 200]
    refused = [(status, body, headers) for status, body, headers in results if status != 200]
    assert len(answered) == 2, [(s, b.get("error")) for s, b, _ in results]
    assert openai_state.peak_active == 2
    assert {(status, body["error"]) for status, body, _ in refused} == {(429, "too_many_in_flight")}
    assert all(1 <= int(headers["Retry-After"]) <= 5 for _, _, headers in refused)
    # and the refused requests consumed no admission and no money
    usage = parse(call(apps[0], http_event("GET", "/api/usage", token=user)))[1]
    assert usage["today"]["requests"] == 2
    assert usage["user_budget"]["in_flight"] == 0
    assert len(openai_state.billed_records()) == 4  # the two answered queries' embedding and chat calls
    item = user_item(dynamodb, table, user)
    assert n(item, "cost") == billed_nanos(openai_state.billed_records(), CHAT_MODEL, EMBEDDING_MODEL)
    assert n(item, "inflight") == 0
    total = total_item(dynamodb, table)
    assert n(total, "committed") == n(total, "spent") == n(item, "cost") + n(user_item(dynamodb, table, warm), "cost")


def test_usage_and_meta_show_the_users_cap_and_the_global_budget(make_app, call, base_env, any_user_auth_url, table):
    env = {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "USER_DAILY_BUDGET_USD": "0.002",
        "DAILY_BUDGET_USD": "1",
    }
    app, _ = make_app(env)
    token = f"u-{uuid.uuid4().hex[:8]}"

    status, answer, _ = ask(call, app, token)
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]

    assert status == 200, answer
    cost = answer["meta"]["cost"]
    assert cost["user_daily_budget"] == 0.002
    assert cost["user_daily_total"] == cost["query_cost"]
    assert cost["user_remaining"] == pytest.approx(0.002 - cost["query_cost"], abs=1e-6)
    assert usage["user_budget"]["daily_budget"] == 0.002
    assert usage["user_budget"]["daily_total"] == cost["user_daily_total"]
    assert usage["user_budget"]["remaining"] == cost["user_remaining"]
    assert (usage["user_budget"]["in_flight"], usage["user_budget"]["max_in_flight"]) == (0, 1000)
    assert usage["budget"]["daily_budget"] == 1.0
    assert usage["budget"]["daily_total"] == cost["daily_total"]


def test_a_plan_gets_its_own_cap_and_in_flight_limit(make_app, call, base_env, any_user_auth_url, table):
    env = {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "USER_DAILY_BUDGET_USD": "0.000001",  # the default plan cannot afford a single query
        "PLAN_LIMITS": '{"pro": {"daily_usd": "0.5", "max_in_flight": 3}}',
    }
    app, _ = make_app(env)
    suffix = uuid.uuid4().hex[:8]

    default = ask(call, app, f"u-free{suffix}")
    pro = ask(call, app, f"u-paid{suffix}.pro")
    usage = parse(call(app, http_event("GET", "/api/usage", token=f"u-paid{suffix}.pro")))[1]

    assert (default[0], default[1]["error"], default[1]["reason"]) == (429, "user_budget_exceeded", "spent")
    assert pro[0] == 200, pro[1]
    assert (usage["user_budget"]["daily_budget"], usage["user_budget"]["max_in_flight"]) == (0.5, 3)


def test_a_user_refused_as_spent_is_refused_again_by_the_same_container_without_a_round_trip(
    make_app, call, base_env, any_user_auth_url, table
):
    env = {**base_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url, "USER_DAILY_BUDGET_USD": "0.000001"}
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    app, _ = make_app(env, dynamodb_client=client)
    token = f"u-{uuid.uuid4().hex[:8]}"
    first = ask(call, app, token)
    trips = RoundTripRecorder(client)

    trips.start()
    again = ask(call, app, token)
    trips.stop()

    assert (first[0], first[1]["reason"]) == (429, "spent")
    assert (again[0], again[1]["error"], again[1]["reason"]) == (429, "user_budget_exceeded", "spent")
    assert trips.calls == []
    assert parse(call(app, http_event("GET", "/api/usage", token=token)))[1]["today"]["requests"] == 0


# --- the logic against the store, with an injected clock ---------------------------------------


def wallet_on(dynamodb, table, clock, limit=10_000):
    budget = Budget(DynamoBudgetStore(dynamodb, table), limit=limit, clock=clock)
    users = UserBudget(DynamoUserBudgetStore(dynamodb, table), budget, clock)
    return Wallet(budget, users, clock)


def test_a_dead_requests_slot_comes_back_after_its_lease_and_its_hold_is_charged_in_both_books(dynamodb, table):
    clock = Clock()
    day = "2026-11-22"
    wallet = wallet_on(dynamodb, table, clock)
    limits = UserLimits(daily_nanos=5_000, max_in_flight=1)
    dead, _ = wallet.open("ghost", limits, "gpt-4o-mini", 600)  # its container dies: never settled
    assert dead is not None

    # While its lease runs, its slot is taken
    refused, seen = wallet.open("ghost", limits, "gpt-4o-mini", 100)
    assert refused is None
    assert seen.refused_by == BY_IN_FLIGHT

    # After it, the user's next request reclaims it: charged in full in the total and the user's books
    clock.now += LEASE_SECONDS + 1
    hold, seen = wallet.open("ghost", limits, "gpt-4o-mini", 100)
    assert hold is not None
    assert seen.user.spent == 600
    item = user_item(dynamodb, table, "ghost", day)
    assert (n(item, "cost"), n(item, "ucommitted"), n(item, "inflight")) == (600, 700, 1)
    assert n(total_item(dynamodb, table, day), "spent") == 600

    # and a late settle of the dead request corrects both down to its real cost
    wallet.settle(dead, Charge("ghost", "gpt-4o-mini", TokenUsage(10, 5, 1), cost=250))
    item = user_item(dynamodb, table, "ghost", day)
    assert (n(item, "cost"), n(item, "ucommitted"), n(item, "inflight")) == (250, 350, 1)
    assert n(total_item(dynamodb, table, day), "spent") == 250
    wallet.settle(hold, Charge("ghost", "gpt-4o-mini", TokenUsage(1, 1, 1), cost=80))
    item = user_item(dynamodb, table, "ghost", day)
    assert (n(item, "cost"), n(item, "ucommitted"), n(item, "inflight")) == (330, 330, 0)
    assert not [name for name in item if name.startswith("uh_")]
    total = total_item(dynamodb, table, day)
    assert n(total, "spent") == n(total, "committed") == 330


def test_a_dead_requests_slot_is_also_freed_by_another_users_sweep(dynamodb, table):
    clock = Clock()
    day = "2026-11-22"
    wallet = wallet_on(dynamodb, table, clock)
    limits = UserLimits(daily_nanos=None, max_in_flight=1)
    assert wallet.open("crashed", limits, "gpt-4o-mini", 400)[0] is not None

    clock.now += LEASE_SECONDS + 1
    assert wallet.open("someone-else", limits, "gpt-4o-mini", 100)[0] is not None  # the global sweep

    item = user_item(dynamodb, table, "crashed", day)
    assert (n(item, "cost"), n(item, "ucommitted"), n(item, "inflight")) == (400, 400, 0)
    assert wallet.open("crashed", limits, "gpt-4o-mini", 100)[0] is not None  # the slot is free


def test_a_refused_global_hold_gives_the_users_slot_back_and_the_operator_reset_forgives_the_cap(dynamodb, table):
    clock = Clock()
    day = "2026-11-22"
    wallet = wallet_on(dynamodb, table, clock, limit=1_000)
    limits = UserLimits(daily_nanos=2_000, max_in_flight=1)

    assert wallet.open("big", limits, "gpt-4o-mini", 1_500)[0] is None  # the global budget refuses

    item = user_item(dynamodb, table, "big", day)
    assert (n(item, "ucommitted"), n(item, "inflight")) == (0, 0)
    hold, _ = wallet.open("big", limits, "gpt-4o-mini", 900)
    assert hold is not None
    wallet.settle(hold, Charge("big", "gpt-4o-mini", TokenUsage(1, 1, 1), cost=900))
    second, seen = wallet.open("big", limits, "gpt-4o-mini", 1_200)
    assert second is None  # 900 spent + 1200 > the user's 2000
    assert wallet.users.refusal("big", seen.user, limits, 1_200).cause == "spent"

    wallet.users.reset_spend(day, "big")

    item = user_item(dynamodb, table, "big", day)
    assert (n(item, "cost"), n(item, "ucommitted")) == (900, 0)  # the ledger keeps the spend
    budget_only = wallet_on(dynamodb, table, clock, limit=10_000)
    assert budget_only.open("big", limits, "gpt-4o-mini", 1_200)[0] is not None


def test_lost_responses_throttles_and_conflicts_on_the_users_item_keep_the_books_exact(
    make_app, call, base_env, any_user_auth_url, table, dynamodb, emulator_faults
):
    # Given a user with a cap and 2 queries at once, and DynamoDB losing answers to applied writes,
    # throttling, and reporting conflicts on the user's item, and holding each transaction open for
    # a while (the user's own hold writes then meet the settle's transaction)
    cap_usd = Decimal("0.01")
    env = {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "USER_DAILY_BUDGET_USD": str(cap_usd),
        "MAX_IN_FLIGHT_PER_USER": "2",
        "BUDGET_LEASE_SECONDS": "4",  # longer than any request here
    }
    containers = [make_app(env) for _ in range(2)]
    apps = [app for app, _ in containers]
    user = f"u-faulty-{uuid.uuid4().hex[:6]}"
    emulator_faults.set(
        [
            {"fault": "lost_response", "key_prefix": "LEDGER#", "probability": 0.3},
            {"fault": "throttle", "key_prefix": "LEDGER#", "probability": 0.2},
            {"fault": "conflict", "key_prefix": "LEDGER#", "probability": 0.2},
        ],
        seed=11,
        transaction_window_ms=30,
    )

    # When the user asks 8 questions, 2 at a time
    def work(app):
        return [ask(call, app, user) for _ in range(4)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [r for batch in pool.map(work, apps) for r in batch]
    injected = emulator_faults.injected()
    emulator_faults.clear()
    time.sleep(5)  # a settle that ran out of retries leaves its hold: swept once its lease ended
    containers[0][1].budget.sweep_recent(time.time())

    # Then every answer is counted once, in the user's books and in the total, and no slot is left taken
    assert all(sum(injected.get(kind, {}).values()) > 0 for kind in ("lost_response", "throttle", "conflict"))
    statuses = [(status, body.get("error")) for status, body, _ in results]
    assert set(statuses) <= {(200, None), (503, "service_unavailable"), (429, "too_many_in_flight")}, statuses
    assert statuses.count((200, None)) >= 5, statuses
    item = user_item(dynamodb, table, user)
    total = total_item(dynamodb, table)
    ledgers = DynamoLedgers(dynamodb, table)
    assert n(item, "cost") == n(item, "ucommitted") == n(total, "spent") == n(total, "committed")
    assert n(item, "cost") <= int(cap_usd * NANOS_PER_USD)
    assert n(item, "inflight") == 0
    assert not [name for name in item if name.startswith("uh_")]
    assert sum(row.requests for row in ledgers.all_users(today())) == n(total, "requests")
    reported = sum(round(body["meta"]["cost"]["query_cost"] * NANOS_PER_USD) for s, body, _ in results if s == 200)
    assert n(item, "cost") >= reported - 500 * len(results)
