"""`make bench`, operator controls: what the per-container copy of the controls costs a query, and
how soon a change made through one container reaches another (part of infra/scripts/bench.py).

Sequential steps are counted from the DynamoDB calls' own start and end times: calls that overlap
(the controls' re-read beside the limiter's admission, through ``concurrently.together``) are one
step; SPEC §7 counts those.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3

from dnd_rag.container import Container
from dnd_rag.dal.dynamo import CLIENT_CONFIG
from dnd_rag.handlers.routes import create_app
from dnd_rag.observability import logger
from dnd_rag.settings import load_settings
from infra.local.api_server import LambdaContext, build_event
from infra.local.bootstrap import ensure_table
from infra.scripts.round_trips import RoundTripRecorder, sequential

ALICE = "00000000-0000-4000-a000-00000000a11c"  # dev-alice (infra/local/auth_server.py)
BODY = b'{"question": "How many experience points does a fighter need to become 9th level?"}'


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def call_api(app: Any, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    event = build_event(
        method, path, "", {"authorization": f"Bearer {token}", "content-type": "application/json"}, body,
        f"{method} {path}", {}, "127.0.0.1",
    )  # fmt: skip
    response = app.resolve(event, LambdaContext("bench"))
    return int(response["statusCode"]), json.loads(response.get("body") or "{}")


def _measure(samples: int, before_each: Callable[[], None], action: Callable[[], object]) -> list[float]:
    durations = []
    for _ in range(samples):
        before_each()
        started = time.perf_counter()
        action()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def bench_controls(env: dict[str, str], baseline_p50: float, samples: int) -> None:
    level = logger.log_level
    logger.setLevel("ERROR")  # the expected 503 service_paused answers are not the report
    try:
        _bench_controls(env, baseline_p50, samples)
    finally:
        logger.setLevel(level)


def _bench_controls(env: dict[str, str], baseline_p50: float, samples: int) -> None:
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    table = f"dnd-rag-bench-controls-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    run_env = {
        **env,
        "TABLE_NAME": table,
        "TOKEN_BUCKET_CAPACITY": str(10**9),
        "DAILY_USER_REQUEST_LIMIT": str(10**9),
        "ANSWER_CACHE_TTL": "0",  # one question again and again: every one must be answered, not a cache hit
        # alice asks hundreds of times: past the default $0.05 cap her refusals (429, remembered for
        # 5 s without a read) would be counted as answers and hide when the pause reached container B
        "USER_DAILY_BUDGET_USD": "none",
    }
    settings = load_settings(run_env)
    refresh = settings.controls_refresh_seconds
    clock = Clock()
    app = create_app(Container(settings, clock=clock, dynamodb_client=client))
    trips = RoundTripRecorder(client, recording=True)

    def query() -> tuple[int, dict[str, Any]]:
        return call_api(app, "POST", "/api/query", "dev-alice", BODY)

    def stale() -> None:
        clock.offset += refresh  # the copy is now refresh seconds old: the next query re-reads it

    with contextlib.redirect_stdout(io.StringIO()):
        assert query()[0] == 200  # cold: token validated and cached, controls read
        kinds = (("fresh copy (no read)", lambda: None), ("stale copy (re-read)", stale))
        ones = []
        for _, before_each in kinds:
            mark = trips.count
            before_each()
            assert query()[0] == 200
            ones.append(trips.calls[mark:])
        # interleaved, so that both kinds share the machine's noise; 50 x 4 s stays inside the token TTL
        durations: list[list[float]] = [[], []]
        for _ in range(min(samples, 50)):
            for index, (_, before_each) in enumerate(kinds):
                durations[index] += _measure(1, before_each, query)
        rows = [(label, one, measured) for (label, _), one, measured in zip(kinds, ones, durations, strict=True)]
        call_api(app, "POST", "/api/admin/pause", "dev-admin", b'{"reason": "bench"}')
        paused = []
        for label, before_each in (("paused, fresh copy", lambda: None), ("paused, stale copy", stale)):
            mark = trips.count
            before_each()
            assert query()[0] == 503
            paused.append((label, trips.calls[mark:]))
        call_api(app, "POST", "/api/admin/resume", "dev-admin")

    print(f"operator controls on the query path (CONTROLS_REFRESH_SECONDS={refresh:g}, warm container, cached token):")
    print(f"  {'what':44s} {'p50 ms':>8s} {'p95 ms':>8s}  {'vs GetItem':>10s}  sequential / requests")
    for label, one, durations in rows:
        p50, p95 = statistics.median(durations), statistics.quantiles(durations, n=20)[-1]
        operations = [call.operation for call in one]
        print(
            f"  {'answered, ' + label:44s} {p50:8.2f} {p95:8.2f}  {p50 / baseline_p50:9.2f}x  "
            f"{sequential(one)} / {len(one)}: {operations}"
        )
    for label, one in paused:
        operations = [call.operation for call in one]
        print(f"  {label:44s} {'':8s} {'':8s}  {'':10s}  {sequential(one)} / {len(one)}: {operations}")
    bench_propagation(run_env, refresh)


def bench_propagation(env: dict[str, str], refresh: float) -> None:
    """Real time: block alice (then pause) through container A while container B keeps asking."""
    a = create_app(Container(load_settings(env), dynamodb_client=boto3.client("dynamodb", config=CLIENT_CONFIG)))
    b = create_app(Container(load_settings(env), dynamodb_client=boto3.client("dynamodb", config=CLIENT_CONFIG)))
    results = []
    with contextlib.redirect_stdout(io.StringIO()):
        block = f"/api/admin/users/{ALICE}/block"
        for label, change, undo, expected in (
            ("block alice", ("PUT", block), ("DELETE", block), 403),
            ("pause", ("POST", "/api/admin/pause"), ("POST", "/api/admin/resume"), 503),
        ):
            assert call_api(b, "POST", "/api/query", "dev-alice", BODY)[0] == 200  # B's copy: read now
            body = b'{"reason": "bench"}' if change[1].endswith("pause") else b""
            assert call_api(a, *change, "dev-admin", body)[0] == 200
            changed = time.perf_counter()
            answers = 0
            while True:
                asked = time.perf_counter()
                if call_api(b, "POST", "/api/query", "dev-alice", BODY)[0] == expected:
                    break
                answers += 1
                time.sleep(0.02)
            results.append((label, asked - changed, answers))
            assert call_api(a, *undo, "dev-admin")[0] == 200
            time.sleep(refresh)  # B forgets the change before the next one
    for label, seconds, answers in results:
        print(
            f"  {label} through container A: the first query container B refuses started {seconds:.2f} s "
            f"after the change (bound: {refresh:g} s + the query before it; SPEC: 5 s; {answers} answered before it)"
        )
