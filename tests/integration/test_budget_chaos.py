"""Chaos: the money stays right when everything fails at once (SPEC §4 "Budget", §7, issue 8 item 8).

Several simulated Lambda containers (worker processes running the real Lambda entry module, see
``tests/support/query_worker.py``) answer concurrent queries from several users through the real
OpenAI client against the fake OpenAI server, until the day's budget is exhausted, while

- the emulator throttles, fails (5xx), loses responses of applied writes and reports transaction
  conflicts at random, and holds every transaction open for a window (a real DynamoDB trait);
- the fake OpenAI answers 429 and 500 at random and sometimes bills a request, then holds its
  answer past the client's timeout (``timeout_after_billing``);
- containers are SIGKILLed in the middle of a request, at a random moment or the moment the fake
  OpenAI has billed their chat call, like a Lambda crashing or timing out (a new container, forked
  from the warm parent, takes the dead one's place).

Then the faults stop, the leases of the dead requests run out, and the next requests reclaim what
the dead left behind. The fake OpenAI's record of everything it billed (delivered or not) is the
ground truth the books are checked against: in total, and per user, since each request's OpenAI
calls carry its user in their path; a killed request is its user's only one, so for it the check
is per request.

Every random choice is seeded (``CHAOS_SEED``, default 8); thread timing still varies from run to
run, which is the point. Run it alone: ``pytest tests/integration/test_budget_chaos.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dnd_rag.handlers.scheduled import run_task
from dnd_rag.logic.common.clock import next_midnight
from dnd_rag.pricing import NANOS_PER_USD
from infra.local.bootstrap import ensure_table
from tests.fakes.organization_api import DEFAULT_ADMIN_KEY
from tests.support.billing import billed_nanos
from tests.support.budget_items import day_total
from tests.support.clock import Clock
from tests.support.events import http_event, parse
from tests.support.servers import python_env

SEED = int(os.environ.get("CHAOS_SEED", "8"))
CONTAINERS = 6
SHARDS = 4
USERS = 4
BUDGET_IN_QUERIES = 40  # the budget covers about this many standard queries at their real cost
MAX_REQUESTS_PER_CONTAINER = 40  # a bound on the run if the budget somehow never ran out
LAMBDA_TIMEOUT_SECONDS = 8.0  # each invocation; the parent kills a container that overruns it
LEASE_SECONDS = 12  # above the Lambda timeout, as in production (60 s against 29 s)
EARLY_VICTIM_WITHIN = 8  # each container is killed once among its first requests (money still left)
KILL_PROBABILITY = 0.05  # and then at random: its container is SIGKILLed mid-request, one of two ways:
KILL_WITHIN_SECONDS = 1.5  # after a random delay (an answer takes 0.5-1.5 s here: any phase), or
KILL_ON_BILLING_SHARE = 0.5  # the moment the fake OpenAI has billed its chat call (before it settles)
OPENAI_FAULTS = [
    {"fault": "timeout_after_billing", "probability": 0.05},
    {"fault": 429, "probability": 0.05},
    {"fault": 500, "probability": 0.05},
]
OPENAI_HOLD_SECONDS = 2.0  # a timeout_after_billing answer comes this late (the client waits 1 s)
EMULATOR_FAULTS = [
    {"fault": "throttle", "probability": 0.04},
    {"fault": "internal_error", "probability": 0.03},
    {"fault": "lost_response", "probability": 0.05},
    {"fault": "conflict", "probability": 0.03},
]
TRANSACTION_WINDOW_MS = 30
QUESTIONS = [
    "What is a beholder?",
    "How many experience points does a fighter need to become 9th level?",
    "How does a cleric turn undead?",
    "What does a saving throw against spells mean?",
]
CHAT_MODEL, EMBEDDING_MODEL = "gpt-4o-mini", "text-embedding-3-small"
# Each user's own limits run too: two queries at once per user, and one user (on a plan of its own)
# with a dollar cap of a few queries
MAX_IN_FLIGHT_PER_USER = 2
CAPPED_PLAN, CAP_IN_QUERIES = "small", 4
# What a client may get while these faults are injected (a killed container gets no answer at all)
ALLOWED = {
    (200, None),
    (502, "upstream_error"),
    (503, "budget_exceeded"),
    (503, "service_unavailable"),
    (429, "user_budget_exceeded"),
    (429, "too_many_in_flight"),
}


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def sent_alerts(aws_endpoint: str, recipient: str) -> list[dict[str, Any]]:
    """The e-mails moto's SES accepted for ``recipient``."""
    with urllib.request.urlopen(f"{aws_endpoint}/moto-api/data.json") as response:
        messages = json.load(response)["ses"]["Message"]
    return [m for m in messages if recipient in m["destinations"]["ToAddresses"]]


