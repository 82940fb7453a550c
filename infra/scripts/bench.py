"""`make bench`: what the limiter and the query path cost, measured side by side in one run.

Starts its own serialized AWS emulator, Chroma server and dev auth server on free ports, then:
  1. a bare DynamoDB GetItem on the emulator (the yardstick),
  2. the limiter admitting (warm container), rejecting, and admitting with a cold guess,
  3. POST /api/query through the real handler (offline providers, warm container, cached token),
     admitted and rate-limited, and the DynamoDB round trips of one answered query (at most 4
     sequential steps; calls sent together count once) and of one refused by the user's cap,
  4. budget utilization: default-k queries from 3 users on 4 concurrent in-process containers
     (threads, each its own client and app) on a fresh table until the budget refuses for good,
     at DAILY_BUDGET_USD 0.01 and 1 (``--budgets``): the share spent at the first 503, at the end,
     and the 80 % and 100 % mails in the emulator's SES. The $1 run answers ~3,000 queries (~3 min).
  5. the operator controls on the query path (infra/scripts/bench_controls.py): a query with a fresh
     and with a stale copy of the controls, and how soon a change reaches another container.
Latencies are reported as p50/p95 and as ratios to the GetItem of the same run, so the figures
compare across machines; DynamoDB round trips are counted with a botocore event hook.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import CLIENT_CONFIG, RETRY_ATTEMPTS
from dnd_rag.dal.limits.rate_limit import DynamoLimitStore
from dnd_rag.dal.money.budget import DynamoBudgetStore
from dnd_rag.errors import RateLimitedError
from dnd_rag.handlers.routes import create_app
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter
from dnd_rag.logic.money.budget import Budget, Charge
from dnd_rag.logic.money.user_budget import SPENT_MEMO_SECONDS
from dnd_rag.observability import logger
from dnd_rag.pricing import TokenUsage, usd_to_nanos
from dnd_rag.settings import load_settings
from infra.local.api_server import LambdaContext, build_event
from infra.local.auth_server import make_auth_server
from infra.local.aws_guard import use_local_aws
from infra.local.bootstrap import ensure_table, verify_identities
from infra.local.processes import free_port, running
from infra.local.stack import chroma_command, local_environment
from infra.scripts.bench_controls import bench_controls, call_api
from infra.scripts.ingest import document_paths, ingest
from infra.scripts.round_trips import RoundTripRecorder

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def timed(samples: int, action: Callable[[], object]) -> list[float]:
    durations = []
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF metric lines are not the report
        for _ in range(samples):
            started = time.perf_counter()
            action()
            durations.append((time.perf_counter() - started) * 1000)
    return durations


def p(values: list[float], quantile: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(quantile * 100) - 1]


def report(
    label: str, values: list[float], baseline: list[float], trips: float | None, steps: float | None = None
) -> None:
    p50, p95 = p(values, 0.50), p(values, 0.95)
    ratio = f"{p50 / p(baseline, 0.50):5.2f}x {p95 / p(baseline, 0.95):5.2f}x"
    trips_text = f"{trips:5.2f}" if trips is not None else "    -"
    steps_text = f"{steps:5.2f}" if steps is not None else (trips_text if trips is not None else "    -")
    print(f"  {label:44s} {p50:8.2f} {p95:8.2f}   {ratio}   {trips_text}  {steps_text}")


def expect_rejection(action: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            action()
        except RateLimitedError:
            return
        raise AssertionError("expected a rejection")

    return run


def bench_limiter(client: Any, table: str, samples: int, baseline: list[float]) -> None:
    trips = RoundTripRecorder(client, recording=True)
    store = DynamoLimitStore(client, table)
    roomy = Policy(capacity=10**9, refill_rate=1e-6, daily_limit=10**9)
    tight = Policy(capacity=1, refill_rate=1e-6, daily_limit=10**9)

    warm = RateLimiter(store)
    key = f"USER#bench-{uuid.uuid4().hex}"
    warm.admit(key, roomy, time.time())
    before = trips.count
    admitted = timed(samples, lambda: warm.admit(key, roomy, time.time()))
    report("limiter: admitted (warm container)", admitted, baseline, (trips.count - before) / samples)

    blocked = f"USER#bench-{uuid.uuid4().hex}"
    warm.admit(blocked, tight, time.time())
    before = trips.count
    rejected = timed(samples, expect_rejection(lambda: warm.admit(blocked, tight, time.time())))
    report("limiter: rejected (warm container)", rejected, baseline, (trips.count - before) / samples)

    before = trips.count
    cold = timed(samples, lambda: RateLimiter(store).admit(key, roomy, time.time()))
    report("limiter: admitted, cold guess (new container)", cold, baseline, (trips.count - before) / samples)


def bench_exactness(client: Any, table: str) -> None:
    """Correctness under contention, counted: admissions against a burst, spend against a budget."""
    limiter = RateLimiter(DynamoLimitStore(client, table))
    key, policy, now = f"USER#race-{uuid.uuid4().hex}", Policy(15, 1e-6, 1000), time.time()

    def admit(_: int) -> bool:
        try:
            limiter.admit(key, policy, now)
            return True
        except RateLimitedError:
            return False

    with ThreadPoolExecutor(max_workers=50) as pool:
        admitted = sum(pool.map(admit, range(50)))
    print(f"  limiter race: 50 concurrent requests, burst 15 -> {admitted} admitted (exact: 15)")

    budget = Budget(DynamoBudgetStore(client, table), limit=1_000_000, clock=time.time)
    settled: list[int] = []
    lock = threading.Lock()

    def spend(worker: int) -> None:
        while True:
            hold, totals = budget.open(f"race-{worker}", "bench", 50_000)
            if hold is None:
                if totals.spent + 50_000 > budget.limit:
                    return
                continue
            cost = 20_000 + (worker * 7919 + len(settled) * 104_729) % 30_001  # 20k..50k, never above the hold
            budget.settle(hold, Charge(f"race-{worker}", "bench", TokenUsage(), cost))
            with lock:
                settled.append(cost)

    # each settle records a metric; Powertools prints them at 100 values: not part of the report
    with contextlib.redirect_stdout(io.StringIO()), ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(spend, range(10)))
    spent = budget.totals().spent
    print(
        f"  budget race: 10 workers spend to exhaustion -> {len(settled)} settled, spent {spent} of "
        f"{budget.limit} nano-USD, overshoot {max(0, spent - budget.limit)} (exact: 0), "
        f"books {'match' if spent == sum(settled) else 'DIFFER'}"
    )


def bench_query(env: dict[str, str], client: Any, samples: int, baseline: list[float]) -> None:
    roomy = {**env, "TOKEN_BUCKET_CAPACITY": str(10**6), "DAILY_USER_REQUEST_LIMIT": str(10**6)}
    body = b'{"question": "How many experience points does a fighter need to become 9th level?"}'

    def querying(settings: dict[str, str]) -> Callable[..., dict[str, Any]]:
        app = create_app(Container(load_settings(settings), dynamodb_client=client))

        def query(token: str, question: bytes = body) -> dict[str, Any]:
            event = build_event(
                "POST",
                "/api/query",
                "",
                {"authorization": f"Bearer {token}", "content-type": "application/json"},
                question,
                "POST /api/query",
                {},
                "127.0.0.1",
            )
            return app.resolve(event, LambdaContext("bench"))

        with contextlib.redirect_stdout(io.StringIO()):
            assert query("dev-alice")["statusCode"] == 200  # cold start, token cached from here on
        return query

    def measured(label: str, action: Callable[[], object]) -> None:
        trips = RoundTripRecorder(client, recording=True)
        values = timed(samples, action)
        report(label, values, baseline, trips.count / samples, trips.sequential() / samples)
        trips.close()

    fresh = iter(range(10**9))  # a question the cache has not seen, each time (the same kind in both rows)

    def new_question() -> bytes:
        return json.dumps({"question": f"How many experience points does a fighter need? ({next(fresh)})"}).encode()

    uncached = querying({**roomy, "ANSWER_CACHE_TTL": "0"})
    measured("POST /api/query: answered, cache off", lambda: uncached("dev-alice", new_question()))
    cached = querying({**roomy, "ANSWER_CACHE_TTL": "86400"})
    measured("POST /api/query: answered, cache miss", lambda: cached("dev-alice", new_question()))
    measured("POST /api/query: cache hit", lambda: cached("dev-alice"))

    tight = Container(load_settings({**env, "TOKEN_BUCKET_CAPACITY": "1"}), dynamodb_client=client)
    tight_app = create_app(tight)
    event = build_event(
        "POST", "/api/query", "", {"authorization": "Bearer dev-bob"}, body, "POST /api/query", {}, "127.0.0.1"
    )

    def rejected_query() -> None:
        status = tight_app.resolve(dict(event), LambdaContext("bench"))["statusCode"]
        assert status == 429, status

    with contextlib.redirect_stdout(io.StringIO()):
        tight_app.resolve(event, LambdaContext("bench"))  # uses the only token
        rejected_query()  # warms the container's guess
    measured("POST /api/query: rate-limited (cache on)", rejected_query)


def bench_round_trips(env: dict[str, str]) -> None:
    """The DynamoDB requests of one query on a warm container with a cached token: answered with
    the cache off, a cache miss (answered), a cache hit."""
    runs = (("0", [("answered, cache off", "off")]), ("86400", [("cache miss", "miss"), ("cache hit", "hit")]))
    for ttl, cases in runs:
        client = boto3.client("dynamodb", config=CLIENT_CONFIG)
        table = f"dnd-rag-bench-trips-{uuid.uuid4().hex[:8]}"
        ensure_table(client, table)
        settings = load_settings(
            {
                **env,
                "TABLE_NAME": table,
                "TOKEN_BUCKET_CAPACITY": "1000",
                "DAILY_USER_REQUEST_LIMIT": "1000",
                "ANSWER_CACHE_TTL": ttl,
            }
        )
        app = create_app(Container(settings, dynamodb_client=client))
        with contextlib.redirect_stdout(io.StringIO()):  # cold: the token is validated and cached
            assert _ask(app, "dev-alice", b'{"question": "What is a beholder?"}')[0] == 200
        for label, expected in cases:
            sent: list[str] = []

            def record(event_name: str, sink: list[str] = sent, **_: Any) -> None:
                sink.append(event_name.rsplit(".", 1)[1])

            client.meta.events.register("before-send.dynamodb", record)
            trips = RoundTripRecorder(client, recording=True)
            capacity(env, "DELETE")
            with contextlib.redirect_stdout(io.StringIO()):
                status, body = _ask(app, "dev-alice")
            used = capacity(env, "GET")
            client.meta.events.unregister("before-send.dynamodb", record)
            trips.close()
            assert (status, body["meta"]["cache"]) == (200, expected), (status, body)
            steps = trips.sequential()
            verdict = "ok" if steps <= 4 else "OVER 4"
            print(f"  {label:20s} warm, cached token: {steps} sequential ({verdict}), {len(sent)} calls: {sent}")
            items = ", ".join(f"{key.split('|')[0]} {v['wcu']:g}" for key, v in used["items"].items() if v["wcu"])
            print(f"  {'':20s} WCU {used['total']['wcu']:g}, RCU {used['total']['rcu']:g} (written: {items})")


def capacity(env: dict[str, str], method: str) -> dict[str, Any]:
    """The emulator's capacity meter (infra/local/aws_emulator.py): GET reads it, DELETE zeroes it."""
    response = httpx.request(method, f"{env['AWS_ENDPOINT_URL']}/_emulator/capacity", timeout=10)
    response.raise_for_status()
    return response.json() if response.content else {}


