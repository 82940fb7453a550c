"""The spend export (GET /api/admin/spend, issue 21): what the per-day books say, per day, user or
model, as JSON or CSV; exact sums equal to each day's budget total; hashed ids unless raw ids are
asked for with a reason (audited); pages; 403 before any validation; clear 400s.

Spend is seeded once for the module by answering real queries (offline providers, priced at the
configured models' rates) on three days of an injected clock, with two chat models."""

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnd_rag.container import Container
from dnd_rag.dal.money.budget import BOOKS_KEEP_SECONDS, KEEP_SECONDS
from dnd_rag.handlers.routes import create_app
from dnd_rag.logic.common.clock import day_end
from dnd_rag.logic.operations.spend import MAX_DAYS, UNATTRIBUTED
from dnd_rag.models.domain import is_valid_user_id
from dnd_rag.observability import hashed_user_id
from dnd_rag.pricing import NANOS_PER_USD
from dnd_rag.settings import load_settings
from infra.local.bootstrap import ensure_table
from tests.support.clock import Clock
from tests.support.events import http_event, lambda_context, parse

ALICE = "00000000-0000-4000-a000-00000000a11c"  # the dev auth server's users (infra/local/auth_server.py)
BOB = "00000000-0000-4000-a000-000000000b0b"
ADMIN = "00000000-0000-4000-a000-0000000ad111"
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")  # the last is "today"
# (day, chat model or None for the offline answerer, [tokens of the users asking, one query each])
SEED = [
    (DAYS[0], "gpt-4o-mini", ["dev-alice", "dev-alice", "dev-bob"]),
    (DAYS[1], "gpt-4.1-nano", ["dev-alice"]),
    (DAYS[2], None, ["dev-bob", "dev-alice"]),
]
MODELS = {"gpt-4o-mini", "gpt-4.1-nano", "offline-extractive"}


def noon(day):
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC).timestamp()


def call(app, event):
    return app.resolve(event, lambda_context())


def get(app, path, token="dev-admin", **query):
    event = http_event("GET", path, token=token)
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return call(app, event)


def spend(app, token="dev-admin", **query):
    return parse(get(app, "/api/admin/spend", token=token, **query))


@pytest.fixture(scope="module")
def seeded(base_env, openai_env, fake_openai, corpus_ingested, dynamodb):
    """(env, clock) of a table with spend on DAYS, the clock left on the last day: the first two
    days answered through the fake OpenAI server, the last one offline."""
    table = f"spend-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table)
    env = {**base_env, "TABLE_NAME": table}
    clock = Clock()
    fake_openai[1].reset()
    for n, (day, model, tokens) in enumerate(SEED):
        clock.now = noon(day)
        settings = {**env} if model is None else {**openai_env, "TABLE_NAME": table, "OPENAI_MODEL": model}
        app = create_app(Container(load_settings(settings), clock=clock))
        for token in tokens:
            question = {"question": f"What is a beholder? ({day} {n} {uuid.uuid4().hex[:6]})", "k": 3}
            status, body, _ = parse(call(app, http_event("POST", "/api/query", token=token, body=question)))
            assert status == 200, body
    return env, clock


@pytest.fixture
def app(seeded):
    env, clock = seeded
    return create_app(Container(load_settings(env), clock=clock))


def books(dynamodb, table, day):
    """The day's books as stored: (budget total, {model: cost}, {user: cost}), read independently."""
    spent, models, users = 0, {}, {}
    for pk in (f"BUDGET#{day}", f"LEDGER#{day}"):
        items = dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        )["Items"]
        for item in items:
            sk = item["sk"]["S"]
            if pk.startswith("BUDGET#"):
                spent += int(item.get("spent", {"N": "0"})["N"])
                for name, value in item.items():
                    model = name.removeprefix("mcost_")
                    if model != name:
                        models[model] = models.get(model, 0) + int(value["N"])
            elif sk.startswith("USER#"):
                users[sk.removeprefix("USER#")] = int(item.get("cost", {"N": "0"})["N"])
    return spent, models, users


def nanos(usd):
    exact = Decimal(usd) * NANOS_PER_USD
    assert exact == exact.to_integral_value(), usd  # exact dollars: nothing past the nano-dollar
    return int(exact)


