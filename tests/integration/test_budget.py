"""The global daily budget on the serialized emulator: never overshot under concurrency, exact
ledgers, alerts once per threshold (read back from the emulator's SES), orphan expiry, day rollover."""

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest

from dnd_rag.dal.budget import DynamoBudgetStore, DynamoLedgers
from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.errors import BudgetExceededError
from dnd_rag.logic.budget import LEASE_SECONDS, Budget, Charge, CostBound
from dnd_rag.pricing import NANOS_PER_USD, TokenUsage
from dnd_rag.settings import load_settings
from infra.local.bootstrap import ensure_table
from tests.support.clock import Clock
from tests.support.events import http_event, parse
from tests.support.servers import free_port

QUESTION = "How many experience points does a fighter need to become 9th level?"
K = 3


@pytest.fixture
def table(dynamodb):
    """A table of its own: the budget is global per day, so each test needs a fresh one."""
    name = f"budget-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, name)
    return name


@pytest.fixture
def recipient():
    address = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    boto3.client("ses").verify_email_identity(EmailAddress=address)
    return address


def sent_alerts(aws_endpoint, recipient):
    with urllib.request.urlopen(f"{aws_endpoint}/moto-api/data.json") as response:
        messages = json.load(response)["ses"]["Message"]
    return [m for m in messages if recipient in m["destinations"]["ToAddresses"]]


def reservation_bound(env):
    settings = load_settings(env)
    return CostBound(settings.price_book, settings.max_completion_tokens).for_question(QUESTION, K)


def budget_env(base_env, any_user_auth_url, table, recipient, bounds):
    env = {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "ALERT_EMAIL": recipient,
        "MAX_COMPLETION_TOKENS": "60",
    }
    env["DAILY_BUDGET_USD"] = str(Decimal(bounds * reservation_bound(env)) / NANOS_PER_USD)
    return env


def ask(call, app, token):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": QUESTION, "k": K})))


def test_concurrent_queries_until_exhaustion_never_overshoot_and_alert_once_per_threshold(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint
):
    # Given a budget of 6 reservation bounds (a query really costs about a tenth of its bound)
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=6)
    limit = int(Decimal(env["DAILY_BUDGET_USD"]) * NANOS_PER_USD)
    bound = reservation_bound(env)
    containers = [make_app(env)[0] for _ in range(10)]
    users = [f"u-{uuid.uuid4().hex[:10]}" for _ in range(5)]
    store = DynamoBudgetStore(dynamodb, table)

    # When 10 containers answer 5 users at once, 10 queries each at least, until the budget cannot
    # cover a query
    def container_work(index):
        results = []
        for n in range(60):
            results.append(ask(call, containers[index], users[(index + n) % 5]))
            if n >= 9 and results[-1][0] == 503 and store.read_totals(today()).spent + bound > limit:
                break
        return results

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = [r for batch in pool.map(container_work, range(10)) for r in batch]

    # Then the budget held, exactly
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}
    assert len(results) >= 100
    assert statuses.count(200) > 20
    assert store.read_totals(today()).spent + bound > limit  # the budget really ran out
    assert {body["error"] for status, body, _ in results if status == 503} == {"budget_exceeded"}
    total = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"BUDGET#{today()}"}, "sk": {"S": "TOTAL"}})["Item"]
    spent, committed = int(total["spent"]["N"]), int(total["committed"]["N"])
    assert spent <= limit  # never overshot
    assert committed == spent  # no reservation left open
    assert not [name for name in total if name.startswith("res_")]
    # and the answered queries' own reported costs add up to the books
    reported = sum(
        round(body["meta"]["cost"]["query_cost"] * NANOS_PER_USD) for status, body, _ in results if status == 200
    )
    assert abs(reported - spent) <= statuses.count(200) * 500  # query_cost is rounded to 1e-6 USD
    ledgers = DynamoLedgers(dynamodb, table)
    users_rows = ledgers.top_users(today(), 100)
    assert sum(row.cost for row in users_rows) == spent
    assert sum(row.cost for row in ledgers.models(today())) == spent
    assert sum(row.requests for row in users_rows) == statuses.count(200)
    # and exactly one alert per threshold went out
    subjects = [m["subject"] for m in sent_alerts(aws_endpoint, recipient)]
    assert len(subjects) == 2, subjects
    assert sum("Warning" in s for s in subjects) == 1
    assert sum("exhausted" in s for s in subjects) == 1
    body = next(m["body"] for m in sent_alerts(aws_endpoint, recipient) if "Warning" in m["subject"])
    assert "Top 5 users by cost today:" in body
    assert sum(user in body for user in users) == 5