def chat_billed(state: Any, tag: str) -> bool:
    """True once the fake OpenAI has billed a chat completion sent under ``tag``."""
    marker = f"/t/{tag}/"
    with state.lock:
        return any(marker in r["path"] and r["path"].endswith("/chat/completions") for r in state.billed)


class Containers:
    """Forks simulated Lambda containers from one warm parent (``tests/support/query_worker.py``)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self._workdir = workdir
        self._lock = threading.Lock()
        self._log = (workdir / "containers.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.query_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=python_env({**env, "QUERY_WORKER_TIMEOUT_SECONDS": str(LAMBDA_TIMEOUT_SECONDS)}),
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self._stdout, self._stdin = self.process.stdout, self.process.stdin
        ready = self._stdout.readline()
        assert ready, f"the containers' parent did not start: see {workdir / 'containers.log'}"
        assert json.loads(ready) == {"ready": True}

    def start(self) -> Container:
        path = str(self._workdir / f"c-{uuid.uuid4().hex[:8]}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        with self._lock:
            self._stdin.write(path + "\n")
            self._stdin.flush()
            pid = json.loads(self._stdout.readline())["pid"]
        connection, _ = listener.accept()
        listener.close()
        return Container(pid, connection)

    def stop(self) -> None:
        self._stdin.close()
        self.process.wait(timeout=10)
        self._log.close()


class Container:
    """One simulated Lambda container: a process serving one invocation at a time."""

    def __init__(self, pid: int, connection: socket.socket) -> None:
        self.pid = pid
        self._connection = connection
        self._stream = connection.makefile("rw", buffering=1)
        assert json.loads(self._stream.readline()) == {"pid": pid}
        self.killed_by: str | None = None
        self._kill_lock = threading.Lock()

    def _kill(self, why: str) -> None:
        with self._kill_lock:
            if self.killed_by is None:
                self.killed_by = why
                os.kill(self.pid, signal.SIGKILL)

    def ask(
        self,
        token: str,
        body: dict[str, Any],
        kill_after: float | None = None,
        kill_when: Callable[[], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The handler's answer, or None when the container died before answering. It is killed
        ``kill_after`` seconds after the request is sent, or as soon as ``kill_when()`` is true."""
        timers = [threading.Timer(LAMBDA_TIMEOUT_SECONDS + 1, self._kill, args=("timeout",))]
        if kill_after is not None:
            timers.append(threading.Timer(kill_after, self._kill, args=("chaos",)))
        answered = threading.Event()
        if kill_when is not None:

            def watch() -> None:
                while not answered.wait(0.002):
                    if kill_when():
                        self._kill("chaos")
                        return

            threading.Thread(target=watch, daemon=True).start()
        request = {"method": "POST", "path": "/api/query", "token": token, "body": body, "tag": token}
        self._stream.write(json.dumps(request) + "\n")
        self._stream.flush()
        for timer in timers:
            timer.start()
        try:
            line = self._stream.readline()
        except ConnectionResetError:
            line = ""
        answered.set()
        for timer in timers:
            timer.cancel()
        with self._kill_lock:  # a kill that lands right after the answer was written still kills
            if not line and self.killed_by is None:
                self.killed_by = "crashed"
            return json.loads(line) if line else None

    @property
    def alive(self) -> bool:
        return self.killed_by is None

    def stop(self) -> None:
        self._stream.close()
        self._connection.close()


