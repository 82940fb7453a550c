"""The answer cache (SPEC §4) on the serialized emulator, with real Chroma and the fake OpenAI server:
a hit costs nothing and holds nothing but still counts against the user's limits; variants of a
question share an entry, anything that changes the answer does not; re-ingesting (or stamping)
the corpus and the TTL invalidate; the off path never touches the cache; debug diagnostics never
cross users; degraded answers are not kept; a failed cache write still answers; concurrent
identical misses leave one intact entry."""

import importlib
import json
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.observability import metrics
from dnd_rag.pricing import NANOS_PER_USD
from dnd_rag.settings import load_settings
from infra.local.bootstrap import ensure_table
from infra.scripts.ingest import ingest
from tests.integration.conftest import corpus_files
from tests.support.billing import billed_nanos
from tests.support.clock import Clock
from tests.support.events import http_event, lambda_context, parse
from tests.support.servers import REPO_ROOT, python_env

FIGHTER = "How many experience points does a fighter need to become 9th level?"
POOL_THREAD = "concurrently"  # the name prefix of dnd_rag.logic.common.concurrently's threads


@pytest.fixture
def cached(base_env, any_user_auth_url, table):
    return {**base_env, "TABLE_NAME": table, "AUTH_API_URL": any_user_auth_url, "ANSWER_CACHE_TTL": "86400"}


@pytest.fixture
def cached_openai(openai_env, cached):
    return {**openai_env, **{k: cached[k] for k in ("TABLE_NAME", "AUTH_API_URL", "ANSWER_CACHE_TTL")}}


def user():
    return f"u-{uuid.uuid4().hex}"


def ask(call, app, token, question=FIGHTER, **extra):
    return parse(call(app, http_event("POST", "/api/query", token=token, body={"question": question, **extra})))


def item(dynamodb, table, pk, sk):
    return dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")


def items(dynamodb, table, prefix):
    found = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return [i for i in found if i["pk"]["S"].startswith(prefix)]


def budget_and_ledgers(dynamodb, table):
    """Every money item of the table: the day's TOTAL, the ledgers and the charge markers."""
    return sorted(
        (json.dumps(i, sort_keys=True) for i in items(dynamodb, table, "BUDGET#") + items(dynamodb, table, "LEDGER#")),
    )


def limits_item(dynamodb, table, token):
    return item(dynamodb, table, f"USER#{token}", "LIMITS")  # the any-user auth API: id = token


def answer_part(body):
    return {"answer": body["answer"], "sources": body["sources"], "model": body["usage"]["model"]}


class Calls:
    """The DynamoDB operations a client sends, with the thread each came from."""

    def __init__(self, client):
        self.sent = []
        client.meta.events.register("before-parameter-build.dynamodb", self._seen)

    def _seen(self, params, model, **_):
        self.sent.append((model.name, threading.current_thread().name.startswith(POOL_THREAD), json.dumps(params)))

    def clear(self):
        self.sent.clear()

    def operations(self, alongside):
        return [name for name, pooled, _ in self.sent if pooled == alongside]

    def touching(self, *prefixes):
        return [(name, params) for name, _, params in self.sent if any(p in params for p in prefixes)]


def test_a_repeated_question_is_a_hit_that_costs_nothing_and_still_counts_against_the_limits(
    make_app, call, cached_openai, openai_state, dynamodb, table
):
    # Given a question answered once (a miss: computed, billed, on the books)
    app, _ = make_app(cached_openai)
    token = user()
    status, first, _ = ask(call, app, token)
    assert (status, first["meta"]["cache"]) == (200, "miss")
    assert first["meta"]["cost"]["query_cost"] > 0
    billed = openai_state.billed_records()
    books = budget_and_ledgers(dynamodb, table)
    count_before = int(limits_item(dynamodb, table, token)["daily_count"]["N"])

    # When the same user asks it again
    status, second, _ = ask(call, app, token)

    # Then it is served from the cache: same answer and sources, nothing billed, nothing booked
    assert (status, second["meta"]["cache"]) == (200, "hit")
    assert answer_part(second) == answer_part(first)
    assert second["meta"]["cost"]["query_cost"] == 0
    assert second["meta"]["cost"]["daily_total"] == first["meta"]["cost"]["daily_total"]
    assert second["usage"] == {**first["usage"], "prompt_tokens": 0, "completion_tokens": 0, "embedding_tokens": 0}
    assert second["meta"]["degraded"] is None
    assert second["diagnostics"] == []
    assert second["errors"] == []
    assert openai_state.billed_records() == billed
    assert budget_and_ledgers(dynamodb, table) == books
    (total,) = items(dynamodb, table, "BUDGET#")
    assert int(total["spent"]["N"]) == billed_nanos(billed, "gpt-4o-mini", "text-embedding-3-small")
    # ... but the admission was consumed as for any query
    assert int(limits_item(dynamodb, table, token)["daily_count"]["N"]) == count_before + 1
    assert second["meta"]["rate_limit"]["daily_remaining"] == first["meta"]["rate_limit"]["daily_remaining"] - 1