def today():
    return datetime.now(UTC).strftime("%Y-%m-%d")


def test_a_budget_refusal_is_503_with_budget_info_and_costs_no_rate_limit_token(
    make_app, call, base_env, any_user_auth_url, table, recipient
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=1)
    env["DAILY_BUDGET_USD"] = str(Decimal(env["DAILY_BUDGET_USD"]) - Decimal("0.000000001"))  # just short
    app, _ = make_app({**env, "TOKEN_BUCKET_CAPACITY": "15", "DAILY_USER_REQUEST_LIMIT": "30"})
    token = f"u-{uuid.uuid4().hex}"

    status, body, headers = ask(call, app, token)

    assert (status, body["error"]) == (503, "budget_exceeded")
    assert body["budget_info"] == {
        "daily_total": 0.0,
        "daily_budget": round(float(env["DAILY_BUDGET_USD"]), 6),
        "percentage": 0.0,
    }
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    assert int(headers["Retry-After"]) == pytest.approx(midnight - time.time(), abs=5)
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["daily_remaining"]) == (15, 30)


def test_an_upstream_failure_releases_the_reservation(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=4)
    app, _ = make_app({**env, "CHROMA_PORT": str(free_port())})

    assert ask(call, app, f"u-{uuid.uuid4().hex}")[0] == 502

    total = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"BUDGET#{today()}"}, "sk": {"S": "TOTAL"}})["Item"]
    assert (int(total["committed"]["N"]), int(total["spent"]["N"])) == (0, 0)


def test_ses_down_still_answers_and_the_alert_goes_out_on_a_later_request(
    make_app, call, base_env, any_user_auth_url, table, recipient, aws_endpoint
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=8)
    dead_ses = boto3.client("ses", endpoint_url=f"http://127.0.0.1:{free_port()}", config=CLIENT_CONFIG)
    broken, _ = make_app(env, ses_client=dead_ses)
    token = f"u-{uuid.uuid4().hex}"

    statuses = []
    while not statuses or statuses[-1] == 200:  # spend until the budget refuses
        statuses.append(ask(call, broken, token)[0])
        assert len(statuses) < 200
    assert statuses[-1] == 503
    assert sent_alerts(aws_endpoint, recipient) == []  # SES was down: nothing sent, every query answered

    healthy, _ = make_app(env)
    assert ask(call, healthy, token)[0] == 503  # still exhausted; this request delivers what is owed

    subjects = sorted(m["subject"] for m in sent_alerts(aws_endpoint, recipient))
    assert len(subjects) == 2
    assert "exhausted" in subjects[0] or "exhausted" in subjects[1]


