"""The global daily budget on the serialized emulator: never overshot under concurrency, nearly
all of it usable, exact ledgers, alerts once per threshold (read back from the emulator's SES),
degradation to the floors, refusal reasons, orphans charged, idempotent under DynamoDB faults."""

import json
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest

from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.dal.money.budget import DynamoBudgetStore, DynamoLedgers
from dnd_rag.logic.money.budget import LEASE_SECONDS, Budget, Charge
from dnd_rag.pricing import NANOS_PER_USD, TokenUsage
from infra.local.bootstrap import ensure_table
from infra.scripts.round_trips import RoundTripRecorder
from tests.support.budget_items import day_total, shard_items
from tests.support.clock import Clock
from tests.support.events import http_event, parse
from tests.support.servers import free_port

QUESTION = "How many experience points does a fighter need to become 9th level?"
LEASE = 4  # seconds: longer than any request here
K = 3


def sent_alerts(aws_endpoint, recipient):
    with urllib.request.urlopen(f"{aws_endpoint}/moto-api/data.json") as response:
        messages = json.load(response)["ses"]["Message"]
    return [m for m in messages if recipient in m["destinations"]["ToAddresses"]]


def today():
    return datetime.now(UTC).strftime("%Y-%m-%d")


def total_item(dynamodb, table):
    return day_total(dynamodb, table, today())


def ask(call, app, token, k=K, question=QUESTION):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": question, "k": k})))


def budget_env(base_env, any_user_auth_url, table, recipient, usd):
    return {
        **base_env,
        "TABLE_NAME": table,
        "AUTH_API_URL": any_user_auth_url,
        "ALERT_EMAIL": recipient,
        "MAX_COMPLETION_TOKENS": "60",
        "BUDGET_MIN_COMPLETION_TOKENS": "20",
        "DAILY_BUDGET_USD": str(usd),
    }


def usd(nanos):
    return Decimal(nanos) / NANOS_PER_USD


def both_thresholds_in_one_query(cost):
    """A budget that one query of ``cost`` takes past 80 % and leaves too little for any other, so
    both alerts are due at once. ``cost`` is read from ``meta.cost.query_cost``, which is shown to
    the micro-dollar: 125 % of it can leave the real cost just under 80 % (119,960 of 150,000
    nano-dollars with the offline-hash-1024 embedder); 105 % is well clear of both thresholds."""
    return cost * 21 // 20


def one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient):
    table = f"budget-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    app, _ = make_app(budget_env(base_env, any_user_auth_url, table, recipient, 1000))
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")
    assert status == 200
    return round(body["meta"]["cost"]["query_cost"] * NANOS_PER_USD)


# One shard (small budgets), and the day split over 4 shards with 6 queries in flight at most per
# shard and none smaller than 0: each shard then holds about 10 queries of the 40.
@pytest.mark.parametrize("shards", [1, 4])
def test_concurrent_queries_spend_nearly_all_the_budget_never_more_and_alert_once_per_threshold(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint, shards
):
    # Given a budget of about 40 queries
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    limit = 40 * cost
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(limit))
    env |= {"BUDGET_SHARDS": str(shards), "BUDGET_MIN_SHARD_USD": "0", "BUDGET_HOLDS_PER_SHARD": "6"}
    # the budget is measured here: refusals retried near the end must not run into the rate limit
    env |= {"TOKEN_BUCKET_CAPACITY": "1000", "DAILY_USER_REQUEST_LIMIT": "1000"}
    containers = [make_app(env)[0] for _ in range(6)]
    users = [f"u-{uuid.uuid4().hex[:10]}" for _ in range(4)]

    # When 6 containers answer 4 users at once until the budget refuses with "spent"
    def container_work(index):
        results = []
        for n in range(200):
            results.append(ask(call, containers[index], users[(index + n) % 4]))
            status, body, _ = results[-1]
            if status == 503 and body["reason"] == "spent":
                break
        return results

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = [r for batch in pool.map(container_work, range(6)) for r in batch]

    # Then the budget held, exactly, and nearly all of it was used
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}
    assert {body["error"] for status, body, _ in results if status == 503} == {"budget_exceeded"}
    total = total_item(dynamodb, table)
    spent, committed = int(total["spent"]["N"]), int(total["committed"]["N"])
    assert spent <= limit  # never overshot
    assert spent >= 0.95 * limit  # the whole budget is usable (SPEC §7)
    assert committed == spent  # no hold left open
    assert not [name for name in total if name.startswith("h_")]
    assert len(shard_items(dynamodb, table, today())) == shards  # every shard was used
    # and the answers' own costs add up to the books (refused requests spent their embedding)
    reported = sum(round(b["meta"]["cost"]["query_cost"] * NANOS_PER_USD) for st, b, _ in results if st == 200)
    assert reported <= spent + 500 * statuses.count(200)  # query_cost is rounded to 1e-6 USD
    ledgers = DynamoLedgers(dynamodb, table)
    assert sum(row.cost for row in ledgers.all_users(today())) == spent
    assert sum(row.cost for row in ledgers.models(today())) == spent
    assert sum(row.requests for row in ledgers.models(today())) == int(total["requests"]["N"])
    # and exactly one alert per threshold went out, the 80 % one while 80 % was really spent
    alerts = sent_alerts(aws_endpoint, recipient)
    subjects = [m["subject"] for m in alerts]
    assert len(subjects) == 2, subjects
    assert sum("Warning" in s for s in subjects) == 1
    assert sum("exhausted" in s for s in subjects) == 1
    body = next(m["body"] for m in alerts if "Warning" in m["subject"])
    assert "Top 5 users by cost today:" in body
    assert sum(user in body for user in users) == 4