def all_rows(app, **query):
    """Every row of an export, page after page (the cursor round trip)."""
    rows, pages, cursor = [], 0, None
    while True:
        extra = {"next": cursor} if cursor else {}
        status, body, _ = spend(app, **query, **extra)
        assert status == 200, body
        rows += body["rows"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return rows, pages, body


@pytest.mark.parametrize("group_by", ["day", "user", "model"])
def test_the_rows_add_up_exactly_to_each_days_books(seeded, app, dynamodb, group_by):
    env, _ = seeded
    stored = {day: books(dynamodb, env["TABLE_NAME"], day) for day in DAYS}
    day_total = sum(spent for spent, _, _ in stored.values())
    assert all(spent > 0 for spent, _, _ in stored.values())

    status, body, headers = spend(app, **{"from": DAYS[0], "to": DAYS[-1], "group_by": group_by})

    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert (body["group_by"], body["days"], body["user_ids"], body["next"]) == (group_by, 3, "hashed", None)
    rows = {row[group_by]: nanos(row["cost_usd"]) for row in body["rows"]}
    assert all(set(row) == {group_by, "cost_usd"} for row in body["rows"])
    assert sum(rows.values()) == nanos(body["total_cost_usd"]) == nanos(body["books_total_usd"]) == day_total
    if group_by == "day":
        assert rows == {day: spent for day, (spent, _, _) in stored.items()}
    elif group_by == "model":
        expected = {}
        for _, models, _ in stored.values():
            for model, cost in models.items():
                expected[model] = expected.get(model, 0) + cost
        assert set(expected) == MODELS
        assert rows == expected
    else:
        expected = {}
        for _, _, users in stored.values():
            for user, cost in users.items():
                expected[hashed_user_id(user)] = expected.get(hashed_user_id(user), 0) + cost
        assert rows == expected
        assert set(rows) == {hashed_user_id(ALICE), hashed_user_id(BOB)}


def test_todays_row_is_the_admin_usage_total(app):
    usage = parse(get(app, "/api/admin/usage"))[1]
    status, body, _ = spend(app, **{"from": DAYS[-1], "to": DAYS[-1]})

    assert status == 200
    assert usage["day"] == DAYS[-1]
    assert float(body["rows"][0]["cost_usd"]) == pytest.approx(usage["budget"]["daily_total"], abs=1e-6)


def test_csv_has_a_header_row_one_column_per_key_and_cost_usd(seeded, app, dynamodb):
    env, _ = seeded
    response = get(app, "/api/admin/spend", **{"from": DAYS[0], "to": DAYS[-1], "group_by": "user", "format": "csv"})

    headers = response["headers"]
    assert response["statusCode"] == 200
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="spend-{DAYS[0]}-{DAYS[-1]}-user.csv"'
    assert "X-Next-Cursor" not in headers
    lines = list(csv.reader(io.StringIO(response["body"])))
    assert lines[0] == ["user", "cost_usd"]
    assert all(len(line) == 2 for line in lines)
    assert {user for user, _ in lines[1:]} == {hashed_user_id(ALICE), hashed_user_id(BOB)}
    total = sum(books(dynamodb, env["TABLE_NAME"], day)[0] for day in DAYS)
    assert sum(nanos(cost) for _, cost in lines[1:]) == total
    assert ALICE not in response["body"]
    assert BOB not in response["body"]


def test_csv_pages_carry_the_cursor_in_a_header(app):
    query = {"from": DAYS[0], "to": DAYS[-1], "format": "csv", "limit": "2"}
    first = get(app, "/api/admin/spend", **query)
    second = get(app, "/api/admin/spend", **query, next=first["headers"]["X-Next-Cursor"])

    assert [line.split(",")[0] for line in first["body"].splitlines()] == ["day", DAYS[0], DAYS[1]]
    assert [line.split(",")[0] for line in second["body"].splitlines()] == ["day", DAYS[2]]
    assert "X-Next-Cursor" not in second["headers"]


def test_user_ids_are_hashed_unless_raw_ids_with_a_reason_which_is_audited(app):
    scope = {"from": DAYS[0], "to": DAYS[-1], "group_by": "user"}
    hashed = spend(app, **scope)
    no_reason = spend(app, **scope, raw_ids="true")
    blank_reason = spend(app, **scope, raw_ids="true", reason="  ")
    audit_before = parse(get(app, "/api/admin/audit", limit="100"))[1]["entries"]

    raw = spend(app, **scope, raw_ids="true", reason="finance asked for the invoice split")

    assert "spend_raw_ids" not in {entry["action"] for entry in audit_before}  # hashed exports audit nothing
    assert {row["user"] for row in hashed[1]["rows"]} == {hashed_user_id(ALICE), hashed_user_id(BOB)}
    for refused in (no_reason, blank_reason):
        assert (refused[0], refused[1]["error"]) == (400, "validation_error"), refused
        assert refused[1]["details"][0]["field"] == "query.reason"
    assert raw[0] == 200, raw[1]
    assert raw[1]["user_ids"] == "raw"
    unhash = {hashed_user_id(ALICE): ALICE, hashed_user_id(BOB): BOB}
    by_raw_id = {unhash[row["user"]]: row["cost_usd"] for row in hashed[1]["rows"]}
    assert {row["user"]: row["cost_usd"] for row in raw[1]["rows"]} == by_raw_id
    entries = parse(get(app, "/api/admin/audit", limit="100"))[1]["entries"]
    (entry,) = [entry for entry in entries if entry["action"] == "spend_raw_ids"]
    assert entry["id"] == raw[1]["audit_id"]
    assert (entry["who"], entry["target"]) == (ADMIN, "spend export")
    assert entry["after"] == {
        "from": DAYS[0],
        "to": DAYS[-1],
        "group_by": "user",
        "reason": "finance asked for the invoice split",
    }


@pytest.mark.parametrize("group_by", ["day", "user", "model"])
def test_pages_of_one_row_round_trip_to_the_whole_export(app, group_by):
    scope = {"from": DAYS[0], "to": DAYS[-1], "group_by": group_by}
    whole = spend(app, **scope)[1]

    rows, pages, last = all_rows(app, **scope, limit="1")

    assert rows == whole["rows"]
    assert pages == len(whole["rows"])
    assert last["total_cost_usd"] == whole["total_cost_usd"]  # every page totals the whole range


def test_a_cursor_of_another_export_or_a_forged_one_is_a_400(app):
    first = spend(app, **{"from": DAYS[0], "to": DAYS[-1], "limit": "1"})[1]

    other = spend(app, **{"from": DAYS[0], "to": DAYS[-2], "limit": "1", "next": first["next"]})
    forged = spend(app, **{"from": DAYS[0], "to": DAYS[-1], "next": "bm90LWEtY3Vyc29y"})

    for status, body, _ in (other, forged):
        assert (status, body["error"]) == (400, "validation_error"), body
        assert body["details"][0]["field"] == "query.next"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-11-2", "to": DAYS[-1]}, "from"),
        ({"from": "20261120", "to": DAYS[-1]}, "from"),
        ({"from": "2026-W47-1", "to": DAYS[-1]}, "from"),
        ({"from": "2026-02-30", "to": DAYS[-1]}, "from"),
        ({"from": DAYS[0], "to": "tomorrow"}, "to"),
        ({"from": DAYS[-1], "to": DAYS[0]}, "to"),  # from after to
        ({"from": "2025-10-18", "to": DAYS[-1]}, "to"),  # 401 days
        ({"from": DAYS[0], "to": "2026-11-23"}, "to"),  # after today
        ({"to": DAYS[-1]}, "from"),
        ({"from": DAYS[0], "to": DAYS[-1], "group_by": "week"}, "group_by"),
        ({"from": DAYS[0], "to": DAYS[-1], "format": "xlsx"}, "format"),
        ({"from": DAYS[0], "to": DAYS[-1], "limit": "0"}, "limit"),
    ],
    ids=lambda value: str(value),
)
def test_bad_dates_and_ranges_are_a_clear_400(app, query, field):
    status, body, _ = spend(app, **query)

    assert (status, body["error"]) == (400, "validation_error"), body
    assert body["details"][0]["field"].endswith(field), body
    assert body["message"]
    assert body["request_id"]