def test_the_admin_report_is_for_admins_and_adds_up(make_app, call, base_env, any_user_auth_url, table, recipient):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=20)
    app, _ = make_app(env)
    for token in ("u-admin-a", "u-admin-b", "u-admin-b"):
        assert ask(call, app, token)[0] == 200

    refused = parse(call(app, http_event("GET", "/api/admin/usage", token="u-admin-a")))
    admin_app, _ = make_app(env)  # the dev auth server knows dev-admin (role admin)
    admin_app, _ = make_app({**env, "AUTH_API_URL": base_env["AUTH_API_URL"]})
    status, report, _ = parse(call(admin_app, http_event("GET", "/api/admin/usage", token="dev-admin")))

    assert (refused[0], refused[1]["error"]) == (403, "forbidden")
    assert status == 200
    assert [(u["name"], u["requests"]) for u in report["top_users"]] == [("u-admin-b", 2), ("u-admin-a", 1)]
    assert report["models"][0]["name"] == "offline-extractive"
    assert report["models"][0]["requests"] == 3
    assert report["budget"]["daily_total"] == pytest.approx(sum(u["cost"] for u in report["top_users"]), abs=1e-6)
    assert report["in_flight_reserved"] == 0


def test_usage_shows_todays_tokens_cost_and_the_global_budget(
    make_app, call, base_env, any_user_auth_url, table, recipient
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=20)
    app, _ = make_app(env)
    token = f"u-{uuid.uuid4().hex}"
    _, answer, _ = ask(call, app, token)

    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]

    assert usage["today"]["requests"] == 1
    assert usage["today"]["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert usage["today"]["cost"] == answer["meta"]["cost"]["query_cost"]
    assert usage["budget"]["daily_total"] == answer["meta"]["cost"]["daily_total"]
    assert usage["budget"]["daily_budget"] == round(float(env["DAILY_BUDGET_USD"]), 6)
    assert 0 < usage["budget"]["percentage"] < 100


def test_an_answered_query_costs_three_round_trips_on_a_warm_container(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, bounds=50)
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    app, _ = make_app(env, dynamodb_client=client)
    token = f"u-{uuid.uuid4().hex}"
    assert ask(call, app, token)[0] == 200  # cold: token validated and cached, limiter guess warmed
    sent = []
    client.meta.events.register("before-send.dynamodb", lambda **kwargs: sent.append(kwargs["event_name"]))

    assert ask(call, app, token)[0] == 200

    assert [name.rsplit(".", 1)[1] for name in sent] == ["UpdateItem", "UpdateItem", "TransactWriteItems"]


# --- the budget logic against the store, with an injected clock -------------------------------


@pytest.fixture
def store(dynamodb, table):
    return DynamoBudgetStore(dynamodb, table)


def test_an_orphaned_reservation_expires_instead_of_holding_the_budget(store):
    clock = Clock()
    budget = Budget(store, limit=1000, clock=clock)
    budget.reserve(600)  # its container dies: never settled, never released

    with pytest.raises(BudgetExceededError):
        budget.reserve(600)

    clock.now += LEASE_SECONDS + 1
    reservation = budget.reserve(600)  # the refusal path swept the expired lease
    assert reservation.totals.committed == 600


def test_the_next_utc_day_starts_fresh(store):
    clock = Clock(datetime(2026, 11, 22, 23, 59, 0, tzinfo=UTC).timestamp())
    budget = Budget(store, limit=1000, clock=clock)
    budget.reserve(900)
    with pytest.raises(BudgetExceededError) as raised:
        budget.reserve(900)
    assert raised.value.retry_after == 60

    clock.now += 120
    assert budget.reserve(900).day == "2026-11-23"


def test_a_query_larger_than_the_whole_budget_is_refused(store):
    with pytest.raises(BudgetExceededError):
        Budget(store, limit=100, clock=Clock()).reserve(101)


def test_a_query_settling_after_its_lease_was_swept_is_still_charged(store):
    clock = Clock()
    budget = Budget(store, limit=1000, clock=clock)
    slow = budget.reserve(600)  # a query that outlives its lease
    clock.now += LEASE_SECONDS + 1
    budget.reserve(600)  # refused at first; sweeping the expired lease frees room

    budget.settle(slow, Charge("late-user", "gpt-4o-mini", TokenUsage(10, 5, 1), cost=250))

    totals = budget.totals()
    assert totals.spent == 250  # the late answer's real cost is on the books
    assert totals.committed == 600 + 250  # the new reservation plus what was spent