def test_a_budget_smaller_than_the_cheapest_query_is_refused_as_spent_and_costs_no_rate_limit_token(
    make_app, call, base_env, any_user_auth_url, table, recipient, aws_endpoint
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, "0.000001")
    app, _ = make_app({**env, "TOKEN_BUCKET_CAPACITY": "15", "DAILY_USER_REQUEST_LIMIT": "30"})
    token = f"u-{uuid.uuid4().hex}"

    status, body, headers = ask(call, app, token)

    assert (status, body["error"], body["reason"]) == (503, "budget_exceeded", "spent")
    assert body["budget_info"]["daily_budget"] == 0.000001
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    assert int(headers["Retry-After"]) == pytest.approx(midnight - time.time(), abs=5)
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert (usage["bucket"]["remaining_burst"], usage["daily_remaining"]) == (15, 30)


def test_money_held_by_running_queries_is_refused_as_in_flight_with_a_short_retry(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint
):
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(10 * cost))
    app, _ = make_app(env)
    running = Budget(DynamoBudgetStore(dynamodb, table), limit=10 * cost, clock=time.time)
    hold, _ = running.open("someone-else", "gpt-4o-mini", 10 * cost)  # a running query holds it all
    assert hold is not None

    status, body, headers = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert (status, body["error"], body["reason"]) == (503, "budget_exceeded", "in_flight")
    assert int(headers["Retry-After"]) <= 10
    assert sent_alerts(aws_endpoint, recipient) == []  # nothing is spent: no alert
    running.release(hold)
    assert ask(call, app, f"u-{uuid.uuid4().hex}")[0] == 200  # once it settles, queries run again


def test_a_query_waits_briefly_for_running_queries_to_settle_instead_of_refusing(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(10 * cost))
    app, _ = make_app(env)
    running = Budget(DynamoBudgetStore(dynamodb, table), limit=10 * cost, clock=time.time)
    hold, _ = running.open("someone-else", "gpt-4o-mini", 10 * cost)
    assert hold is not None
    settles = threading.Timer(0.25, lambda: running.release(hold))  # the running query ends soon

    settles.start()
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")
    settles.join()

    assert status == 200, body


def test_a_large_k_at_zero_spend_on_a_small_budget_is_answered_and_sends_no_alert(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, aws_endpoint
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, "0.01")
    app, _ = make_app({**env, "MAX_COMPLETION_TOKENS": "500"})

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", k=50)

    assert status == 200, body
    assert int(total_item(dynamodb, table)["spent"]["N"]) < 0.8 * 0.01 * NANOS_PER_USD
    assert sent_alerts(aws_endpoint, recipient) == []  # never a false "exhausted" mail


def test_a_query_larger_than_what_is_left_is_answered_degraded_within_the_budget(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    # Given a budget worth about 4 standard k=3 queries, untouched
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(4 * cost))
    app, _ = make_app({**env, "MAX_COMPLETION_TOKENS": "500"})

    # When one user asks with k=50, far more than the budget can hold at once
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}", k=50)

    # Then it is answered with fewer passages and/or a smaller cap, and the books stay within the budget
    assert status == 200, body
    degraded = body["meta"]["degraded"]
    assert degraded["reason"] == "budget_low"
    assert degraded["k"] < 50 or degraded["max_completion_tokens"] < 500
    assert len(body["sources"]) == degraded["k"]
    assert body["usage"]["completion_tokens"] <= degraded["max_completion_tokens"]
    assert int(total_item(dynamodb, table)["spent"]["N"]) <= 4 * cost


