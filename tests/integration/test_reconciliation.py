"""The reconciliation with OpenAI's records (SPEC §4 "Reconciliation"), end to end: queries through
the real handlers and the real ``openai`` client against the fake OpenAI server, then the scheduled
task the next day reading the fake's organization usage and costs API over HTTP with the admin key,
the results in the emulator's table, the alert on every channel (SES and a real webhook receiver),
and the admin route. One injected clock for the service and the fake (no freezegun): the day the
books are kept under is the day OpenAI's records bucket the calls in."""

import io
import json
import time
import uuid

import httpx
import pytest

from dnd_rag.dal.money.ingest_books import DynamoIngestBooks
from dnd_rag.handlers.scheduled import run_task
from dnd_rag.logic.common.clock import day_end, utc_day
from dnd_rag.providers.openai_usage import OpenAIUsageApi
from infra.scripts import reconcile as reconcile_script
from infra.scripts.ingest import ingest
from tests.fakes.organization_api import DEFAULT_ADMIN_KEY
from tests.integration.test_budget import sent_alerts
from tests.support.budget_items import day_total
from tests.support.clock import NOON, Clock
from tests.support.events import http_event, lambda_context, parse

DAY, NEXT_DAY = "2026-11-22", "2026-11-23"
CHAT_MODEL, EMBEDDING_MODEL = "gpt-4o-mini", "text-embedding-3-small"
QUESTION = {"question": "How many experience points does a fighter need to become 9th level?", "k": 5}
RECONCILE = {"dnd_rag_task": "reconcile"}


@pytest.fixture
def clock(openai_state):
    """The service's clock and the fake OpenAI's, one and the same: noon of DAY."""
    clock = Clock(NOON)
    openai_state.clock = clock
    return clock


@pytest.fixture
def env(openai_env, table, recipient, receiver):
    return {
        **openai_env,  # the dev auth server: dev-alice asks, dev-admin reads the route
        "TABLE_NAME": table,
        "ALERT_EMAIL": recipient,
        "ALERT_WEBHOOK_URL": receiver[0],
        "OPENAI_ADMIN_KEY": DEFAULT_ADMIN_KEY,
        "OPENAI_TIMEOUT_SECONDS": "1",
        "RECONCILIATION_LOOKBACK_DAYS": "2",
    }


def ask_some(make_app, call, env, clock, count=3):
    app, container = make_app(env, clock=clock)
    for _ in range(count):
        status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=QUESTION)))
        assert status == 200, body
    return app, container


def reconciliation(call, app, start=DAY, end=DAY):
    event = http_event("GET", "/api/admin/reconciliation", token="dev-admin")
    event["queryStringParameters"] = {"from": start, "to": end}
    event["rawQueryString"] = f"from={start}&to={end}"
    return parse(call(app, event))


def underpriced_chat_file(tmp_path):
    """The shipped price file with gpt-4o-mini's input at a tenth of what OpenAI (the fake) bills
    (its cached input the same: never above the input)."""
    from dnd_rag.pricing import SHIPPED_PRICES

    prices = json.loads(SHIPPED_PRICES.read_text())
    prices["version"] = "underpriced"
    prices["chat"][CHAT_MODEL]["input"] = 0.015
    prices["chat"][CHAT_MODEL]["cached_input"] = 0.015
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(prices))
    return str(path)