@dataclass
class Outcome:
    container: int
    user: str
    status: int | None  # None: the container was killed mid-request
    error: str | None
    reason: str | None
    killed_by: str | None
    seconds: float


@pytest.fixture
def chaos_table(dynamodb: Any) -> str:
    name = f"chaos-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, name)
    return name


def num(item: dict[str, Any], name: str) -> int:
    return int(item.get(name, {"N": "0"})["N"])


def ledger_items(dynamodb: Any, table: str, prefix: str) -> list[dict[str, Any]]:
    """Today's ledger items whose sort key starts with ``prefix``."""
    items: list[dict[str, Any]] = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": f"LEDGER#{today()}"}, ":prefix": {"S": prefix}},
        ConsistentRead=True,
    )["Items"]
    return items


def calibrate(make_app, call, env, openai_state) -> int:
    """The mean real cost (what the fake OpenAI bills) of one standard query, on a table of its own."""
    app, _ = make_app(env)
    for question in QUESTIONS:
        status, body, _ = parse(
            call(app, http_event("POST", "/api/query", token="u-calibration", body={"question": question}))
        )
        assert status == 200, body
    cost = billed_nanos(openai_state.billed_records(), CHAT_MODEL, EMBEDDING_MODEL) // len(QUESTIONS)
    openai_state.reset()
    return cost