def test_a_hit_shows_the_users_own_cap_and_what_is_left_of_it(make_app, call, cached):
    # Given a user with a dollar cap who paid for one answer
    app, _ = make_app({**cached, "USER_DAILY_BUDGET_USD": "0.05"})
    token = user()
    status, first, _ = ask(call, app, token)
    assert (status, first["meta"]["cache"]) == (200, "miss")

    # When the same question is served from the cache
    status, second, _ = ask(call, app, token)

    # Then meta shows the cap as it stands: unchanged by the free hit
    assert (status, second["meta"]["cache"]) == (200, "hit")
    cost = second["meta"]["cost"]
    assert cost["user_daily_budget"] == 0.05
    assert cost["user_daily_total"] == first["meta"]["cost"]["user_daily_total"] > 0
    assert cost["user_remaining"] == first["meta"]["cost"]["user_remaining"]


@pytest.mark.parametrize(
    "variant",
    [FIGHTER.upper(), f"  {FIGHTER.replace(' ', '   ')}\t", FIGHTER.replace(" ", "\u00a0").replace("9", "\uff19")],
)
def test_case_whitespace_and_unicode_variants_are_hits(make_app, call, cached, variant):
    app, _ = make_app(cached)
    _, first, _ = ask(call, app, user())

    status, body, _ = ask(call, app, user(), question=variant)

    assert (status, body["meta"]["cache"]) == (200, "hit")
    assert answer_part(body) == answer_part(first)


def test_a_different_k_model_or_prompt_version_is_a_miss(make_app, call, cached, monkeypatch):
    app, _ = make_app(cached)
    assert ask(call, app, user(), k=3)[1]["meta"]["cache"] == "miss"
    assert ask(call, app, user(), k=3)[1]["meta"]["cache"] == "hit"

    assert ask(call, app, user(), k=4)[1]["meta"]["cache"] == "miss"
    other_cap, _ = make_app({**cached, "MAX_COMPLETION_TOKENS": "200"})
    assert ask(call, other_cap, user(), k=3)[1]["meta"]["cache"] == "miss"
    monkeypatch.setattr("dnd_rag.container.PROMPT_VERSION", "a-new-prompt")
    new_prompt, _ = make_app(cached)
    assert ask(call, new_prompt, user(), k=3)[1]["meta"]["cache"] == "miss"


def test_another_chat_model_is_a_miss(make_app, call, cached_openai, openai_state):
    app, _ = make_app(cached_openai)
    assert ask(call, app, user())[1]["meta"]["cache"] == "miss"

    other, _ = make_app({**cached_openai, "OPENAI_MODEL": "gpt-4o"})
    status, body, _ = ask(call, other, user())

    assert (status, body["meta"]["cache"], body["usage"]["model"]) == (200, "miss", "gpt-4o")


def test_re_ingesting_the_corpus_makes_the_next_ask_a_miss(make_app, call, cached):
    app, _ = make_app(cached)
    ask(call, app, user())
    assert ask(call, app, user())[1]["meta"]["cache"] == "hit"

    ingest(Container(load_settings(cached)), corpus_files())  # nothing changed in the files: a new version still

    assert ask(call, app, user())[1]["meta"]["cache"] == "miss"
    assert ask(call, app, user())[1]["meta"]["cache"] == "hit"  # the miss's answer replaced the stale entry


def test_stamping_a_corpus_built_elsewhere_makes_the_next_ask_a_miss(make_app, call, cached, dynamodb, table):
    app, _ = make_app(cached)
    ask(call, app, user())
    assert ask(call, app, user())[1]["meta"]["cache"] == "hit"
    assert item(dynamodb, table, "CORPUS#rules_offline", "VERSION") is None  # "unstamped" so far

    stamped = subprocess.run(
        [sys.executable, "-m", "infra.scripts.ingest", "--stamp-only"],
        cwd=REPO_ROOT,
        env=python_env(cached),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )

    assert stamped.returncode == 0, stamped.stderr
    version = item(dynamodb, table, "CORPUS#rules_offline", "VERSION")["version"]["S"]
    assert version in stamped.stdout
    assert ask(call, app, user())[1]["meta"]["cache"] == "miss"