def test_the_fakes_usage_and_costs_api_has_openais_shapes_and_wants_the_admin_key(
    fake_openai, openai_state, make_app, call, env, clock
):
    ask_some(make_app, call, env, clock, count=1)
    base, start = fake_openai[0], int(NOON) - 12 * 3600
    window = {"start_time": start, "end_time": start + 2 * 86_400, "bucket_width": "1d", "limit": 1}

    refused = httpx.get(f"{base}/organization/costs", params=window, headers={"Authorization": "Bearer sk-test-key"})
    admin = {"Authorization": f"Bearer {DEFAULT_ADMIN_KEY}"}
    first = httpx.get(f"{base}/organization/usage/completions", params={**window, "group_by": "model"}, headers=admin)
    second = httpx.get(
        f"{base}/organization/usage/completions",
        params={**window, "group_by": "model", "page": first.json()["next_page"]},
        headers=admin,
    )
    costs = httpx.get(f"{base}/organization/costs", params={**window, "group_by": "line_item"}, headers=admin)

    assert refused.status_code == 401  # a project key cannot read the organization's usage
    page = first.json()
    assert (page["object"], page["has_more"], len(page["data"])) == ("page", True, 1)  # limit=1: paged
    [bucket] = page["data"]
    assert (bucket["object"], bucket["start_time"], bucket["end_time"]) == ("bucket", start, start + 86_400)
    [result] = bucket["results"]
    [chat] = [r for r in openai_state.billed_records() if r["path"].endswith("/chat/completions")]
    assert result["object"] == "organization.usage.completions.result"
    assert (result["model"], result["num_model_requests"]) == (CHAT_MODEL, 1)
    assert (result["input_tokens"], result["output_tokens"]) == (chat["prompt_tokens"], chat["completion_tokens"])
    assert second.json()["data"][0]["results"] == []  # the next day: empty, the last page
    assert second.json()["has_more"] is False
    items = {r["line_item"]: r["amount"] for r in costs.json()["data"][0]["results"]}
    assert {f"{CHAT_MODEL}, input", f"{CHAT_MODEL}, output", f"{EMBEDDING_MODEL}, input"} <= set(items)
    assert all(amount["currency"] == "usd" for amount in items.values())
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())
    assert round(sum(amount["value"] for amount in items.values()) * 1e9) == billed


def test_after_a_run_of_queries_the_next_days_reconciliation_finds_no_drift_and_the_safety_margin(
    make_app, call, env, clock, openai_state, dynamodb, table, receiver
):
    # Given a day of queries against the fake OpenAI, one of whose chat calls timed out after it
    # was billed (the books charge such an attempt at its bound: more than OpenAI bills)
    app, container = ask_some(make_app, call, env, clock)
    openai_state.control({"hold": 2, "rules": [{"fault": "timeout_after_billing", "paths": ["/chat/completions"]}]})
    status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-bob", body=QUESTION)))
    openai_state.control({"rules": []})
    assert status == 502, body

    # When the day is over and the scheduled task runs (after midnight, as at 00:15 UTC)
    clock.now += 12 * 3600 + 15 * 60
    outcome = run_task(container, RECONCILE)

    # Then the day's books are at least what OpenAI billed: no drift, a safety margin
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())  # the fake's ground truth
    books = int(day_total(dynamodb, table, DAY)["spent"]["N"])
    [day] = [d for d in outcome["days"] if d["day"] == DAY]
    assert (day["books"], day["billed"]) == (books, billed)
    assert day["drift"] == 0
    assert day["safety_margin"] == books - billed > 0
    # and the admin route shows the day per model: embeddings exactly as billed, tokens included
    status, report, _ = reconciliation(call, app)
    assert status == 200, report
    [shown] = report["days"]
    models = {m["model"]: m for m in shown["models"]}
    embeddings = models[EMBEDDING_MODEL]
    assert embeddings["difference_usd"] == "0.000000000"
    assert embeddings["books_input_tokens"] == embeddings["billed_input_tokens"] > 0
    chat = models[CHAT_MODEL]
    assert chat["billed_requests"] == len([r for r in openai_state.billed_records() if "chat" in r["path"]])
    assert (shown["drift_usd"], shown["drifting"], shown["alert_sent"]) == ("0.000000000", False, False)
    assert shown["safety_margin_usd"] == f"{(books - billed) / 1e9:.9f}"
    assert report["not_reconciled"] == []
    # and no drift alert went anywhere
    assert receiver[1].delivered_of("reconciliation_drift") == []