def test_a_standard_query_is_not_degraded(make_app, call, base_env, any_user_auth_url, table, recipient):
    app, _ = make_app(budget_env(base_env, any_user_auth_url, table, recipient, 1))

    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    assert status == 200
    assert body["meta"]["degraded"] is None
    assert body["meta"]["cache"] == "off"


def test_an_upstream_failure_keeps_the_embedding_on_the_books_and_gives_the_user_everything_back(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, 1)
    app, _ = make_app({**env, "CHROMA_PORT": str(free_port())})
    token = f"u-{uuid.uuid4().hex}"

    assert ask(call, app, token)[0] == 502

    total = total_item(dynamodb, table)
    assert int(total["committed"]["N"]) == int(total["spent"]["N"]) > 0  # the embedding was made: it is spent
    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]
    assert usage["today"]["requests"] == 0


def test_ses_down_still_answers_and_the_alert_goes_out_on_a_later_request(
    make_app, call, base_env, any_user_auth_url, table, recipient, aws_endpoint, dynamodb
):
    cost = one_query_cost(make_app, call, base_env, any_user_auth_url, dynamodb, recipient)
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(8 * cost))
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
    env = budget_env(base_env, any_user_auth_url, table, recipient, 1)
    app, _ = make_app(env)
    for token in ("u-admin-a", "u-admin-b", "u-admin-b"):
        assert ask(call, app, token)[0] == 200

    refused = parse(call(app, http_event("GET", "/api/admin/usage", token="u-admin-a")))
    admin_app, _ = make_app({**env, "AUTH_API_URL": base_env["AUTH_API_URL"]})  # dev-admin has role admin
    status, report, _ = parse(call(admin_app, http_event("GET", "/api/admin/usage", token="dev-admin")))

    assert (refused[0], refused[1]["error"]) == (403, "forbidden")
    assert status == 200
    assert [(u["user_id"], u["requests"]) for u in report["top_users"]] == [("u-admin-b", 2), ("u-admin-a", 1)]
    assert [u["email"] for u in report["top_users"]] == ["u-admin-b@example.com", "u-admin-a@example.com"]
    assert report["models"][0]["model"] == "offline-extractive"
    assert report["models"][0]["requests"] == 3
    assert report["budget"]["daily_total"] == pytest.approx(sum(u["cost"] for u in report["top_users"]), abs=1e-6)
    assert report["in_flight_reserved"] == 0


def test_usage_shows_todays_tokens_cost_and_the_global_budget(
    make_app, call, base_env, any_user_auth_url, table, recipient
):
    env = budget_env(base_env, any_user_auth_url, table, recipient, 1)
    app, _ = make_app(env)
    token = f"u-{uuid.uuid4().hex}"
    _, answer, _ = ask(call, app, token)

    usage = parse(call(app, http_event("GET", "/api/usage", token=token)))[1]

    assert usage["today"]["requests"] == 1
    assert usage["today"]["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert usage["today"]["cost"] == answer["meta"]["cost"]["query_cost"]
    assert usage["budget"]["daily_total"] == answer["meta"]["cost"]["daily_total"]
    assert usage["budget"]["daily_budget"] == 1.0
    assert 0 < usage["budget"]["percentage"] < 100


@pytest.mark.parametrize("shards", [1, 16])
def test_an_answered_query_costs_four_round_trips_on_a_warm_container(
    make_app, call, base_env, any_user_auth_url, table, recipient, shards
):
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, 1), "BUDGET_SHARDS": str(shards)}
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    app, _ = make_app(env, dynamodb_client=client)
    token = f"u-{uuid.uuid4().hex}"
    assert ask(call, app, token)[0] == 200  # cold: token validated and cached, passage size learned
    trips = RoundTripRecorder(client)
    sent = []
    client.meta.events.register("before-send.dynamodb", lambda **kwargs: sent.append(kwargs["event_name"]))

    trips.start()
    assert ask(call, app, token)[0] == 200
    trips.stop()

    # admit; the user's hold and the budget's hold, sent together; the user's ledger (with the
    # charge marker, closing the user's hold); settle the total. Over several shards the settle
    # also reads the day's shards (its total as of this answer) alongside: no step added
    steps = [sorted(step) for step in trips.steps()]
    if shards == 1:
        assert steps == [["UpdateItem"], ["UpdateItem", "UpdateItem"], ["TransactWriteItems"], ["UpdateItem"]]
    else:  # the Query overlaps the ledger transaction (and, when slow, the settle too): never a step of its own
        assert len(steps) <= 4
        assert steps[:2] == [["UpdateItem"], ["UpdateItem", "UpdateItem"]]
        assert sorted(call for step in steps[2:] for call in step) == ["Query", "TransactWriteItems", "UpdateItem"]
    assert len(sent) == 5 + (shards > 1)  # every call sent once: no retry, no extra read