def test_an_entry_past_its_ttl_is_a_miss_even_before_dynamodb_deletes_it(make_app, call, cached, dynamodb, table):
    clock = Clock()
    app, _ = make_app({**cached, "ANSWER_CACHE_TTL": "60"}, clock=clock)
    ask(call, app, user())
    clock.now += 59
    assert ask(call, app, user())[1]["meta"]["cache"] == "hit"

    clock.now += 2  # 61 s after it was stored

    assert len(items(dynamodb, table, "CACHE#")) == 1  # still there: TTL deletion is lazy
    assert ask(call, app, user())[1]["meta"]["cache"] == "miss"


def test_with_the_cache_off_nothing_reads_or_writes_it(make_app, call, cached, dynamodb, table):
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    calls = Calls(client)
    app, _ = make_app({**cached, "ANSWER_CACHE_TTL": "0"}, dynamodb_client=client)

    bodies = [ask(call, app, user())[1] for _ in range(2)]

    assert [b["meta"]["cache"] for b in bodies] == ["off", "off"]
    assert all(b["meta"]["cost"]["query_cost"] > 0 for b in bodies)  # both computed and paid
    assert calls.sent
    assert "BatchGetItem" not in {name for name, _, _ in calls.sent}
    assert calls.touching("CACHE#", "CORPUS#") == []
    assert items(dynamodb, table, "CACHE#") == []


def test_a_debug_hit_carries_no_diagnostics_of_the_request_that_computed_it(make_app, call, cached, dynamodb, table):
    app, _ = make_app(cached)
    _, alice, _ = ask(call, app, user(), debug=True)
    assert {d["stage"] for d in alice["diagnostics"]} == {"retrieval", "budget", "tokens", "timings"}

    status, bob, _ = ask(call, app, user(), debug=True)

    assert (status, bob["meta"]["cache"]) == (200, "hit")
    assert [d["stage"] for d in bob["diagnostics"]] == ["cache"]
    assert bob["diagnostics"][0]["result"] == "hit"
    assert bob["diagnostics"][0]["age_seconds"] >= 0
    for diagnostic in alice["diagnostics"]:
        assert diagnostic not in bob["diagnostics"]
    (entry,) = items(dynamodb, table, "CACHE#")
    assert set(entry) == {"pk", "sk", "answer", "sources", "model", "versions", "stored_at", "expires_at"}


def test_degraded_answers_are_not_cached(make_app, call, cached, dynamodb, table):
    # Given a budget of about 4 standard k=3 queries (measured on a scratch table)
    scratch = f"cache-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, scratch)
    measure, _ = make_app({**cached, "TABLE_NAME": scratch, "ANSWER_CACHE_TTL": "0"})
    cost = round(ask(call, measure, user(), k=3)[1]["meta"]["cost"]["query_cost"] * NANOS_PER_USD)
    env = {
        **cached,
        "DAILY_BUDGET_USD": str(4 * cost / NANOS_PER_USD),
        "MAX_COMPLETION_TOKENS": "60",
        "BUDGET_MIN_COMPLETION_TOKENS": "20",
    }
    app, _ = make_app(env)

    # When a k=50 question is answered degraded to fit
    status, body, _ = ask(call, app, user(), k=50)

    # Then that answer is not kept for anyone
    assert status == 200, body
    assert body["meta"]["degraded"] is not None
    assert body["meta"]["cache"] == "miss"
    assert items(dynamodb, table, "CACHE#") == []


def test_a_failed_cache_write_still_answers_and_the_next_ask_computes_again(
    make_app, call, cached, dynamodb, table, emulator_faults
):
    app, _ = make_app(cached)
    with emulator_faults.injecting([{"fault": "internal_error", "operations": ["PutItem"], "key_prefix": "CACHE#"}]):
        status, first, _ = ask(call, app, user())
        assert emulator_faults.injected()["internal_error"]["PutItem"] >= 1

    assert (status, first["meta"]["cache"]) == (200, "miss")
    assert "250,001" in first["answer"]
    assert items(dynamodb, table, "CACHE#") == []
    assert ask(call, app, user())[1]["meta"]["cache"] == "miss"
    assert ask(call, app, user())[1]["meta"]["cache"] == "hit"