def report_retry_budget() -> None:
    """What one DynamoDB operation may cost at most under each failure (dal/dynamo.py)."""
    sdk = CLIENT_CONFIG.retries["total_max_attempts"]
    send = CLIENT_CONFIG.connect_timeout + CLIENT_CONFIG.read_timeout
    print(
        f"retry budget per DynamoDB operation: throttled {sdk} sends (~1 s of backoff), then 503 + Retry-After; "
        f"5xx/conflict {sdk} x {RETRY_ATTEMPTS} = {sdk * RETRY_ATTEMPTS} sends (waits < 2 s); "
        f"unreachable {sdk} x {send:g} s = {sdk * send:g} s, then 503"
    )


def bench_user_cap_round_trips(env: dict[str, str]) -> None:
    """The DynamoDB round trips of one answered query on a warm container with a cached token, and of
    one refused by the user's dollar cap: sequential steps (calls sent together count once) and calls."""
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    table = f"dnd-rag-bench-trips-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    limits = {
        "TABLE_NAME": table,
        "TOKEN_BUCKET_CAPACITY": "1000",
        "DAILY_USER_REQUEST_LIMIT": "1000",
        "ANSWER_CACHE_TTL": "0",
    }
    app = create_app(Container(load_settings({**env, **limits}), dynamodb_client=client))
    capped = create_app(
        Container(load_settings({**env, **limits, "USER_DAILY_BUDGET_USD": "0.000001"}), dynamodb_client=client)
    )
    trips = RoundTripRecorder(client)
    cases = [
        ("answered query", app, 200, 4, 0.0),
        # the container remembers a spent cap for SPENT_MEMO_SECONDS: past that, a refusal asks the store
        ("refused by the user's cap (429)", capped, 429, None, SPENT_MEMO_SECONDS + 0.1),
        ("refused again by the user's cap within 5 s", capped, 429, 1, 0.0),
    ]
    for label, served_by, expected, most, wait in cases:
        with contextlib.redirect_stdout(io.StringIO()):
            if served_by is not capped or wait:
                _ask(served_by, "dev-bob")  # cold: the token is validated and cached, the sizes learned
            time.sleep(wait)
            trips.start()
            status, body = _ask(served_by, "dev-bob")
            trips.stop()
        assert status == expected, (status, body)
        steps = trips.steps()
        verdict = "" if most is None else (" ok" if len(steps) <= most else f" OVER {most}")
        print(
            f"  {label}, warm container, cached token: {len(steps)} sequential{verdict}, "
            f"{len(trips.calls)} calls: {' -> '.join(' + '.join(step) for step in steps)}"
        )


