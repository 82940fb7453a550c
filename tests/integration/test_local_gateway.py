"""The local API gateway models what AWS does (SPEC §6), shown with a probe handler
(tests/support/gateway_probe_handler.py) behind the real gateway, its real worker processes and
real HTTP:

- Lambda freezes a container when its handler returns: a thread the handler left running makes
  no progress until that container's next invocation (and does without LOCAL_API_FREEZE);
- HTTP API's integration timeout counts from the request's arrival, waiting for a container and a
  cold start included, and is answered as HTTP API answers it;
- one invocation per container at a time; a container that dies is a 500 and is replaced;
- stopping the gateway leaves no worker, frozen or not;
- the HttpApi's CorsConfiguration: one Access-Control-Allow-Origin on every answer to an allowed
  origin, the gateway's own 429/503/500 included, none to another origin; a throttled route is 429.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.api_server import STOP_GRACE_SECONDS, Containers, make_api_server
from infra.local.gateway_rules import GatewayRules, Limits, RouteThrottle, gateway_rules
from infra.local.template import REPO_ROOT, HttpRoute

PROBE = "tests.support.gateway_probe_handler.lambda_handler"
SLOW_IMPORT = "tests.support.gateway_slow_import_handler.lambda_handler"  # its import takes 1.5 s
ROUTES = [
    HttpRoute("GET", "/health", PROBE, REPO_ROOT),  # what the gateway warms its first container with
    HttpRoute("POST", "/probe", PROBE, REPO_ROOT),
    HttpRoute("POST", "/slow-import", SLOW_IMPORT, REPO_ROOT),
]
SERVICE_UNAVAILABLE = b'{"message":"Service Unavailable"}'
INTERNAL_SERVER_ERROR = b'{"message":"Internal Server Error"}'
TIMEOUT = 2.0  # the test-shortened integration timeout
LATE = 0.8  # how long past the timeout the gateway may take to answer on a busy machine


@pytest.fixture(autouse=True)
def aws_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freezing on and the 30 s timeout, whatever the calling shell says; a test changes what it tests."""
    monkeypatch.delenv("LOCAL_API_FREEZE", raising=False)
    monkeypatch.delenv("LOCAL_API_TIMEOUT_SECONDS", raising=False)


@contextmanager
def gateway(containers: int = 1, rules: GatewayRules | None = None) -> Iterator[tuple[httpx.Client, Containers]]:
    server, pool = make_api_server("127.0.0.1", 0, containers, routes=ROUTES, rules=rules)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}", timeout=30) as client:
            yield client, pool
    finally:
        server.shutdown()
        server.server_close()
        pool.shutdown()


def ask(client: httpx.Client, path: str = "/probe", **body: Any) -> httpx.Response:
    return client.post(path, json=body)


