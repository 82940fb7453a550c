"""The local API gateway models what AWS does (SPEC §6), shown with a probe handler
(tests/support/gateway_probe_handler.py) behind the real gateway, its real worker processes and
real HTTP:

- Lambda freezes a container when its handler returns: a thread the handler left running makes
  no progress until that container's next invocation (and does without LOCAL_API_FREEZE);
- HTTP API's integration timeout counts from the request's arrival, waiting for a container and a
  cold start included, and is answered as HTTP API answers it;
- one invocation per container at a time; a container that dies is a 500 and is replaced;
- stopping the gateway leaves no worker, frozen or not.
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
def gateway(containers: int = 1) -> Iterator[tuple[httpx.Client, Containers]]:
    server, pool = make_api_server("127.0.0.1", 0, containers, routes=ROUTES)
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