QUESTION_BODY = b'{"question": "How many experience points does a fighter need to become 9th level?"}'


def _ask(app: Any, token: str, body: bytes = QUESTION_BODY) -> tuple[int, dict[str, Any]]:
    return call_api(app, "POST", "/api/query", token, body)


def sent_alerts(endpoint: str, recipient: str) -> list[str]:
    """Subjects of the e-mails the emulator's SES accepted for ``recipient``."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as response:  # noqa: S310 - loopback
        messages = json.load(response)["ses"]["Message"]
    return [m["subject"] for m in messages if recipient in m["destinations"]["ToAddresses"]]


def bench_utilization(env: dict[str, str], usd: str, containers: int) -> dict[str, Any]:
    """Default-k queries from 3 users on ``containers`` concurrent warm containers (threads, each
    with its own client and app), on a fresh table, until the budget refuses for good."""
    table = f"dnd-rag-bench-budget-{uuid.uuid4().hex[:8]}"
    recipient = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    setup = boto3.client("dynamodb", config=CLIENT_CONFIG)
    ensure_table(setup, table)
    verify_identities(boto3.client("ses"), env["ALERT_FROM"], recipient)
    run_env = {
        **env,
        "TABLE_NAME": table,
        "DAILY_BUDGET_USD": usd,
        "ALERT_EMAIL": recipient,
        "TOKEN_BUCKET_CAPACITY": str(10**9),
        "DAILY_USER_REQUEST_LIMIT": str(10**9),
        "ANSWER_CACHE_TTL": "0",  # the same question again and again: every one must be computed and paid
        "MAX_IN_FLIGHT_PER_USER": "1000",  # 4 containers, 3 users: the global budget is measured here
        "USER_DAILY_BUDGET_USD": "none",  # 3 users at the default $0.05 cap could never spend $1
    }
    limit = usd_to_nanos(load_settings(run_env).daily_budget_usd)
    tokens = ["dev-alice", "dev-bob", "dev-admin"]
    done = threading.Event()
    lock = threading.Lock()
    stats: dict[str, Any] = {"answered": 0, "degraded": 0, "refused": Counter(), "first_refusal_pct": None}
    trips_answered: list[int] = []

    def serve(index: int) -> None:
        client = boto3.client("dynamodb", config=CLIENT_CONFIG)
        trips = RoundTripRecorder(client, recording=True)
        app = create_app(Container(load_settings(run_env), dynamodb_client=client))
        n = 0
        while not done.is_set():
            before = trips.count
            status, body = _ask(app, tokens[(index + n) % len(tokens)])
            n += 1
            with lock:
                if status == 200:
                    stats["answered"] += 1
                    stats["degraded"] += body["meta"]["degraded"] is not None
                    trips_answered.append(trips.count - before)
                    continue
                if status == 503 and body.get("error") == "budget_exceeded":
                    stats["refused"][body["reason"]] += 1
                    if stats["first_refusal_pct"] is None:
                        stats["first_refusal_pct"] = body["budget_info"]["percentage"]
                    if body["reason"] == "spent":
                        done.set()
                    continue
                raise AssertionError(f"unexpected answer {status}: {body}")

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), ThreadPoolExecutor(containers) as pool:
        list(pool.map(serve, range(containers)))
    seconds = time.perf_counter() - started
    totals = DynamoBudgetStore(setup, table).read_totals(utc_day(time.time()))
    subjects = sent_alerts(env["AWS_ENDPOINT_URL"], recipient)
    return {
        **stats,
        "usd": usd,
        "spent_pct": 100 * totals.spent / limit,
        "overshoot": max(0, totals.spent - limit),
        "open_holds": totals.committed - totals.spent,
        "alerts_80": sum("Warning" in subject for subject in subjects),
        "alerts_100": sum("exhausted" in subject for subject in subjects),
        "trips_mean": statistics.mean(trips_answered),
        "trips_max": max(trips_answered),
        "seconds": seconds,
    }


def report_utilization(runs: list[dict[str, Any]], containers: int) -> None:
    print(f"budget utilization (offline providers, default k, {containers} concurrent containers, 3 users):")
    print(
        "  (1st 503 at: spent when the first budget_exceeded came, whatever its reason; spent: when the first "
        "reason=spent came and the run stopped)"
    )
    print(
        f"  {'DAILY_BUDGET_USD':>16s} {'answered':>8s} {'degraded':>8s} {'1st 503 at':>10s} {'spent':>8s} "
        f"{'80% mail':>8s} {'100% mail':>9s} {'trips/answer':>12s} {'seconds':>7s}"
    )
    for run in runs:
        first = run["first_refusal_pct"]
        print(
            f"  {run['usd']:>16s} {run['answered']:8d} {run['degraded']:8d} "
            f"{(f'{first:.2f} %' if first is not None else '-'):>10s} {run['spent_pct']:7.2f}% "
            f"{run['alerts_80']:8d} {run['alerts_100']:9d} "
            f"{run['trips_mean']:5.2f} (max {run['trips_max']}) {run['seconds']:7.1f}"
        )
        refused = ", ".join(f"{reason} {count}" for reason, count in sorted(run["refused"].items()))
        print(
            f"  {'':>16s} refusals: {refused}; overshoot {run['overshoot']} nano-USD; "
            f"left held {run['open_holds']} nano-USD"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--budgets", default="0.01,1", help="DAILY_BUDGET_USD values for the utilization runs")
    parser.add_argument("--containers", type=int, default=4, help="concurrent containers in the utilization runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch)
        aws_port, chroma_port = free_port(), free_port()
        auth = make_auth_server("127.0.0.1", 0)
        threading.Thread(target=auth.serve_forever, daemon=True).start()
        env = local_environment(
            {
                "LOCAL_AWS_PORT": str(aws_port),
                "CHROMA_PORT": str(chroma_port),
                "LOCAL_DATA_DIR": scratch,
                "AUTH_API_URL": f"http://127.0.0.1:{auth.server_address[1]}",
                "TABLE_NAME": "dnd-rag-bench",
                "CHROMA_COLLECTION": "bench_rules",
                "LLM_PROVIDER": "offline",
                "EMBEDDING_PROVIDER": "offline",
            }
        )
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{aws_port}"  # its own emulator, whatever the shell says
        use_local_aws(env, "bench")
        emulator = [sys.executable, "-m", "infra.local.aws_emulator", "--port", str(aws_port)]
        with (
            running(emulator, aws_port, data / "emulator.log", env),
            running(chroma_command(env, data), chroma_port, data / "chroma.log", env),
        ):
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                os.environ[name] = env[name]  # the emulator's endpoint and dummy credentials
            client = boto3.client("dynamodb", config=CLIENT_CONFIG)
            ensure_table(client, env["TABLE_NAME"])
            ingest(Container(load_settings(env)), document_paths([CORPUS]))
            key = {"pk": {"S": "BENCH#get"}, "sk": {"S": "ITEM"}}
            client.put_item(TableName=env["TABLE_NAME"], Item={**key, "value": {"N": "1"}})
            baseline = timed(args.samples, lambda: client.get_item(TableName=env["TABLE_NAME"], Key=key))

            print(
                f"dnd_rag benchmark: {args.samples} samples each, serialized moto emulator on loopback, "
                f"Python {sys.version.split()[0]}"
            )
            print(f"  {'what':44s} {'p50 ms':>8s} {'p95 ms':>8s}   {'ratio to GetItem':>16s}   DDB calls  sequential")
            report("bare GetItem (yardstick)", baseline, baseline, 1.0)
            bench_limiter(client, env["TABLE_NAME"], args.samples, baseline)
            bench_query(env, client, min(args.samples, 100), baseline)
            print("round trips (same emulator):")
            bench_round_trips(env)
            bench_user_cap_round_trips(env)
            report_retry_budget()
            bench_controls(env, p(baseline, 0.50), min(args.samples, 100))
            print("correctness under contention (same emulator):")
            ensure_table(client, "dnd-rag-bench-race")
            bench_exactness(client, "dnd-rag-bench-race")
            budgets = [usd.strip() for usd in args.budgets.split(",") if usd.strip()]
            logger.setLevel("ERROR")  # thousands of expected 503s at the end of each run are not the report
            runs = [bench_utilization(env, usd, args.containers) for usd in budgets]
            report_utilization(runs, args.containers)
        auth.shutdown()


if __name__ == "__main__":
    main()