def ticks(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def process_state(pid: int) -> str:
    """R, S, T (stopped)... from /proc/<pid>/stat."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_thread_left_running_by_the_handler_makes_no_progress_until_the_next_invocation(tmp_path: Path):
    counter = tmp_path / "ticks"
    with gateway() as (client, _):
        started = ask(client, tick_file=str(counter), sleep=0.3)
        assert started.status_code == 200
        at_return = ticks(counter)
        assert at_return >= 2, "the thread ticks while its invocation runs"
        assert process_state(started.json()["pid"]) == "T"

        time.sleep(1.0)  # 20 ticks' worth
        assert ticks(counter) == at_return, "a frozen container runs nothing between invocations"

        resumed = ask(client, sleep=0.5)
        assert resumed.json()["ticks"] >= at_return + 4, "the thread resumes during the next invocation"
        after_second = ticks(counter)
        time.sleep(0.5)
        assert ticks(counter) == after_second


def test_without_freezing_the_thread_keeps_running_between_invocations(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOCAL_API_FREEZE", "0")
    counter = tmp_path / "ticks"
    with gateway() as (client, _):
        assert ask(client, tick_file=str(counter), sleep=0.3).status_code == 200
        at_return = ticks(counter)
        time.sleep(1.0)
        assert ticks(counter) >= at_return + 5


def test_past_the_integration_timeout_the_client_gets_http_apis_503_and_the_container_finishes_first(monkeypatch):
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway(containers=1) as (client, _):
        pid = ask(client).json()["pid"]

        sent = time.monotonic()
        slow = ask(client, sleep=3.5)
        waited = time.monotonic() - sent
        assert slow.status_code == 503
        assert slow.content == SERVICE_UNAVAILABLE
        assert TIMEOUT <= waited < TIMEOUT + LATE

        # The only container still runs the timed-out invocation (~1.5 s more): the next request waits.
        sent_at = time.time()
        queued = ask(client)
        answer = queued.json()
        assert queued.status_code == 200
        assert answer["pid"] == pid
        assert answer["most_in_flight"] == 1
        assert answer["started"] - sent_at >= 1.0
        assert abs(answer["time_epoch_ms"] / 1000 - sent_at) < 0.5, "timeEpoch is the arrival at the gateway"
        assert 28_000 < answer["remaining_ms"] <= 29_000, "the function timeout counts from the invocation"


def test_a_cold_start_counts_toward_the_integration_timeout(monkeypatch):
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway() as (client, _):
        sent = time.monotonic()
        cold = ask(client, "/slow-import", sleep=0.8)  # 1.5 s import + 0.8 s > 2 s
        waited = time.monotonic() - sent
        assert cold.status_code == 503
        assert cold.content == SERVICE_UNAVAILABLE
        assert TIMEOUT <= waited < TIMEOUT + LATE

        time.sleep(0.6)  # the container finishes that invocation
        warm = ask(client, "/slow-import", sleep=0.8)  # the same handler, warm, fits
        assert warm.status_code == 200


def test_waiting_for_a_free_container_counts_toward_the_integration_timeout(monkeypatch):
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway(containers=1) as (client, _), ThreadPoolExecutor(1) as threads:
        busy = threads.submit(ask, client, sleep=1.5)
        time.sleep(0.3)
        sent = time.monotonic()
        queued = ask(client, sleep=1.0)  # ~1.2 s waiting + 1 s > 2 s
        waited = time.monotonic() - sent
        assert queued.status_code == 503
        assert TIMEOUT <= waited < TIMEOUT + LATE
        assert busy.result().status_code == 200


def test_concurrent_requests_go_to_distinct_containers_one_invocation_each():
    with gateway(containers=2) as (client, pool), ThreadPoolExecutor(4) as threads:
        responses = list(threads.map(lambda _: ask(client, sleep=0.6), range(4)))
        containers = pool.pids()
    answers = [r.json() for r in responses]
    assert [r.status_code for r in responses] == [200] * 4
    assert sorted({a["pid"] for a in answers}) == containers
    assert len(containers) == 2
    assert all(a["most_in_flight"] == 1 for a in answers)
    overlaps = [
        (a["pid"] == b["pid"], a["started"] < b["ended"] and b["started"] < a["ended"])
        for a, b in itertools.combinations(answers, 2)
    ]
    assert (True, True) not in overlaps, "two invocations at once in one container"
    assert (False, True) in overlaps, "the two containers served requests at the same time"


def test_an_unhandled_exception_is_http_apis_500():
    with gateway() as (client, _):
        failed = ask(client, **{"raise": True})
        assert failed.status_code == 500
        assert failed.content == INTERNAL_SERVER_ERROR


def test_a_container_killed_mid_invocation_is_a_500_and_is_replaced_by_a_fresh_one():
    with gateway() as (client, pool), ThreadPoolExecutor(1) as threads:
        pid = ask(client).json()["pid"]
        pending = threads.submit(ask, client, sleep=5)
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        killed = pending.result()
        assert killed.status_code == 500
        assert killed.content == INTERNAL_SERVER_ERROR

        fresh = ask(client)
        assert fresh.status_code == 200
        assert fresh.json()["pid"] != pid
        assert pool.pids() == [fresh.json()["pid"]]


def test_stopping_the_gateway_leaves_no_container_behind_frozen_ones_included():
    with gateway(containers=2) as (client, pool), ThreadPoolExecutor(2) as threads:
        answers = [json.loads(r.content) for r in threads.map(lambda _: ask(client, sleep=0.5), range(2))]
        pids = sorted({a["pid"] for a in answers})
        assert len(pids) == 2
        assert [process_state(pid) for pid in pids] == ["T", "T"]

        stopping = time.monotonic()
        pool.shutdown()
        took = time.monotonic() - stopping

    # A stopped process leaves SIGTERM pending: only continuing it first stops it within the grace period.
    assert took < STOP_GRACE_SECONDS
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --- the HttpApi's CorsConfiguration and route throttling -----------------------------------------

ALLOWED = "http://127.0.0.1:3000"
THROTTLED = "POST /slow-import"  # a route of its own, throttled to one request


def cors_rules(own_answers: bool = True) -> GatewayRules:
    """template.yaml's CORS for ALLOWED, and a throttle that admits one request on THROTTLED."""
    rules = gateway_rules(env={"CORS_ORIGINS": ALLOWED})
    throttle = RouteThrottle(Limits(rate=1000, burst=1000), {THROTTLED: Limits(rate=0.001, burst=1)})
    return GatewayRules(rules.cors, throttle, own_answers)


def origins(response: httpx.Response) -> list[str]:
    return response.headers.get_list("access-control-allow-origin")


def cors_names(response: httpx.Response) -> set[str]:
    return {name.lower() for name in response.headers if name.lower().startswith("access-control-")}


def every_kind_of_answer(client: httpx.Client, origin: str) -> dict[str, httpx.Response]:
    """One answer of each kind the gateway sends, to requests from ``origin``."""
    headers = {"origin": origin}
    preflight = {**headers, "access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    return {
        "preflight": client.options("/probe", headers=preflight),  # no OPTIONS route: the gateway answers
        "integration": client.post("/probe", json={}, headers=headers),
        # the integration's own CORS headers: dropped, whatever their case
        "integration with its own CORS": client.post(
            "/probe",
            json={
                "headers": {
                    "Access-Control-Allow-Origin": "https://evil.example",
                    "access-control-allow-origin": origin,
                }
            },
            headers=headers,
        ),
        "first on the throttled route": client.post("/slow-import", json={}, headers=headers),
        "throttled": client.post("/slow-import", json={}, headers=headers),
        "invocation error": client.post("/probe", json={"raise": True}, headers=headers),
        "no route": client.get("/nowhere", headers=headers),
        "integration timeout": client.post("/probe", json={"sleep": TIMEOUT + 1}, headers=headers),
    }


def test_every_answer_to_an_allowed_origin_carries_one_allow_origin_the_gateway_s_own_included(monkeypatch):
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway(containers=2, rules=cors_rules()) as (client, _):
        answers = every_kind_of_answer(client, ALLOWED)

    statuses = {kind: answer.status_code for kind, answer in answers.items()}
    assert statuses == {
        "preflight": 204,
        "integration": 200,
        "integration with its own CORS": 200,
        "first on the throttled route": 200,
        "throttled": 429,
        "invocation error": 500,
        "no route": 404,
        "integration timeout": 503,
    }
    assert answers["throttled"].content == b'{"message":"Too Many Requests"}'
    for kind, answer in answers.items():
        assert origins(answer) == [ALLOWED], kind
        assert answer.headers["access-control-allow-credentials"] == "true", kind
    assert answers["preflight"].headers["access-control-allow-methods"] == "DELETE,GET,OPTIONS,POST,PUT"
    assert answers["preflight"].headers["access-control-allow-headers"] == "Authorization,Content-Type,Idempotency-Key"
    assert answers["preflight"].headers["access-control-max-age"] == "600"
    assert (
        answers["throttled"].headers["access-control-expose-headers"]
        == "Retry-After,X-Request-Id,X-Next-Cursor,Content-Disposition"
    )
    assert answers["integration"].json()["cors_by_gateway"] == "true"  # as the template tells the function


def test_another_origin_gets_no_cors_header_on_any_answer(monkeypatch):
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway(containers=2, rules=cors_rules()) as (client, _):
        answers = every_kind_of_answer(client, "https://evil.example")

    assert answers["throttled"].status_code == 429
    assert {kind: cors_names(answer) for kind, answer in answers.items()} == {kind: set() for kind in answers}


def test_without_cors_on_its_own_errors_the_gateway_still_writes_it_on_integration_answers_and_preflights(
    monkeypatch,
):
    # LOCAL_API_CORS_ON_OWN_ANSWERS=0: what a browser gets if HTTP API writes no CORS on its own answers
    monkeypatch.setenv("LOCAL_API_TIMEOUT_SECONDS", str(TIMEOUT))
    with gateway(containers=2, rules=cors_rules(own_answers=False)) as (client, _):
        answers = every_kind_of_answer(client, ALLOWED)

    own = {"throttled", "invocation error", "no route", "integration timeout"}  # the preflight's is documented
    assert {kind for kind, answer in answers.items() if not origins(answer)} == own
    assert all(origins(answers[kind]) == [ALLOWED] for kind in answers.keys() - own)