def test_an_underpriced_model_raises_reconciliation_drift_once_on_every_channel_and_the_route_shows_it(
    make_app, call, env, clock, openai_state, tmp_path, aws_endpoint, recipient, receiver, sns_topic
):
    # Given a price file that prices gpt-4o-mini's input at a tenth of what OpenAI bills, and
    # e-mail, SNS and a webhook as alert channels
    topic, published = sns_topic
    env = {
        **env,
        "PRICES_FILE": underpriced_chat_file(tmp_path),
        "RECONCILIATION_TOLERANCE_USD": "0.000001",
        "ALERT_SNS_TOPIC_ARN": topic,
    }
    ask_some(make_app, call, env, clock)

    # When the scheduled task reconciles the day, and runs again (the next hour, another container)
    clock.now += 13 * 3600
    _, first_container = make_app(env, clock=clock)
    first = run_task(first_container, RECONCILE)
    clock.now += 3600
    app, second_container = make_app(env, clock=clock)
    second = run_task(second_container, RECONCILE)

    # Then the books are below what OpenAI billed, on both runs
    [day] = [d for d in first["days"] if d["day"] == DAY]
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())
    assert day["billed"] == billed
    assert day["drift"] == billed - day["books"] > 1_000
    assert [d["drift"] for d in second["days"] if d["day"] == DAY] == [day["drift"]]
    # and reconciliation_drift went out exactly once on every channel
    drift_events = receiver[1].delivered_of("reconciliation_drift")
    assert [(e["day"], e["data"]["drift_usd"]) for e in drift_events] == [(DAY, round(day["drift"] / 1e9, 6))]
    mails = [m for m in sent_alerts(aws_endpoint, recipient) if "Books below OpenAI's bill" in m["subject"]]
    assert len(mails) == 1, mails
    sns = [json.loads(m["Body"]) for m in published()]
    assert [(e["type"], e["day"]) for e in sns] == [("reconciliation_drift", DAY)]
    assert sns[0]["id"] == drift_events[0]["id"]  # the same event everywhere: receivers dedupe on it
    # and the route shows the drift, the chat model below its bill, the embeddings not
    status, report, _ = reconciliation(call, app, DAY, NEXT_DAY)
    assert status == 200, report
    [shown] = report["days"]
    assert (shown["drifting"], shown["alert_sent"]) == (True, True)
    assert shown["drift_usd"] == f"{day['drift'] / 1e9:.9f}"
    models = {m["model"]: m for m in shown["models"]}
    assert models[CHAT_MODEL]["difference_usd"].startswith("-")
    assert models[EMBEDDING_MODEL]["difference_usd"] == "0.000000000"
    assert report["not_reconciled"] == [NEXT_DAY]  # today has not ended


def test_a_drift_within_the_tolerance_raises_nothing(make_app, call, env, clock, tmp_path, receiver):
    env = {**env, "PRICES_FILE": underpriced_chat_file(tmp_path)}  # the default tolerance: $0.01
    ask_some(make_app, call, env, clock, count=1)
    clock.now += 13 * 3600
    _, container = make_app(env, clock=clock)

    [day] = [d for d in run_task(container, RECONCILE)["days"] if d["day"] == DAY]

    assert 0 < day["drift"] < 10_000_000
    assert receiver[1].delivered_of("reconciliation_drift") == []


def test_without_an_admin_key_the_task_does_nothing(make_app, env, clock):
    _, container = make_app({**env, "OPENAI_ADMIN_KEY": ""}, clock=clock)

    assert "skipped" in run_task(container, RECONCILE)


def test_the_route_is_for_admins_and_validates_its_range_like_the_spend_export(make_app, call, env, clock):
    app, _ = make_app(env, clock=clock)

    assert reconciliation(call, app, DAY, "2026-11-21")[:2][0] == 400  # to before from
    assert reconciliation(call, app, "2025-01-01", DAY)[0] == 400  # more than 400 days
    assert reconciliation(call, app, DAY, "2026-11-23")[0] == 400  # after today
    assert reconciliation(call, app, "2026-02-30", DAY)[0] == 400  # not a date
    event = http_event("GET", "/api/admin/reconciliation", token="dev-bob")
    event["queryStringParameters"] = {"from": "bogus"}
    event["rawQueryString"] = "from=bogus"
    status, body, _ = parse(call(app, event))
    assert (status, body["error"]) == (403, "forbidden")  # authorized before validated


