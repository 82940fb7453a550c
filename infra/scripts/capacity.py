"""`make capacity`: how many queries a day's budget store sustains at a per-item write ceiling, and
what each answered query costs in DynamoDB write units, for several shard counts and loads.

It starts its own serialized AWS emulator, Chroma, fake OpenAI server and auth server on free
loopback ports and ingests the sample corpus. DynamoDB takes at most 1,000 WCU/s on one item;
the emulator's per-item throttle (``POST /_emulator/capacity``) scales that down to ``--item-wcu``
so this machine can reach it. The fake OpenAI answers each call ``--openai-delay`` seconds late,
so a query's budget hold stays open about two such delays (embedding, chat), as with the real API.

For every ``BUDGET_SHARDS`` value (``--shards``, passed to the service in its environment) and
every in-flight level (``--in-flight``: that many concurrent warm containers, each a thread with
its own boto3 client and app and users of its own, per-user limits out of the way, the answer cache
off) it runs ``--seconds`` of load on a fresh table and reads the emulator's capacity meter. Columns:

- q/s: answered queries over the run's wall time (requests under way at the deadline finish and
  count); p50 s: their median latency; bound: ``ceiling`` when the per-item throttle refused
  writes, else ``machine`` (this computer was the limit, not DynamoDB's ceiling),
- WCU/q: write units metered on every item over answered queries (the writes of refused and failed
  queries included: they are part of what an answer costs), and the share on ``BUDGET#<day>``
  items (the day's budget: today one ``TOTAL`` item, with sharding its shards),
- throttled (budget): writes the ceiling refused (``ProvisionedThroughputExceededException``; the
  SDK re-sends them), on all items and on the budget's,
- 503+RA: answers 503 with ``Retry-After``: expected past the ceiling. ``other``: any other non-200
  (listed below the table). FAILED: a 500, a 503 without ``Retry-After``, an exception out of the
  handler, a request over 29 s (API Gateway would have cut it) or one still running 34 s after
  the deadline (hung): printed loudly, and the exit status is 1,
- spent/budget: the day's ``spent`` summed over every item under ``BUDGET#<day>`` (a Query: one item
  or many shards alike) against the run's $1,000 budget (over it is a failure); held $: what
  ``committed`` still holds beyond ``spent`` once every request has ended (holds the service could
  not give back; the reclaim charges them after their lease).

Below the table, per run: WCU per answered query by kind of item (the pk's prefix), the throttled
writes by kind, the non-200 answers, the service's ERROR log lines (counted, not printed), and the
CPU milliseconds per answered query of this process (the containers) and of each service.

Then one exhaustion run per shard count, ``--exhaust-in-flight`` containers, a small budget
(``--exhaust-usd``, a few dozen queries' worth) and the ceiling off unless ``--exhaust-item-wcu``:
queries until the budget refuses for good, then the share spent (utilization) and the overshoot.

Then the store's own cost: the highest shard count at the lowest and highest in-flight level again,
the ceiling off (a throttled run also bills the writes of the queries the ceiling failed).

The last line sums it up: answered q/s at the lowest and highest shard count (each the best over
the in-flight levels, with what bound it), WCU per answered query at the lowest and highest
in-flight level from the runs with the ceiling off (at the highest shard count), the goals
of SPEC §7 (shards=16 >= 10x shards=1, w64 <= 1.2 x w1, overshoot 0) and the verdict. WCU/q does
not depend on the machine; q/s does: the ratio only means something where shards=1 is ``ceiling``.

Containers run as threads of this process, so Powertools' per-process "current request" is made
per thread here (``per_thread_router_state``); Lambda runs one request per process at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.handlers.routes import create_app
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.observability import logger
from dnd_rag.pricing import usd_to_nanos
from dnd_rag.settings import ConfigError, Settings, load_settings
from infra.local.api_server import LambdaContext, build_event
from infra.local.bootstrap import ensure_table, verify_identities
from infra.local.processes import free_port, running
from infra.local.stack import chroma_command, local_environment
from infra.scripts.ingest import document_paths, ingest
from tests.fakes.auth_faults import start_any_user_auth

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
QUESTION = b'{"question": "How many experience points does a fighter need to become 9th level?"}'
HUNG_SECONDS = 29.0  # API Gateway's integration timeout, less the margin our own function keeps
BUDGET_PREFIX = "BUDGET#"
LARGE_BUDGET_USD = "1000"  # never runs out during a measured run
# Each container queries for users of its own, at least MIN_USERS in all, so that no user's items
# (their limits, their ledger) get anywhere near the per-item ceiling: the budget store is measured.
MIN_USERS = 32
WARM_UP_ATTEMPTS = 5

# DynamoDB's 1,000 WCU/s per item, scaled to what this loopback stack reaches: the emulator spends
# ~50-65 ms of CPU per answered query, so 2 shared cores answer ~8-10 q/s at most. For shards=1 to
# meet its ceiling well below that (and so for the 10x goal to be measurable here at all), the
# ceiling is 1 WCU/s: one write per second on a shard, i.e. half a query per second, 500 times
# below DynamoDB's. Scaled so, it applies to the items every query shares (ITEM_WCU_PREFIX, the
# day's budget) only: per-user items, which each user's own limits keep far below 1,000 WCU/s in
# reality, would be throttled here by a ceiling 500 times lower that reality never scales to.
ITEM_WCU = 1.0
ITEM_WCU_PREFIX = BUDGET_PREFIX
GOAL_SHARD_SPEEDUP = 10.0
GOAL_WCU_GROWTH = 1.2


# -- pure parts (tests/unit/test_capacity_script.py) ------------------------------------------------


def item_kind(key: str) -> str:
    """``"BUDGET#2025-01-01|TOTAL"`` -> ``"BUDGET"``: the meter's ``<pk>|<sk>`` by the pk's prefix."""
    pk = key.split("|", 1)[0]
    return pk.split("#", 1)[0]


@dataclass(frozen=True)
class Attribution:
    """The emulator's capacity meter (``GET /_emulator/capacity``) grouped by kind of item."""

    wcu: float  # every write unit metered, keyed or not
    by_kind: dict[str, float]
    budget_wcu: float  # on BUDGET#<day> items
    throttled: int
    throttled_by_kind: dict[str, int]

    @property
    def budget_throttled(self) -> int:
        return self.throttled_by_kind.get("BUDGET", 0)

    @property
    def budget_share(self) -> float:
        return self.budget_wcu / self.wcu if self.wcu else 0.0

    def per_query(self, answered: int) -> float | None:
        return self.wcu / answered if answered else None