def test_writes_resent_after_lost_responses_throttles_and_conflicts_count_once(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb, emulator_faults
):
    # Given DynamoDB that loses answers to applied writes, throttles, and reports transaction
    # conflicts on the budget and ledger items, often
    env = {**budget_env(base_env, any_user_auth_url, table, recipient, 1), "BUDGET_LEASE_SECONDS": str(LEASE)}
    app, container = make_app(env)
    emulator_faults.set(
        [
            {"fault": "lost_response", "key_prefix": "BUDGET#", "probability": 0.3},
            {"fault": "lost_response", "key_prefix": "LEDGER#", "probability": 0.3},
            {"fault": "throttle", "key_prefix": "BUDGET#", "probability": 0.2},
            {"fault": "conflict", "key_prefix": "BUDGET#", "probability": 0.2},
            {"fault": "conflict", "key_prefix": "LEDGER#", "probability": 0.2},
        ],
        seed=7,
    )

    # When one user asks 12 questions
    results = [ask(call, app, f"u-lost-{table}") for _ in range(12)]

    # Then every answer is counted exactly once, in the total and in both ledgers, once a settle
    # that ran out of retries (a throttled total is not retried again) is swept after its lease
    injected = emulator_faults.total_injected()
    emulator_faults.clear()
    time.sleep(LEASE + 1)
    container.budget.sweep_recent(time.time())
    assert injected >= 10
    answered = [body for status, body, _ in results if status == 200]
    # a few may exhaust the retry budget (a throttled write is sent twice: 503), and then cost nothing extra
    assert len(answered) >= 8
    total = total_item(dynamodb, table)
    spent = int(total["spent"]["N"])
    assert int(total["committed"]["N"]) == spent
    reported = sum(round(b["meta"]["cost"]["query_cost"] * NANOS_PER_USD) for b in answered)
    assert abs(spent - reported) <= 500 * len(answered) if len(answered) == 12 else spent >= reported - 500 * 12
    ledgers = DynamoLedgers(dynamodb, table)
    assert sum(row.cost for row in ledgers.all_users(today())) == spent
    assert sum(row.cost for row in ledgers.models(today())) == spent
    assert int(total["requests"]["N"]) == sum(row.requests for row in ledgers.all_users(today()))


# --- the budget logic against the store, with an injected clock -------------------------------


@pytest.fixture
def store(dynamodb, table):
    return DynamoBudgetStore(dynamodb, table)


def test_a_hold_left_by_a_dead_request_is_charged_in_full_when_its_lease_ends(store):
    clock = Clock()
    budget = Budget(store, limit=1000, clock=clock)
    dead, _ = budget.open("ghost", "gpt-4o-mini", 600)  # its container dies: never settled
    assert dead is not None

    assert budget.open("next", "gpt-4o-mini", 600)[0] is None  # held: refused

    clock.now += LEASE_SECONDS + 1
    hold, totals = budget.open("next", "gpt-4o-mini", 300)  # the sweep charged the orphan in full
    assert hold is not None
    assert (totals.spent, totals.committed) == (600, 900)
    assert dead.id in totals.orphans
    assert budget.open("more", "gpt-4o-mini", 101)[0] is None  # 600 spent + 300 held + 101 > 1000


def test_a_late_settle_corrects_an_orphan_charge_down_to_the_real_cost(store, dynamodb, table):
    clock = Clock()
    budget = Budget(store, limit=1000, clock=clock)
    slow, _ = budget.open("slow-user", "gpt-4o-mini", 600)
    clock.now += LEASE_SECONDS + 1
    budget.open("other", "gpt-4o-mini", 100)  # sweeps the slow hold: charged 600 as an orphan

    totals = budget.settle(slow, Charge("slow-user", "gpt-4o-mini", TokenUsage(10, 5, 1), cost=250))

    assert (totals.spent, totals.committed) == (250, 350)  # the real cost; the other hold stays
    assert slow.id not in totals.orphans
    ledger = DynamoLedgers(dynamodb, table).user(slow.day, "slow-user")
    assert (ledger.cost, ledger.requests, ledger.prompt_tokens) == (250, 1, 10)