def spend(call, app, **query):
    event = http_event("GET", "/api/admin/spend", token="dev-admin")
    event["queryStringParameters"] = {"from": DAY, "to": DAY, **query}
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in event["queryStringParameters"].items())
    return parse(call(app, event))


def test_an_ingest_is_on_the_books_of_its_day_beside_the_query_budget_and_reconciles(
    make_app, call, env, clock, openai_state, dynamodb, table, tmp_path
):
    # Given a day with a query, and a book ingested with OpenAI embeddings the same day
    app, container = ask_some(make_app, call, env, clock, count=1)
    query_spent = int(day_total(dynamodb, table, DAY)["spent"]["N"])
    embeddings_before = len(openai_state.billed_records())
    book = tmp_path / f"ingest_line_{uuid.uuid4().hex[:8]}.md"
    book.write_text("# Owlbear\n\nAn owlbear is a ferocious beast with the body of a bear.\n" * 20)
    ingest(container, [book], stamp_versions=False)
    ingest_calls = openai_state.billed_records()[embeddings_before:]
    ingest_cost = sum(r["cost_nanos"] for r in ingest_calls)
    assert ingest_calls
    assert ingest_cost > 0

    # Then the query budget does not count it
    assert int(day_total(dynamodb, table, DAY)["spent"]["N"]) == query_spent
    # and the spend export shows it: a (corpus ingest) row, the rows adding up to the day's books
    status, by_user, _ = spend(call, app, group_by="user")
    assert status == 200, by_user
    rows = {row["user"]: row["cost_usd"] for row in by_user["rows"]}
    assert rows["(corpus ingest)"] == f"{ingest_cost / 1e9:.9f}"
    assert by_user["total_cost_usd"] == by_user["books_total_usd"] == f"{(query_spent + ingest_cost) / 1e9:.9f}"
    status, by_model, _ = spend(call, app, group_by="model")
    assert {row["model"] for row in by_model["rows"]} == {CHAT_MODEL, EMBEDDING_MODEL}
    assert by_model["total_cost_usd"] == by_user["total_cost_usd"]
    # and the next day's reconciliation finds every billed cent on the books, embeddings exactly
    clock.now += 13 * 3600
    [day] = [d for d in run_task(container, RECONCILE)["days"] if d["day"] == DAY]
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())
    assert (day["books"], day["billed"], day["drift"]) == (query_spent + ingest_cost, billed, 0)
    [stored] = reconciliation(call, app)[1]["days"]
    embeddings = next(m for m in stored["models"] if m["model"] == EMBEDDING_MODEL)
    assert embeddings["difference_usd"] == "0.000000000"
    assert embeddings["billed_requests"] == len([r for r in openai_state.billed_records() if "embeddings" in r["path"]])


def test_an_ingest_call_recorded_twice_is_on_the_books_once(dynamodb, table):
    books = DynamoIngestBooks(dynamodb, table)

    assert books.record(DAY, "call-1", EMBEDDING_MODEL, 1000, 20_000) is True
    assert books.record(DAY, "call-1", EMBEDDING_MODEL, 1000, 20_000) is False  # a re-sent write
    assert books.ingest_cost(DAY) == 20_000
    [row] = books.ingest_models(DAY)
    assert (row.name, row.embedding_tokens, row.cost, row.requests) == (EMBEDDING_MODEL, 1000, 20_000, 1)