def test_the_books_survive_concurrent_queries_with_store_and_openai_faults_and_killed_containers(
    make_app,
    call,
    openai_env,
    any_user_auth_url,
    dynamodb,
    chaos_table,
    recipient,
    aws_endpoint,
    emulator_faults,
    openai_state,
    tmp_path,
):
    started = time.monotonic()
    env = {
        **openai_env,
        "AUTH_API_URL": any_user_auth_url,
        "ALERT_EMAIL": recipient,
        "BUDGET_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    scratch = f"chaos-cal-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, scratch)
    query_cost = calibrate(make_app, call, {**env, "TABLE_NAME": scratch}, openai_state)
    limit = BUDGET_IN_QUERIES * query_cost
    user_cap = CAP_IN_QUERIES * query_cost
    env |= {
        "TABLE_NAME": chaos_table,
        "DAILY_BUDGET_USD": str(Decimal(limit) / NANOS_PER_USD),
        "MAX_IN_FLIGHT_PER_USER": str(MAX_IN_FLIGHT_PER_USER),
        # the day's budget over shards (each holding about 10 of the 40 queries), no size floor
        "BUDGET_SHARDS": str(SHARDS),
        "BUDGET_MIN_SHARD_USD": "0",
        "PLAN_LIMITS": json.dumps({CAPPED_PLAN: {"daily_usd": str(Decimal(user_cap) / NANOS_PER_USD)}}),
    }
    # a token is its user's id, and the capped user's ends in its plan (tests/fakes/auth_faults.py)
    users = [f"u-chaos{n}-{uuid.uuid4().hex[:6]}" for n in range(USERS - 1)]
    capped = f"u-chaos{USERS - 1}-{uuid.uuid4().hex[:6]}"
    users.append(f"{capped}.{CAPPED_PLAN}")

    # Given containers already warm (cold starts are not what this test is about)
    parent = Containers(env, tmp_path)
    workers = [parent.start() for _ in range(CONTAINERS)]

    # When they answer concurrent queries until the budget is spent, with every fault injected
    emulator_faults.set(EMULATOR_FAULTS, seed=SEED, transaction_window_ms=TRANSACTION_WINDOW_MS)
    openai_state.control({"rules": OPENAI_FAULTS, "seed": SEED, "hold": OPENAI_HOLD_SECONDS})
    outcomes: list[Outcome] = []
    replaced = 0
    lock = threading.Lock()

    def serve(slot: int) -> None:
        nonlocal replaced
        rng = random.Random(SEED * 1000 + slot)
        early_victim = rng.randrange(1, EARLY_VICTIM_WITHIN)
        for n in range(MAX_REQUESTS_PER_CONTAINER):
            victim = n == early_victim or rng.random() < KILL_PROBABILITY
            on_billing = victim and rng.random() < KILL_ON_BILLING_SHARE
            kill_after = rng.uniform(0.0, KILL_WITHIN_SECONDS) if victim and not on_billing else None
            # a request chosen to be killed is its user's only one: its books are then checked alone
            user = f"u-victim{slot}x{n}-{uuid.uuid4().hex[:6]}" if victim else users[(slot + n) % USERS]
            worker = workers[slot]
            asked = time.monotonic()
            answer = worker.ask(
                user,
                {"question": rng.choice(QUESTIONS)},
                kill_after,
                (lambda tag=user: chat_billed(openai_state, tag)) if on_billing else None,
            )
            body = (answer or {}).get("body") or {}
            outcome = Outcome(
                slot,
                user,
                answer["status"] if answer else None,
                body.get("error"),
                body.get("reason"),
                worker.killed_by if answer is None else None,
                time.monotonic() - asked,
            )
            if not worker.alive:  # killed (maybe just after answering): a new container takes its place
                worker.stop()
                workers[slot] = parent.start()
                with lock:
                    replaced += 1
            with lock:
                outcomes.append(outcome)
            if (outcome.error, outcome.reason) == ("budget_exceeded", "spent"):
                return  # the budget is exhausted for the day: nothing more can be answered
            if outcome.reason == "in_flight" or outcome.error == "too_many_in_flight":
                time.sleep(0.2)  # running queries hold the rest: they settle shortly

    try:
        with ThreadPoolExecutor(CONTAINERS) as pool:
            list(pool.map(serve, range(CONTAINERS)))
        injected = emulator_faults.injected()
        emulator_faults.clear()
        openai_requests = list(openai_state.requests)
        openai_state.control({"rules": []})

        # And the dead requests' leases run out; the next requests reclaim what they left behind
        total = day_total(dynamodb, chaos_table, today())
        leases = [float(value["M"]["l"]["N"]) for name, value in total.items() if name.startswith("h_")]
        open_after_chaos = len(leases)
        if leases:
            time.sleep(max(0.0, max(leases) - time.time()) + 1.1)
        sweeper = workers[0]
        sweeps = 0
        while any(name.startswith("h_") for name in total):
            sweeps += 1
            assert sweeps <= open_after_chaos // 3 + 2, "expired holds are not being reclaimed"
            answer = sweeper.ask(users[0], {"question": "What is a beholder?"}, kill_after=None)
            assert answer is not None
            assert (answer["status"], (answer["body"] or {}).get("error")) in ALLOWED
            total = day_total(dynamodb, chaos_table, today())
        # A user's hold whose request died before its hold on the total was written (or after that
        # one was refused) is no money on the total: the user's own next request frees it, once its
        # lease has ended
        user_leases = [
            float(value["M"]["l"]["N"])
            for row in ledger_items(dynamodb, chaos_table, "USER#")
            for name, value in row.items()
            if name.startswith("uh_")
        ]
        if user_leases:
            time.sleep(max(0.0, max(user_leases) - time.time()) + 1.1)
        for row in ledger_items(dynamodb, chaos_table, "USER#"):
            if any(name.startswith("uh_") for name in row):
                answer = sweeper.ask(row["sk"]["S"].removeprefix("USER#"), {"question": "What is a beholder?"})
                assert answer is not None
                assert (answer["status"], (answer["body"] or {}).get("error")) in ALLOWED
        total = day_total(dynamodb, chaos_table, today())
    finally:
        emulator_faults.clear()
        openai_state.control({"rules": []})
        for worker in workers:
            worker.stop()
        parent.stop()

    # Then the books hold every cent OpenAI billed, and never more than the budget was spent
    records = openai_state.billed_records()
    billed = billed_nanos(records, CHAT_MODEL, EMBEDDING_MODEL)
    spent, committed = int(total["spent"]["N"]), int(total["committed"]["N"])
    answered = sum(o.status == 200 for o in outcomes)
    killed = sum(o.killed_by == "chaos" for o in outcomes)
    openai_faults = Counter(str(r["status"]) for r in openai_requests if r["status"] != 200)
    openai_faults["timeout_after_billing"] = sum(r["fault"] == "timeout_after_billing" for r in records)
    emulator_counts = {fault: sum(per_op.values()) for fault, per_op in injected.items()}
    figures = {
        "budget": limit,
        "booked": spent,
        "billed": billed,
        "billed_records": len(records),
        "undelivered": sum(not r["delivered"] for r in records),
        "queries": len(outcomes),
        "answered": answered,
        "statuses": Counter((o.status, o.error, o.reason) for o in outcomes),
        "killed_mid_request": killed,
        "containers_replaced": replaced,
        "open_holds_after_chaos": open_after_chaos,
        "emulator_faults": emulator_counts,
        "openai_faults": dict(openai_faults),
        "answer_seconds_median": round(statistics.median(o.seconds for o in outcomes if o.status == 200), 2),
        "answer_seconds_max": round(max(o.seconds for o in outcomes if o.status == 200), 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    print("chaos figures:", json.dumps({k: str(v) if isinstance(v, Counter) else v for k, v in figures.items()}))
    assert spent >= billed, figures  # every billable cent is on the books
    assert billed <= limit, figures  # OpenAI never billed more than the budget
    assert spent <= limit, figures
    assert committed == spent, figures  # no hold left open
    assert spent >= limit * 8 // 10, figures  # the budget really ran out (the 80 % alert is due)

    # and the chaos was real: faults of every kind, containers killed mid-request, the budget refused
    assert killed >= 3, figures
    assert all(emulator_counts.get(kind, 0) > 0 for kind in ("throttle", "lost_response", "conflict")), figures
    assert all(openai_faults[kind] > 0 for kind in ("429", "500", "timeout_after_billing")), figures
    assert any((o.error, o.reason) == ("budget_exceeded", "spent") for o in outcomes), figures
    assert answered >= BUDGET_IN_QUERIES // 4, figures

    # and every answer is one the injected faults explain: never a 500, never a Lambda timeout
    answers = [(o.status, o.error) for o in outcomes if o.status is not None]
    assert set(answers) <= ALLOWED, figures
    assert not [o for o in outcomes if o.killed_by in ("timeout", "crashed")], figures
    assert answers.count((502, "upstream_error")) <= sum(openai_faults.values()), figures
    assert answers.count((503, "service_unavailable")) <= sum(emulator_counts.values()), figures

    # and nothing was charged twice: one CHARGE marker per settled hold; every ledger adds up to it
    items = dynamodb.query(
        TableName=chaos_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"LEDGER#{today()}"}},
        ConsistentRead=True,
    )["Items"]
    charges = [i for i in items if i["sk"]["S"].startswith("CHARGE#")]
    user_rows = [i for i in items if i["sk"]["S"].startswith("USER#")]
    charged_requests = int(total["requests"]["N"])
    assert len(charges) == charged_requests, figures
    assert sum(int(c["cost"]["N"]) for c in charges) == spent, figures
    # (a user item may hold no charge: the user's only requests were refused, their holds given back)
    assert sum(num(u, "cost") for u in user_rows) == spent, figures
    assert sum(num(u, "requests") for u in user_rows) == charged_requests, figures
    per_model = {name: int(v["N"]) for name, v in total.items() if name.startswith(("mcost_", "mrequests_"))}
    assert sum(v for name, v in per_model.items() if name.startswith("mcost_")) == spent, figures
    assert sum(v for name, v in per_model.items() if name.startswith("mrequests_")) == charged_requests, figures
    assert answered <= charged_requests, figures  # each answered query was charged

    orphans = sum(c.get("orphan", {}).get("BOOL", False) for c in charges)
    print(
        "chaos books:",
        json.dumps(
            {
                "charges": len(charges),
                "orphans_charged_in_full": orphans,
                "victim_charges": [
                    (c["user_id"]["S"], int(c["cost"]["N"]), c.get("orphan", {}).get("BOOL"))
                    for c in charges
                    if c["user_id"]["S"].startswith("u-victim")
                ],
                "victims_billed": sum(
                    1 for r in {str(r["path"]).split("/")[2] for r in records} if r.startswith("u-victim")
                ),
            }
        ),
    )

    # and each user's ledger holds every cent billed for that user's requests (the fake OpenAI saw
    # each request's user in its path); a killed request is its user's only one, so this is exact
    # for it: what a dead request may have been billed was charged
    billed_by_user: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        tag = str(record["path"]).split("/t/", 1)[1].split("/", 1)[0]  # the token: <user id>[.<plan>]
        billed_by_user.setdefault(tag.partition(".")[0], []).append(record)
    ledger_cost = {u["sk"]["S"].removeprefix("USER#"): num(u, "cost") for u in user_rows}
    short = {
        user: (ledger_cost.get(user, 0), billed_nanos(user_records, CHAT_MODEL, EMBEDDING_MODEL))
        for user, user_records in billed_by_user.items()
        if ledger_cost.get(user, 0) < billed_nanos(user_records, CHAT_MODEL, EMBEDDING_MODEL)
    }
    assert not short, (short, figures)
    assert orphans >= 1, figures  # a request died billed and unsettled: its hold was charged in full

    # and each user's own limits hold: the capped user's books and what OpenAI billed for that user
    # stay within the cap, which was reached; no user's hold or in-flight slot is left taken, and
    # every user's cap use is exactly the user's spend
    capped_billed = billed_nanos(billed_by_user.get(capped, []), CHAT_MODEL, EMBEDDING_MODEL)
    assert capped_billed <= user_cap, (capped_billed, user_cap, figures)
    assert ledger_cost.get(capped, 0) <= user_cap, (ledger_cost.get(capped), user_cap, figures)
    assert any(o.user == users[-1] and o.error == "user_budget_exceeded" for o in outcomes), figures
    user_rows = ledger_items(dynamodb, chaos_table, "USER#")
    left = {u["sk"]["S"]: [name for name in u if name.startswith("uh_")] for u in user_rows}
    assert not {row: holds for row, holds in left.items() if holds}, figures
    slots = {u["sk"]["S"]: num(u, "inflight") for u in user_rows if num(u, "inflight")}
    assert not slots, (slots, figures)
    cap_use = {u["sk"]["S"]: (num(u, "ucommitted"), num(u, "cost")) for u in user_rows}
    assert not {row: use for row, use in cap_use.items() if use[0] != use[1]}, figures
    assert sum(user.startswith("u-victim") for user in billed_by_user) >= 1, figures  # a dead request was billed

    # and exactly one alert per threshold went out
    subjects = [m["subject"] for m in sent_alerts(aws_endpoint, recipient)]
    claims = {name: value for name, value in total.items() if name.startswith("alert_")}  # if not: why
    assert sum("Warning" in s for s in subjects) == 1, (subjects, claims)
    assert sum("exhausted" in s for s in subjects) == 1, (subjects, claims)
    assert len(subjects) == 2, (subjects, claims)

    # and the next day's reconciliation with OpenAI's own records (the fake's organization usage and
    # costs API, bucketed by the UTC day it billed each call in) finds the books at or above the bill
    after_midnight = Clock(next_midnight(time.time()) + 15 * 60)
    reconcile_env = {**env, "OPENAI_ADMIN_KEY": DEFAULT_ADMIN_KEY, "RECONCILIATION_LOOKBACK_DAYS": "1"}
    _, auditor = make_app(reconcile_env, clock=after_midnight)
    [day] = run_task(auditor, {"dnd_rag_task": "reconcile"})["days"]
    assert (day["day"], day["books"], day["billed"]) == (today(), spent, billed), (day, figures)
    assert day["drift"] == 0, (day, figures)
    assert day["safety_margin"] == spent - billed, (day, figures)