def test_a_dead_request_that_wrote_its_ledger_is_settled_at_its_real_cost(store, dynamodb, table):
    clock = Clock()
    budget = Budget(store, limit=1000, clock=clock)
    hold, _ = budget.open("half", "gpt-4o-mini", 600)
    # the request wrote its ledger, then died before settling the total
    store._write_ledger(hold.day, hold.id, Charge("half", "gpt-4o-mini", TokenUsage(1, 1, 1), 120), False, clock.now)

    clock.now += LEASE_SECONDS + 1
    _, totals = budget.open("next", "gpt-4o-mini", 100)

    assert (totals.spent, totals.committed) == (120, 220)
    assert hold.id not in totals.orphans
    assert DynamoLedgers(dynamodb, table).user(hold.day, "half").cost == 120


def test_the_next_utc_day_starts_fresh(store):
    clock = Clock(datetime(2026, 11, 22, 23, 59, 0, tzinfo=UTC).timestamp())
    budget = Budget(store, limit=1000, clock=clock)
    first, _ = budget.open("a", "gpt-4o-mini", 900)
    assert first is not None
    budget.settle(first, Charge("a", "gpt-4o-mini", TokenUsage(1, 1, 1), 900))
    hold, totals = budget.open("a", "gpt-4o-mini", 900)
    assert hold is None
    refusal = budget.refusal(totals, 900)
    assert (refusal.cause, refusal.retry_after) == ("spent", 60)

    clock.now += 120
    hold, _ = budget.open("a", "gpt-4o-mini", 900)
    assert hold is not None
    assert hold.day == "2026-11-23"


def test_a_hold_larger_than_the_whole_budget_is_refused(store):
    assert Budget(store, limit=100, clock=Clock()).open("a", "gpt-4o-mini", 101)[0] is None


class RivalQueries:
    """The DynamoDB client of the container under test, with running queries of another container
    that, moments before its first hold, its growth to the standard form and ``times`` refits to
    what the refusals showed, take all but one nano-dollar less than it asks: each such write is
    refused by a margin of one, as when other queries keep growing their holds near the end of the
    budget. They settle ``settle_after`` seconds after the last one."""

    def __init__(self, client, table, rival, limit, times=3, settle_after=0.05):
        self._client, self._table, self._rival, self._limit = client, table, rival, limit
        self._times = times
        self._left, self._settle_after = times + 2, settle_after  # + its first hold and its standard form
        self._holds = []
        self.refused_writes = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def update_item(self, **request):
        expression = request.get("UpdateExpression", "")
        values = request.get("ExpressionAttributeValues", {})
        asks = None
        if request["Key"]["pk"]["S"].startswith("BUDGET#") and self._left > 0:
            if expression.startswith("SET #hold.a = :new ADD committed :delta") and int(values[":delta"]["N"]) > 0:
                asks = int(values[":delta"]["N"])
            elif expression.startswith("SET #hold = :entry") and self._left == self._times + 2:
                asks = int(values[":amount"]["N"])
        if asks is not None:
            self._left -= 1
            room = self._limit - int(day_total(self._client, self._table, today()).get("committed", {"N": "0"})["N"])
            hold, _ = self._rival.open("rival", "gpt-4o-mini", room - asks + 1)
            assert hold is not None
            self._holds.append(hold)
            self.refused_writes += 1
            if self._left == 0:
                threading.Timer(self._settle_after, self._settle).start()
        return self._client.update_item(**request)

    def _settle(self):
        for hold in self._holds:
            self._rival.release(hold)


def test_a_query_whose_fits_running_queries_keep_taking_waits_for_them_instead_of_a_503(
    make_app, call, base_env, any_user_auth_url, table, recipient, dynamodb
):
    # Given a roomy day, and running queries of another container that take, three times in a row
    # and each time just before this query's write, all but one nano-dollar less than it grows to
    # (its first hold too), then settle moments later
    limit = 10**9
    env = budget_env(base_env, any_user_auth_url, table, recipient, usd(limit)) | {"BUDGET_SHARDS": "1"}
    _, rival = make_app(env)
    client = RivalQueries(dynamodb, table, rival.budget, limit)
    app, _ = make_app(env, dynamodb_client=client)

    # When it asks
    status, body, _ = ask(call, app, f"u-{uuid.uuid4().hex}")

    # Then its first hold, its standard form and its three refits were all refused, and it waited
    # for the running queries rather than answering 503 `in_flight` with the money still there:
    # answered whole once they settled
    assert client.refused_writes == 5
    assert status == 200, body
    assert body["meta"]["degraded"] is None
    total = day_total(dynamodb, table, today())
    # and the books hold its cost alone: every hold, the rivals' included, gone
    assert int(total["committed"]["N"]) == int(total["spent"]["N"]) > 0
    assert [name for name in total if name.startswith("h_")] == []