def test_make_reconcile_prints_each_model_and_the_days_drift_and_margin(
    make_app, call, env, clock, openai_state, fake_openai, aws_endpoint, table, monkeypatch
):
    # Given a finished day of queries against the fake OpenAI
    ask_some(make_app, call, env, clock, count=2)
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())
    # When `make reconcile DAYS=<day>` runs against the local settings (the emulator's table, the fake)
    for name, value in {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "TABLE_NAME": table,
        "OPENAI_BASE_URL": fake_openai[0],
        "OPENAI_ADMIN_KEY": DEFAULT_ADMIN_KEY,
        "ALERT_EMAIL": "",
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    status = reconcile_script.main(["--day", DAY], out=out)

    # Then it reports each model and the day: no drift, the margin, exit status 0
    printed = out.getvalue()
    assert status == 0, printed
    assert DAY in printed
    assert CHAT_MODEL in printed
    assert EMBEDDING_MODEL in printed
    assert f"billed {billed / 1e9:.9f} drift 0.000000000 safety margin" in printed
    assert printed.rstrip().endswith(": ok")


def test_make_reconcile_shows_today_so_far_without_storing_or_alerting(
    make_app, call, env, openai_state, fake_openai, aws_endpoint, table, monkeypatch, receiver, tmp_path
):
    # Given queries today (on the real clock, the service's and the fake's)
    app, _ = make_app(env)
    for _ in range(2):
        status, body, _ = parse(call(app, http_event("POST", "/api/query", token="dev-alice", body=QUESTION)))
        assert status == 200, body
    billed = sum(r["cost_nanos"] for r in openai_state.billed_records())
    today = utc_day(time.time())
    for name, value in {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "TABLE_NAME": table,
        "OPENAI_BASE_URL": fake_openai[0],
        "OPENAI_ADMIN_KEY": DEFAULT_ADMIN_KEY,
        "ALERT_EMAIL": "",
        "ALERT_WEBHOOK_URL": receiver[0],
    }.items():
        monkeypatch.setenv(name, value)

    # When `make reconcile` runs the same day
    out = io.StringIO()
    status = reconcile_script.main([], out=out)

    # Then it shows today so far, compared as a finished day is: no drift, the margin
    printed = out.getvalue()
    assert status == 0, printed
    block = printed[printed.index(f"{today}  (so far") :]
    assert CHAT_MODEL in block
    assert EMBEDDING_MODEL in block
    assert f"billed {billed / 1e9:.9f} drift 0.000000000 safety margin" in block
    # and nothing is stored for today (the route knows only finished days' results)
    stored = reconciliation(call, app, today, today)[1]
    assert stored["days"] == [], stored

    # And when a query is booked at a price set too low, today shows the drift, still not stored,
    # with no alert and exit status 0 (the day has not ended)
    underpriced = {**env, "PRICES_FILE": underpriced_chat_file(tmp_path)}
    status, body, _ = parse(
        call(make_app(underpriced)[0], http_event("POST", "/api/query", token="dev-alice", body=QUESTION))
    )
    assert status == 200, body
    monkeypatch.setenv("RECONCILIATION_TOLERANCE_USD", "0")
    out = io.StringIO()
    status = reconcile_script.main([], out=out)
    block = out.getvalue()[out.getvalue().index(f"{today}  (so far") :]
    assert status == 0, block
    assert block.rstrip().endswith(": DRIFT"), block
    assert receiver[1].delivered_of("reconciliation_drift") == []
    assert reconciliation(call, app, today, today)[1]["days"] == []


def test_the_usage_api_is_read_page_after_page(fake_openai, make_app, call, env, clock, openai_state):
    # Given a call billed on DAY and one on the next day
    ask_some(make_app, call, env, clock, count=1)
    clock.now += 86_400
    ask_some(make_app, call, env, clock, count=1)
    api = OpenAIUsageApi(DEFAULT_ADMIN_KEY, fake_openai[0])
    start = int(day_end(DAY)) - 86_400

    # When both days are read a bucket per page
    results = api._results(
        "/organization/usage/completions",
        {"start_time": start, "end_time": start + 2 * 86_400, "bucket_width": "1d", "limit": 1, "group_by": "model"},
    )

    # Then both pages' results are there
    assert [r["num_model_requests"] for r in results] == [1, 1]
    assert api.billed_day(DAY).usage[CHAT_MODEL].requests == 1


def test_the_lambda_entry_point_runs_the_reconcile_task_eventbridge_sends(lambda_module):
    # the configuration of the integration tier has no admin key: the task says so and does nothing
    answer = lambda_module.lambda_handler(dict(RECONCILE), lambda_context())

    assert answer["task"] == "reconcile"
    assert "OPENAI_ADMIN_KEY" in answer["skipped"]
