"""Chaos across midnight (SPEC §4 "Days end", §7): the books stay right per day when a day ends
with queries in flight, containers are frozen between invocations as Lambda freezes them, one is
killed at 23:59:5x right after OpenAI billed its chat call, and nobody queries the old day again.

Simulated containers (``tests/support/query_worker.py``, the real Lambda entry module) run on one
clock that starts a few seconds before 00:00 UTC (``LOCAL_CLOCK_OFFSET_SECONDS``, what
``LOCAL_CLOCK_START`` gives ``make dev``). Each request is its own user, so the fake OpenAI's billed
records (tagged with the user) map to exactly one request, and that request's CHARGE marker says
which day's books it is on. Then the previous day is swept the way the scheduled sweeper does.
Checked per day: books >= billed, billed <= the day's budget, spent <= the day's budget, no hold
left open, and the 80 % and 100 % alerts at most once each (both, exactly once, for the day that
was spent out).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from dnd_rag.logic.common.clock import next_midnight, utc_day
from dnd_rag.pricing import NANOS_PER_USD
from infra.local.bootstrap import ensure_table
from tests.integration.test_budget_chaos import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    QUESTIONS,
    Container,
    Containers,
    calibrate,
    chat_billed,
    sent_alerts,
)
from tests.support.billing import billed_nanos
from tests.support.budget_items import day_total

SEED = int(os.environ.get("CHAOS_SEED", "8"))
CONTAINERS = 5
BUDGET_IN_QUERIES = 24  # per day
CLOCK_STARTS_BEFORE_MIDNIGHT = 40.0  # the shifted clock starts this long before 00:00 UTC
LOAD_STARTS_BEFORE_MIDNIGHT = 6.0  # the containers are warm by then; the load starts
LEASE_SECONDS = 12
RUN_SECONDS = 60.0  # a bound on the run if the new day somehow never ran out
ALLOWED = {(200, None), (502, "upstream_error"), (503, "budget_exceeded"), (503, "service_unavailable")}
EMULATOR_FAULTS = [
    {"fault": "lost_response", "probability": 0.05},
    {"fault": "conflict", "probability": 0.03},
    {"fault": "internal_error", "probability": 0.03},
]


class Frozen:
    """A container that Lambda freezes when its handler returns and thaws for the next event."""

    def __init__(self, container: Container) -> None:
        self.container = container
        os.kill(container.pid, signal.SIGSTOP)

    def ask(self, token: str, body: dict[str, Any], **kill: Any) -> dict[str, Any] | None:
        os.kill(self.container.pid, signal.SIGCONT)
        answer = self.container.ask(token, body, **kill)
        if self.container.alive:
            os.kill(self.container.pid, signal.SIGSTOP)
        return answer

    def stop(self) -> None:
        if self.container.alive:
            os.kill(self.container.pid, signal.SIGCONT)
        self.container.stop()


def charges_by_user(dynamodb: Any, table: str, day: str) -> dict[str, int]:
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :charge)",
        ExpressionAttributeValues={":pk": {"S": f"LEDGER#{day}"}, ":charge": {"S": "CHARGE#"}},
        ConsistentRead=True,
    )["Items"]
    booked: dict[str, int] = defaultdict(int)
    for item in items:
        booked[item["user_id"]["S"]] += int(item["cost"]["N"])
    return booked


def test_the_books_of_each_day_hold_when_a_day_ends_with_queries_in_flight(
    make_app,
    call,
    openai_env,
    any_user_auth_url,
    dynamodb,
    recipient,
    aws_endpoint,
    emulator_faults,
    openai_state,
    tmp_path,
):
    env = {**openai_env, "AUTH_API_URL": any_user_auth_url, "ALERT_EMAIL": recipient}
    scratch = f"midnight-cal-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, scratch)
    limit = BUDGET_IN_QUERIES * calibrate(make_app, call, {**env, "TABLE_NAME": scratch}, openai_state)
    table = f"midnight-{uuid.uuid4().hex[:10]}"
    ensure_table(dynamodb, table)
    # Given one clock for every container, starting a few seconds before midnight
    offset = next_midnight(time.time()) - CLOCK_STARTS_BEFORE_MIDNIGHT - time.time()
    env |= {
        "TABLE_NAME": table,
        "DAILY_BUDGET_USD": str(Decimal(limit) / NANOS_PER_USD),
        "BUDGET_LEASE_SECONDS": str(LEASE_SECONDS),
        "LOCAL_CLOCK_OFFSET_SECONDS": str(offset),
        "BUDGET_SHARDS": "2",
        "BUDGET_MIN_SHARD_USD": "0",
        "ANSWER_CACHE_TTL": "0",
    }

    def shifted() -> float:
        return time.time() + offset

    old_day, new_day = utc_day(shifted()), utc_day(shifted() + CLOCK_STARTS_BEFORE_MIDNIGHT + 1)
    assert old_day != new_day
    parent = Containers(env, tmp_path)
    workers = [Frozen(parent.start()) for _ in range(CONTAINERS)]
    wait = next_midnight(shifted()) - LOAD_STARTS_BEFORE_MIDNIGHT - shifted()
    assert wait > 0, "the containers took too long to start: raise CLOCK_STARTS_BEFORE_MIDNIGHT"
    time.sleep(wait)
    emulator_faults.set(EMULATOR_FAULTS, seed=SEED)
    outcomes: list[tuple[str, int | None, str | None]] = []
    lock = threading.Lock()
    victim: dict[str, str] = {}
    stop_at = time.monotonic() + RUN_SECONDS

    # When they answer continuously across 00:00 until the new day is spent, frozen between
    # invocations, and one container dies at 23:59:5x right after its chat call was billed
    def serve(slot: int) -> None:
        rng = random.Random(SEED * 100 + slot)
        while time.monotonic() < stop_at:
            user = f"u-night{slot}-{uuid.uuid4().hex[:8]}"
            kill_when = None
            before_midnight = next_midnight(shifted()) - shifted()
            if slot == 0 and not victim and before_midnight > 0.3 and utc_day(shifted()) == old_day:
                victim["user"] = user
                kill_when = lambda tag=user: chat_billed(openai_state, tag)  # noqa: E731
            worker = workers[slot]
            answer = worker.ask(user, {"question": rng.choice(QUESTIONS)}, kill_when=kill_when)
            if kill_when is not None and answer is not None:  # refused before its chat call: pick another
                victim.clear()
            body = (answer or {}).get("body") or {}
            with lock:
                outcomes.append((user, answer["status"] if answer else None, body.get("error")))
            if not worker.container.alive:
                worker.stop()
                workers[slot] = Frozen(parent.start())
            if (body.get("error"), body.get("reason")) == ("budget_exceeded", "spent") and utc_day(
                shifted()
            ) == new_day:
                return  # the new day is spent too

    try:
        with ThreadPoolExecutor(CONTAINERS) as pool:
            list(pool.map(serve, range(CONTAINERS)))
        emulator_faults.clear()
        # And nobody queries the old day again: its orphan is charged by the scheduled sweep
        time.sleep(LEASE_SECONDS + 1)
        _, sweeper = make_app(env)
        swept = sweeper.budget.sweep_recent(sweeper.clock())
    finally:
        emulator_faults.clear()
        for worker in workers:
            worker.stop()
        parent.stop()

    # Then, per day: every billed cent is on that day's books, and neither the books nor the bill
    # exceed that day's own budget; no hold is left
    records = openai_state.billed_records()
    billed_by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        tag = str(record["path"]).split("/t/", 1)[1].split("/", 1)[0]
        billed_by_user[tag].append(record)
    figures: dict[str, Any] = {
        "outcomes": Counter((status, error) for _, status, error in outcomes),
        "victim": victim,
        "swept": swept,
    }
    assert swept == {old_day: 0, new_day: 0}, figures
    assert victim, figures
    assert any(user == victim["user"] and status is None for user, status, _ in outcomes), figures
    for day in (old_day, new_day):
        booked = charges_by_user(dynamodb, table, day)
        billed = {
            user: billed_nanos(billed_by_user[user], CHAT_MODEL, EMBEDDING_MODEL)
            for user in booked
            if user in billed_by_user
        }
        total = day_total(dynamodb, table, day)
        spent, committed = int(total["spent"]["N"]), int(total["committed"]["N"])
        figures[day] = {"spent": spent, "billed": sum(billed.values()), "budget": limit, "charges": len(booked)}
        assert committed == spent, figures
        assert spent == sum(booked.values()), figures
        assert not {u: (booked[u], b) for u, b in billed.items() if booked[u] < b}, figures  # books >= billed
        assert sum(billed.values()) <= limit, figures
        assert spent <= limit, figures
    print("midnight chaos figures:", {k: str(v) for k, v in figures.items()})
    # every billed request is on some day's books (a request that paid nothing has no charge)
    on_books = set(charges_by_user(dynamodb, table, old_day)) | set(charges_by_user(dynamodb, table, new_day))
    assert set(billed_by_user) <= on_books, figures
    # the request killed at 23:59:5x after its chat was billed is charged in full to the old day
    assert victim["user"] in charges_by_user(dynamodb, table, old_day), figures
    assert figures[new_day]["spent"] >= 0.8 * limit, figures  # the new day was spent out
    assert {error for _, status, error in outcomes if status not in (200, None)} <= {e for _, e in ALLOWED}, figures

    # and each threshold's alert went out at most once per day; for the new day, exactly once each
    subjects = [m["subject"] for m in sent_alerts(aws_endpoint, recipient)]
    for day in (old_day, new_day):
        warnings = sum("Warning" in s and day in s for s in subjects)
        exhausted = sum("exhausted" in s and day in s for s in subjects)
        assert warnings <= 1, subjects
        assert exhausted <= 1, subjects
    assert sum("Warning" in s and new_day in s for s in subjects) == 1, subjects
    assert sum("exhausted" in s and new_day in s for s in subjects) == 1, subjects