def test_400_days_inclusive_are_allowed(app):
    status, body, _ = spend(app, **{"from": "2025-10-19", "to": DAYS[-1]})

    assert status == 200, body
    assert body["days"] == 400
    assert len(body["rows"]) == 400
    assert [row["day"] for row in body["rows"][-3:]] == list(DAYS)


@pytest.mark.parametrize("token", ["dev-bob", "dev-alice"])
def test_non_admins_get_403_before_any_validation(app, token):
    for query in ({}, {"from": "nonsense", "to": "2026-02-30", "group_by": "week"}, {"from": DAYS[0], "to": DAYS[-1]}):
        status, body, _ = spend(app, token=token, **query)
        assert (status, body["error"]) == (403, "forbidden"), body


def test_a_blocked_admin_gets_403_user_blocked_before_any_validation(seeded, app, base_env, dynamodb):
    env = {**base_env, "TABLE_NAME": f"spendblk-{uuid.uuid4().hex[:12]}"}
    ensure_table(dynamodb, env["TABLE_NAME"])
    other = create_app(Container(load_settings(env), clock=seeded[1]))
    assert parse(call(other, http_event("PUT", f"/api/admin/users/{ADMIN}/block", token="dev-admin")))[0] == 200

    for query in ({}, {"from": DAYS[0], "to": DAYS[-1], "group_by": "user", "raw_ids": "true", "reason": "x"}):
        status, body, _ = spend(other, **query)
        assert (status, body["error"]) == (403, "user_blocked"), body