def test_concurrent_identical_misses_leave_one_intact_entry(make_app, call, cached_openai, openai_state):
    # Given several containers asking the same new question at once, while OpenAI is slow, so all
    # of them look it up before any has stored an answer
    containers = [make_app(cached_openai)[0] for _ in range(6)]
    openai_state.control({"delay": 0.4})
    start = threading.Barrier(len(containers))

    def one(app):
        start.wait(timeout=30)
        return ask(call, app, user())

    with ThreadPoolExecutor(len(containers)) as pool:
        results = list(pool.map(one, containers))
    openai_state.control({"delay": 0})

    # Then every one is answered, several computed it, and the entry afterwards is one of them, whole
    assert [status for status, _, _ in results] == [200] * len(containers)
    misses = [body for _, body, _ in results if body["meta"]["cache"] == "miss"]
    assert len(misses) >= 2
    status, hit, _ = ask(call, make_app(cached_openai)[0], user())
    assert (status, hit["meta"]["cache"]) == (200, "hit")
    assert answer_part(hit) in [answer_part(body) for body in misses]


def test_a_rate_limited_user_gets_429_even_when_the_answer_is_cached(make_app, call, cached):
    app, _ = make_app(cached)
    ask(call, app, user())
    tight, _ = make_app({**cached, "TOKEN_BUCKET_CAPACITY": "1"})
    token = user()

    status, body, _ = ask(call, tight, token)
    assert (status, body["meta"]["cache"]) == (200, "hit")  # the hit took the only token

    status, body, headers = ask(call, tight, token)
    assert (status, body["error"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) > 0


def test_a_hit_is_one_sequential_round_trip_and_a_miss_stays_at_four(make_app, call, cached):
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    calls = Calls(client)
    app, _ = make_app(cached, dynamodb_client=client)
    token = user()
    ask(call, app, token, question="What is a beholder?")  # cold: token validated and cached

    calls.clear()
    assert ask(call, app, token)[1]["meta"]["cache"] == "miss"
    # on the request's thread: admit, the budget's hold, the ledger transaction, settle the total;
    # alongside (dnd_rag.logic.common.concurrently.together): the lookup with the admission, the user's
    # hold with the budget's, the entry with the ledger
    assert calls.operations(alongside=False) == ["UpdateItem", "UpdateItem", "TransactWriteItems", "UpdateItem"]
    # the lookup reads the day's budget shards (a Query) alongside its BatchGetItem, and the settle
    # reads them alongside its own write (the day's total as of this answer)
    assert sorted(calls.operations(alongside=True)) == ["BatchGetItem", "PutItem", "Query", "Query", "UpdateItem"]

    calls.clear()
    assert ask(call, app, token)[1]["meta"]["cache"] == "hit"
    assert calls.operations(alongside=False) == ["UpdateItem"]
    assert sorted(calls.operations(alongside=True)) == ["BatchGetItem", "Query"]


def emf_metrics(stdout):
    """{metric name: (unit, dimension sets)} of the Embedded Metric Format lines the handler printed."""
    found = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], []).append(
                    (metric["Unit"], directive["Dimensions"], record[metric["Name"]])
                )
    return found


def test_hits_and_misses_are_the_metrics_the_dashboard_reads(cached, corpus_ingested, monkeypatch, capfd):
    # Given the Lambda entry point, cold-started with the cache on
    for key, value in cached.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("dnd_rag.handlers.api", None)
    handler = importlib.import_module("dnd_rag.handlers.api").lambda_handler
    metrics.clear_metrics()  # what earlier in-process tests added without a handler to flush it
    capfd.readouterr()

    # When a question is asked twice
    for _ in range(2):
        handler(http_event("POST", "/api/query", token=user(), body={"question": FIGHTER}), lambda_context())

    # Then one AnswerCacheMiss and one AnswerCacheHit, counts, with no dimension of their own
    emitted = emf_metrics(capfd.readouterr().out)
    ((_, dimensions, _), _) = emitted["Admitted"]  # what every metric of the service carries
    assert emitted["AnswerCacheMiss"] == [("Count", dimensions, [1.0])]
    assert emitted["AnswerCacheHit"] == [("Count", dimensions, [1.0])]