def attribute(snapshot: dict[str, Any]) -> Attribution:
    by_kind: Counter[str] = Counter()
    throttled: Counter[str] = Counter()
    for key, used in snapshot.get("items", {}).items():
        kind = item_kind(key)
        by_kind[kind] += float(used.get("wcu", 0))
        throttled[kind] += int(used.get("throttled", 0))
    total = float(snapshot.get("total", {}).get("wcu", sum(by_kind.values())))
    return Attribution(
        wcu=total,
        by_kind={kind: wcu for kind, wcu in sorted(by_kind.items(), key=lambda kv: -kv[1]) if wcu},
        budget_wcu=by_kind.get("BUDGET", 0.0),
        throttled=sum(throttled.values()),
        throttled_by_kind={kind: count for kind, count in throttled.most_common() if count},
    )


@dataclass
class Run:
    """One bounded load at one shard count and one in-flight level."""

    shards: int
    in_flight: int
    seconds: float = 0.0
    answered: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # 503 with Retry-After, by error code
    other: Counter[str] = field(default_factory=Counter)  # other non-200 answers, "429 rate_limited"
    failures: Counter[str] = field(default_factory=Counter)  # 500, 503 without Retry-After, exception, hung
    logged_errors: Counter[str] = field(default_factory=Counter)  # the service's ERROR log lines, by message
    latencies: list[float] = field(default_factory=list)  # seconds, answered queries
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the run, by process
    capacity: Attribution = field(default_factory=lambda: attribute({}))
    spent: int = 0  # nano-USD, summed over the day's BUDGET# items
    committed: int = 0
    limit: int = 0
    rejected: str | None = None  # the service refused this configuration

    @property
    def qps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def p50_seconds(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None

    @property
    def bound(self) -> str:
        """``ceiling`` when the per-item throttle refused writes, else ``machine`` (this computer)."""
        return "ceiling" if self.capacity.throttled else "machine"

    @property
    def wcu_per_query(self) -> float | None:
        return self.capacity.per_query(self.answered)

    @property
    def overshoot(self) -> int:
        return max(0, self.spent - self.limit)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(runs: list[Run]) -> list[str]:
    header = (
        f"  {'shards':>6s} {'in flight':>9s} {'answered':>8s} {'q/s':>6s} {'p50 s':>5s} {'bound':>7s} "
        f"{'WCU/q':>6s} {'budget':>6s} {'throttled (budget)':>18s} {'503+RA':>6s} {'other':>5s} {'FAILED':>6s} "
        f"{'spent/budget':>12s} {'held $':>7s}"
    )
    lines = [header]
    for run in runs:
        if run.rejected is not None:
            lines.append(f"  {run.shards:6d} {run.in_flight:9d}  refused by the service: {run.rejected}")
            continue
        throttled = f"{run.capacity.throttled} ({run.capacity.budget_throttled})"
        spent = f"{100 * run.spent / run.limit:.4f} %" if run.limit else "-"
        lines.append(
            f"  {run.shards:6d} {run.in_flight:9d} {run.answered:8d} {run.qps:6.2f} {_fmt(run.p50_seconds):>5s} "
            f"{run.bound:>7s} {_fmt(run.wcu_per_query):>6s} {100 * run.capacity.budget_share:5.0f}% "
            f"{throttled:>18s} {sum(run.refused.values()):6d} {sum(run.other.values()):5d} "
            f"{sum(run.failures.values()):6d} {spent:>12s} {(run.committed - run.spent) / 1e9:7.4f}"
        )
    return lines


def format_breakdown(runs: list[Run]) -> list[str]:
    """WCU per answered query by kind of item, and what the non-200 answers were."""
    lines = []
    for run in runs:
        if run.rejected is not None or not run.answered:
            continue
        kinds = ", ".join(f"{kind} {wcu / run.answered:.2f}" for kind, wcu in run.capacity.by_kind.items())
        notes = []
        if run.capacity.throttled:
            throttled = ", ".join(f"{kind} {count}" for kind, count in run.capacity.throttled_by_kind.items())
            notes.append(f"throttled writes: {throttled}")
        notes += [f"{count} x 503 {code}" for code, count in sorted(run.refused.items())]
        notes += [f"{count} x {what}" for what, count in sorted(run.other.items())]
        notes += [f"FAILED {count} x {what}" for what, count in sorted(run.failures.items())]
        notes += [f"logged {count} x ERROR {what!r}" for what, count in sorted(run.logged_errors.items())]
        if run.cpu:
            used = ", ".join(f"{name} {1000 * seconds / run.answered:.0f}" for name, seconds in run.cpu.items())
            notes.append(f"CPU ms/q: {used} (in {run.seconds:.1f} s)")
        tail = f"; {', '.join(notes)}" if notes else ""
        lines.append(f"  shards={run.shards:<3d} in flight={run.in_flight:<4d} WCU/q by item: {kinds}{tail}")
    return lines


def _best(runs: list[Run], shards: int) -> Run | None:
    """The run that answered the most per second at ``shards``."""
    measured = [run for run in runs if run.shards == shards and run.rejected is None]
    return max(measured, key=lambda run: run.qps) if measured else None


def _wcu_at(runs: list[Run], shards: int, in_flight: int) -> float | None:
    for run in runs:
        if run.shards == shards and run.in_flight == in_flight and run.rejected is None:
            return run.wcu_per_query
    return None


def _bound(run: Run | None) -> str:
    return "-" if run is None else f"{run.bound} at {run.in_flight} in flight"


def summary_line(runs: list[Run], exhaustion: list[Run], cost: list[Run] | None = None) -> str:
    """The one line ``make capacity`` ends with: figures, goals and verdict. ``cost``: the runs
    with the ceiling off, where WCU per answered query is read (a throttled run also bills the
    writes of the queries the ceiling failed, which says nothing about the store's own cost)."""
    measured = [run for run in runs if run.rejected is None]
    if not measured:
        return "capacity: no run measured; verdict: FAILED"
    low, high = min(run.shards for run in measured), max(run.shards for run in measured)
    few, many = min(run.in_flight for run in measured), max(run.in_flight for run in measured)
    best_low, best_high = _best(runs, low), _best(runs, high)
    q_low = best_low.qps if best_low else None
    q_high = best_high.qps if best_high else None
    priced = cost or runs
    w_few, w_many = _wcu_at(priced, high, few), _wcu_at(priced, high, many)
    overshoot = sum(run.overshoot for run in [*runs, *exhaustion, *(cost or [])])
    speedup = q_high / q_low if q_high is not None and q_low else None
    growth = w_many / w_few if w_many is not None and w_few else None
    failed = sum(sum(run.failures.values()) for run in [*runs, *exhaustion, *(cost or [])])
    met = (
        speedup is not None
        and speedup >= GOAL_SHARD_SPEEDUP
        and growth is not None
        and growth <= GOAL_WCU_GROWTH
        and overshoot == 0
        and failed == 0
    )
    verdict = "FAILED (errors above)" if failed else ("goals met" if met else "goals NOT met")
    return (
        f"capacity: shards={low} {_fmt(q_low)}, shards={high} {_fmt(q_high)}; "
        f"WCU/query at {few} in flight {_fmt(w_few, '.2f')}, at {many} in flight {_fmt(w_many, '.2f')}"
        f"  [goals: shards={high} >= {GOAL_SHARD_SPEEDUP:g}x shards={low} (now {_fmt(speedup, '.2f')}x; "
        f"bound by: {_bound(best_low)}, {_bound(best_high)}), "
        f"w{many} <= {GOAL_WCU_GROWTH:g} x w{few} (now {_fmt(growth, '.2f')}x), overshoot 0 (now {overshoot}); "
        f"verdict: {verdict}]"
    )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux ``/proc``), None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_now(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: this process (the containers) and each child by name."""
    readings = {"driver": cpu_seconds(os.getpid())} | {name: cpu_seconds(pid) for name, pid in processes.items()}
    return {name: seconds for name, seconds in readings.items() if seconds is not None}


def day_totals(client: Any, table: str, day: str) -> tuple[int, int]:
    """``spent`` and ``committed`` summed over every item under ``BUDGET#<day>``: one TOTAL or shards."""
    spent = committed = 0
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{BUDGET_PREFIX}{day}"}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page["Items"]:
            spent += int(item.get("spent", {}).get("N", "0"))
            committed += int(item.get("committed", {}).get("N", "0"))
    return spent, committed


# -- the load ------------------------------------------------------------------------------------


def shards_setting_read() -> bool:
    """Whether this code's settings know BUDGET_SHARDS (unknown variables are ignored, not refused)."""
    return any(info.alias == "BUDGET_SHARDS" for info in Settings.model_fields.values())


def capacity_meter(endpoint: str, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.request(method, f"{endpoint}/_emulator/capacity", json=body, timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def call(app: Any, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, dict[str, Any], dict[str, str]]:
    event = build_event(
        method, path, "", {"authorization": f"Bearer {token}", "content-type": "application/json"},
        body, f"{method} {path}", {}, "127.0.0.1",
    )  # fmt: skip
    response = app.resolve(event, LambdaContext("capacity"))
    headers = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
    return int(response["statusCode"]), json.loads(response.get("body") or "{}"), headers


def ask(app: Any, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return call(app, "POST", "/api/query", token, QUESTION)


def worker_tokens(index: int, in_flight: int) -> list[str]:
    """The users of container ``index``: its own, at least ``MIN_USERS`` over all the containers."""
    per_worker = max(1, math.ceil(MIN_USERS / in_flight))
    return [f"u-capacity{index}x{n}" for n in range(per_worker)]


class ErrorLines(logging.Filter):
    """Counts the service's ERROR log lines by message instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            with self.lock:
                self.counts[record.getMessage()] += 1
        return False

    def take(self) -> Counter[str]:
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts


ERROR_LINES = ErrorLines()


def per_thread_router_state() -> None:
    """Give each thread its own Powertools "current request".

    ``resolve`` keeps the event and context being handled in class attributes of ``BaseRouter``
    (``BaseRouter.current_event = ...``): one per process, right for Lambda, which hands a process
    one request at a time, but containers run here as threads of one process would read each
    other's requests (a query read another thread's ``GET /api/usage``: 400 "body Field required";
    a query ran as another thread's user). A metaclass keeps both attributes per thread, for the
    class-level writes and reads and for the instances' reads alike."""
    if isinstance(BaseRouter, _PerThreadRouterMeta):
        return
    for name in ("current_event", "lambda_context"):
        type.__setattr__(BaseRouter, name, property(lambda _self, name=name: getattr(_ROUTER_STATE, name, None)))
    BaseRouter.__class__ = _PerThreadRouterMeta


_ROUTER_STATE = threading.local()


class _PerThreadRouterMeta(type(BaseRouter)):  # type: ignore[misc]
    def __setattr__(cls, name: str, value: Any) -> None:
        if cls is BaseRouter and name in ("current_event", "lambda_context"):
            setattr(_ROUTER_STATE, name, value)
        else:
            super().__setattr__(name, value)

    def __getattribute__(cls, name: str) -> Any:
        if cls is BaseRouter and name in ("current_event", "lambda_context"):
            return getattr(_ROUTER_STATE, name, None)
        return super().__getattribute__(name)


class Load:
    """``in_flight`` warm containers querying until ``stop`` is set or the deadline passes."""

    def __init__(self, run: Run, run_env: dict[str, str], exhaustion: bool) -> None:
        self.run = run
        self.env = run_env
        self.exhaustion = exhaustion  # stop at the first "spent" refusal; warm up without spending
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Barrier(run.in_flight + 1)
        self.go = threading.Event()
        self.deadline = 0.0
        self.cold_failures: list[str] = []

    def record(self, status: int, body: dict[str, Any], headers: dict[str, str], seconds: float) -> None:
        code = str(body.get("error", "-"))
        with self.lock:
            if seconds > HUNG_SECONDS:
                self.run.failures[f"over {HUNG_SECONDS:g} s ({status})"] += 1
            if status == 200:
                self.run.answered += 1
                self.run.latencies.append(seconds)
            elif status == 503 and "retry-after" in headers:
                self.run.refused[code] += 1
                if self.exhaustion and code == "budget_exceeded" and body.get("reason") == "spent":
                    self.stop.set()
            elif status >= 500:
                self.run.failures[f"{status} {code}" + (" without Retry-After" if status == 503 else "")] += 1
            else:
                self.run.other[f"{status} {code}"] += 1

    def warm_up(self, app: Any, tokens: list[str]) -> None:
        """A cold start per container, each user's token validated and cached (``/api/usage`` spends
        nothing), and outside an exhaustion run one query, so the measured ones find everything warm."""
        calls = [("GET", "/api/usage", token, b"") for token in tokens]
        if not self.exhaustion:
            calls.append(("POST", "/api/query", tokens[0], QUESTION))
        for method, path, token, body in calls:
            for _ in range(WARM_UP_ATTEMPTS):  # past a ceiling a warm-up may be refused: warm enough
                status, answer, headers = call(app, method, path, token, body)
                if status == 200:
                    break
                if status != 503 or "retry-after" not in headers:
                    detail = answer.get("details") or answer.get("message")
                    raise RuntimeError(f"{method} {path} answered {status} {answer.get('error')}: {detail}")
                time.sleep(1)

    def serve(self, index: int) -> None:
        tokens = worker_tokens(index, self.run.in_flight)
        try:
            client = boto3.client("dynamodb", config=CLIENT_CONFIG)
            app = create_app(Container(load_settings(self.env), dynamodb_client=client))
            self.warm_up(app, tokens)
        except Exception as exc:  # reported, the run goes on without this container
            self.cold_failures.append(f"{type(exc).__name__}: {exc}")
            self.ready.wait()
            return
        self.ready.wait()
        self.go.wait()
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            token = tokens[n % len(tokens)]
            n += 1
            started = time.monotonic()
            try:
                status, body, headers = ask(app, token)
            except Exception as exc:  # an invocation error: Lambda would answer 500
                with self.lock:
                    self.run.failures[f"exception {type(exc).__name__}"] += 1
                continue
            self.record(status, body, headers, time.monotonic() - started)

    def drive(self, endpoint: str, seconds: float, processes: dict[str, int]) -> None:
        workers = [
            threading.Thread(target=self.serve, args=(i,), daemon=True, name=f"capacity-{i}")
            for i in range(self.run.in_flight)
        ]
        for worker in workers:
            worker.start()
        self.ready.wait()  # every container warm: what follows is measured
        capacity_meter(endpoint, "DELETE")
        ERROR_LINES.take()
        cpu_before = cpu_now(processes)
        started = time.monotonic()
        self.deadline = started + seconds
        self.go.set()
        for worker in workers:
            worker.join(timeout=max(0.0, self.deadline + HUNG_SECONDS + 5 - time.monotonic()))
        self.run.seconds = time.monotonic() - started
        cpu_after = cpu_now(processes)
        self.run.cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after if name in cpu_before}
        hung = sum(worker.is_alive() for worker in workers)
        if hung:
            self.run.failures["hung (no answer yet)"] += hung
        for failure in self.cold_failures:
            self.run.failures[f"cold start: {failure}"] += 1
        self.run.capacity = attribute(capacity_meter(endpoint, "GET"))
        self.run.logged_errors = ERROR_LINES.take()


def measure(
    env: dict[str, str],
    processes: dict[str, int],
    shards: int,
    in_flight: int,
    seconds: float,
    usd: str,
    exhaustion: bool,
) -> Run:
    """One run on a fresh table; ``processes`` (name -> pid) are the services whose CPU is reported."""
    run = Run(shards, in_flight)
    table = f"dnd-rag-capacity-{uuid.uuid4().hex[:8]}"
    run_env = {
        **env,
        "TABLE_NAME": table,
        "BUDGET_SHARDS": str(shards),
        "DAILY_BUDGET_USD": usd,
        "TOKEN_BUCKET_CAPACITY": str(10**9),
        "DAILY_USER_REQUEST_LIMIT": str(10**9),
        "MAX_IN_FLIGHT_PER_USER": "1000",
        "ANSWER_CACHE_TTL": "0",  # every query computed and paid
    }
    try:
        run.limit = usd_to_nanos(load_settings(run_env).daily_budget_usd)
    except ConfigError as exc:
        run.rejected = str(exc)
        return run
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    ensure_table(client, table)
    first_day = utc_day(time.time())
    Load(run, run_env, exhaustion).drive(env["AWS_ENDPOINT_URL"], seconds, processes)
    for day in dict.fromkeys([first_day, utc_day(time.time())]):  # a run across midnight: both days
        spent, committed = day_totals(client, table, day)
        run.spent += spent
        run.committed += committed
    return run


def print_exhaustion(runs: list[Run], usd: str, item_wcu: float) -> None:
    ceiling = f"per-item ceiling {item_wcu:g} WCU/s" if item_wcu else "per-item ceiling off"
    print(f"budget exhaustion at DAILY_BUDGET_USD {usd}, {ceiling} (queries until the budget refuses for good):")
    for run in runs:
        if run.rejected is not None:
            print(f"  shards={run.shards}: refused by the service: {run.rejected}")
            continue
        refused = ", ".join(f"{count} x {code}" for code, count in sorted(run.refused.items())) or "none"
        failures = ", ".join(f"{count} x {what}" for what, count in sorted(run.failures.items()))
        print(
            f"  shards={run.shards:<3d} in flight={run.in_flight:<4d} answered {run.answered}, spent "
            f"{100 * run.spent / run.limit:.2f} % of the budget, overshoot {run.overshoot} nano-USD (goal 0), "
            f"left held {run.committed - run.spent}; 503+RA: {refused}" + (f"; FAILED: {failures}" if failures else "")
        )


def _levels(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=_levels, default=[1, 4, 16], help="BUDGET_SHARDS values (default 1,4,16)")
    parser.add_argument("--in-flight", type=_levels, default=[1, 8, 64], help="concurrent containers (1,8,64)")
    parser.add_argument("--seconds", type=float, default=12.0, help="load per measured run (12)")
    parser.add_argument(
        "--item-wcu", type=float, default=ITEM_WCU, help=f"per-item WCU/s ceiling ({ITEM_WCU:g}; 0: off)"
    )
    parser.add_argument(
        "--item-prefix",
        default=ITEM_WCU_PREFIX,
        help=f"the ceiling applies to items whose pk starts so ({ITEM_WCU_PREFIX!r}; '': every item)",
    )
    parser.add_argument("--openai-delay", type=float, default=0.5, help="seconds per fake OpenAI call (0.5)")
    parser.add_argument("--exhaust-usd", default="0.01", help="budget of the exhaustion runs ('' skips them)")
    parser.add_argument("--exhaust-seconds", type=float, default=30.0, help="bound on each exhaustion run (30)")
    parser.add_argument("--exhaust-in-flight", type=int, default=8, help="containers in the exhaustion runs (8)")
    parser.add_argument("--exhaust-item-wcu", type=float, default=0.0, help="ceiling in the exhaustion runs (0: off)")
    args = parser.parse_args()
    started = time.monotonic()

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch)
        aws_port, chroma_port, openai_port = free_port(), free_port(), free_port()
        auth = start_any_user_auth()
        env = local_environment(
            {
                "LOCAL_AWS_PORT": str(aws_port),
                "CHROMA_PORT": str(chroma_port),
                "LOCAL_DATA_DIR": scratch,
                "AUTH_API_URL": f"http://127.0.0.1:{auth.server_address[1]}",
                "TABLE_NAME": "dnd-rag-capacity",
                "CHROMA_COLLECTION": "capacity_rules",
                "LLM_PROVIDER": "openai",
                "EMBEDDING_PROVIDER": "openai",
                "OPENAI_API_KEY": "sk-test",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{openai_port}/v1",
            }
        )
        python = sys.executable
        emulator = [python, "-m", "infra.local.aws_emulator", "--port", str(aws_port)]
        fake_openai = [python, "-m", "tests.fakes.openai_server", "--port", str(openai_port)]
        with (
            running(emulator, aws_port, data / "emulator.log", env) as emulator_process,
            running(chroma_command(env, data), chroma_port, data / "chroma.log", env) as chroma_process,
            running(fake_openai, openai_port, data / "openai.log", env) as openai_process,
        ):
            processes = {
                "emulator": emulator_process.pid,
                "chroma": chroma_process.pid,
                "fake openai": openai_process.pid,
            }
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                os.environ[name] = env[name]  # the emulator's endpoint and dummy credentials
            ensure_table(boto3.client("dynamodb", config=CLIENT_CONFIG), env["TABLE_NAME"])
            verify_identities(boto3.client("ses"), env["ALERT_FROM"], env["ALERT_EMAIL"])
            with contextlib.redirect_stdout(io.StringIO()):
                ingest(Container(load_settings(env)), document_paths([CORPUS]))
            httpx.post(f"{env['OPENAI_BASE_URL']}/_control", json={"delay": args.openai_delay}, timeout=10)
            capacity_meter(
                env["AWS_ENDPOINT_URL"], "POST", {"item_wcu_per_second": args.item_wcu, "key_prefix": args.item_prefix}
            )
            per_thread_router_state()  # containers as threads of one process (see its docstring)
            logger.setLevel("ERROR")  # expected 503s under overload are counted, not logged
            logging.getLogger(logger.name).addFilter(ERROR_LINES)  # ERROR lines: counted, shown per run

            print(
                f"dnd_rag capacity: per-item ceiling {args.item_wcu:g} WCU/s on {args.item_prefix or 'every '}"
                f"items (DynamoDB: 1,000), fake OpenAI "
                f"{args.openai_delay:g} s per call, {args.seconds:g} s per run, each container its own users "
                f"(>= {MIN_USERS} in all), answer cache off, budget ${LARGE_BUDGET_USD}; "
                f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
            )
            if not shards_setting_read():
                print(
                    "  note: this code's settings do not read BUDGET_SHARDS (unknown variables are ignored): "
                    "every shard count below runs on the day's single budget item"
                )
            print(format_table([])[0], flush=True)
            runs: list[Run] = []
            for shards in args.shards:
                for in_flight in args.in_flight:
                    with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF metric lines
                        run = measure(env, processes, shards, in_flight, args.seconds, LARGE_BUDGET_USD, False)
                    runs.append(run)
                    print(format_table([run])[1], flush=True)
            print("WCU per answered query by kind of item (pk prefix), and the non-200 answers:")
            print("\n".join(format_breakdown(runs)))
            # The store's own cost per answered query, nothing throttled: the same load with the
            # ceiling off, at the highest shard count and the lowest and highest in-flight levels.
            capacity_meter(env["AWS_ENDPOINT_URL"], "POST", {"item_wcu_per_second": 0})
            cost: list[Run] = []
            for in_flight in sorted({min(args.in_flight), max(args.in_flight)}):
                with contextlib.redirect_stdout(io.StringIO()):
                    cost.append(
                        measure(env, processes, max(args.shards), in_flight, args.seconds, LARGE_BUDGET_USD, False)
                    )
            print("the same load with the ceiling off (the store's own cost per answered query):")
            print("\n".join(format_table(cost)[1:]))
            print("\n".join(format_breakdown(cost)))
            exhaustion: list[Run] = []
            if args.exhaust_usd:
                capacity_meter(
                    env["AWS_ENDPOINT_URL"],
                    "POST",
                    {"item_wcu_per_second": args.exhaust_item_wcu, "key_prefix": args.item_prefix},
                )
                for shards in args.shards:
                    with contextlib.redirect_stdout(io.StringIO()):
                        exhaustion.append(
                            measure(
                                env,
                                processes,
                                shards,
                                args.exhaust_in_flight,
                                args.exhaust_seconds,
                                args.exhaust_usd,
                                True,
                            )
                        )
                print_exhaustion(exhaustion, args.exhaust_usd, args.exhaust_item_wcu)
        auth.shutdown()
    failed = any(run.failures or run.overshoot for run in [*runs, *exhaustion, *cost])
    if failed:
        print("FAILURES: a 500, an answer without Retry-After, a hung request or an overshoot (see above)")
    print(f"run time {time.monotonic() - started:.0f} s")
    print(summary_line(runs, exhaustion, cost))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