def test_the_route_is_in_the_openapi_document(app):
    document = parse(get(app, "/openapi.json", token=None))[1]

    operation = document["paths"]["/api/admin/spend"]["get"]
    names = {"from", "to", "group_by", "format", "raw_ids", "reason", "limit", "next"}
    assert {parameter["name"] for parameter in operation["parameters"]} == names
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert "bearerAuth" in str(operation["security"])


def test_the_days_totals_are_kept_as_far_back_as_the_export_reaches_user_ledgers_three_days(seeded, dynamodb):
    env, _ = seeded
    items = dynamodb.query(
        TableName=env["TABLE_NAME"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"BUDGET#{DAYS[0]}"}},
        ConsistentRead=True,
    )["Items"]
    ledger = dynamodb.get_item(
        TableName=env["TABLE_NAME"], Key={"pk": {"S": f"LEDGER#{DAYS[0]}"}, "sk": {"S": f"USER#{ALICE}"}}
    )["Item"]

    assert items
    assert BOOKS_KEEP_SECONDS >= (MAX_DAYS + 1) * 86_400
    assert {int(item["expires_at"]["N"]) for item in items} == {day_end(DAYS[0]) + BOOKS_KEEP_SECONDS}
    assert int(ledger["expires_at"]["N"]) == day_end(DAYS[0]) + KEEP_SECONDS  # e-mail and all: three days


def test_a_day_whose_user_ledgers_expired_keeps_its_total_in_an_unattributed_user_row(seeded, app, dynamodb):
    env, _ = seeded
    key = {"pk": {"S": f"LEDGER#{DAYS[0]}"}, "sk": {"S": f"USER#{ALICE}"}}
    ledger = dynamodb.get_item(TableName=env["TABLE_NAME"], Key=key, ConsistentRead=True)["Item"]
    total = sum(books(dynamodb, env["TABLE_NAME"], day)[0] for day in DAYS)
    dynamodb.delete_item(TableName=env["TABLE_NAME"], Key=key)  # what TTL does three days after the day
    try:
        status, body, _ = spend(app, **{"from": DAYS[0], "to": DAYS[-1], "group_by": "user"})
        csv_body = get(
            app, "/api/admin/spend", **{"from": DAYS[0], "to": DAYS[-1], "group_by": "user", "format": "csv"}
        )
    finally:
        dynamodb.put_item(TableName=env["TABLE_NAME"], Item=ledger)

    assert status == 200, body
    assert not is_valid_user_id(UNATTRIBUTED)  # no user can be called that
    rows = {row["user"]: nanos(row["cost_usd"]) for row in body["rows"]}
    assert rows[UNATTRIBUTED] == int(ledger["cost"]["N"])
    assert list(rows)[-1] == UNATTRIBUTED
    assert sum(rows.values()) == nanos(body["total_cost_usd"]) == nanos(body["books_total_usd"]) == total
    lines = list(csv.reader(io.StringIO(csv_body["body"])))
    assert lines[-1] == [UNATTRIBUTED, body["rows"][-1]["cost_usd"]]


near_dates = st.sampled_from(
    [*DAYS, "2025-10-19", "2025-10-18", "2026-11-23", "2026-02-29", "2024-02-29", "0001-01-01"]
)
any_value = st.one_of(near_dates, st.text(max_size=30), st.integers(-3, 10_000).map(str))
spend_query = st.fixed_dictionaries(
    {},
    optional={
        "from": any_value,
        "to": any_value,
        "group_by": st.one_of(st.sampled_from(["day", "user", "model"]), st.text(max_size=8)),
        "format": st.one_of(st.sampled_from(["json", "csv"]), st.text(max_size=8)),
        "raw_ids": st.one_of(st.sampled_from(["true", "false", "1", "0"]), st.text(max_size=6)),
        "reason": st.text(max_size=600),
        "limit": any_value,
        "next": st.one_of(st.text(max_size=60), st.binary(max_size=40).map(lambda b: b.hex())),
    },
)


@pytest.fixture(scope="module")
def fuzz_app(seeded, base_env, dynamodb):
    """An app on a table of its own: fuzzed raw-id exports audit into their own trail."""
    env = {**base_env, "TABLE_NAME": f"spendfuzz-{uuid.uuid4().hex[:12]}"}
    ensure_table(dynamodb, env["TABLE_NAME"])
    return create_app(Container(load_settings(env), clock=seeded[1]))


@settings(max_examples=60, deadline=None)
@given(query=spend_query)
def test_any_query_an_admin_sends_is_answered_200_or_a_clear_400_never_500(fuzz_app, query):
    event = http_event("GET", "/api/admin/spend", token="dev-admin")
    event["queryStringParameters"] = query
    response = call(fuzz_app, event)

    status = response["statusCode"]
    assert status in (200, 400), response
    if status == 400:
        assert parse(response)[1]["error"] == "validation_error"
