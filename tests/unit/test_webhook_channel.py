"""The webhook channel against a real local receiver: one attempt per delivery, and
ALERT_WEBHOOK_TIMEOUT_SECONDS bounds the whole call, even against a receiver that answers a byte
at a time (httpx's timeouts are per phase and per read: alone they would wait for it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dnd_rag.errors import AlertDeliveryError
from dnd_rag.models.events import Event
from dnd_rag.providers.webhook import WebhookChannel
from tests.fakes.webhook_receiver import ReceiverState, start_webhook_receiver

TIMEOUT = 0.5
LATE = 0.4  # scheduling slack on a busy machine


@pytest.fixture
def receiver() -> Iterator[tuple[str, ReceiverState]]:
    server, state = start_webhook_receiver()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    state.release.set()
    server.shutdown()


def event(key: str = "80@1000") -> Event:
    return Event(type="budget_threshold", day="2026-03-04", key=key, occurred_at="2026-03-04T05:06:07Z")


def deliver_timed(url: str) -> tuple[float, AlertDeliveryError | None]:
    channel = WebhookChannel(url, TIMEOUT)
    started = time.monotonic()
    try:
        channel.deliver(event())
    except AlertDeliveryError as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize("mode", ["trickle", "hang"])
def test_a_receiver_slower_than_the_timeout_is_cut_off_at_the_timeout(receiver, mode):
    url, state = receiver
    state.mode, state.trickle_seconds = mode, 3.0

    took, error = deliver_timed(url)

    assert error is not None
    assert TIMEOUT - 0.05 <= took <= TIMEOUT + LATE  # the whole call, not each read
    if mode == "trickle":
        assert error.reason == f"webhook: no answer within {TIMEOUT:g} s"
    assert [t for t in threading.enumerate() if isinstance(t, threading.Timer)] == []  # the cut's timer: gone
    # the receiver sees the sender leave (not finish reading 3 s later), and it was tried once
    assert state.wait_answered()
    (attempt,) = state.attempts
    assert attempt["sender_left"]
    assert state.delivered_ids() == {}


def test_one_attempt_per_delivery_and_only_a_2xx_is_a_delivery(receiver):
    url, state = receiver
    state.mode = "fail"

    _, error = deliver_timed(url)

    assert error is not None
    assert error.reason == "webhook answered 500"
    assert len(state.attempts) == 1  # never retried here: a later request does, same X-Event-Id

    state.mode = "ok"
    took, error = deliver_timed(url)
    assert error is None
    assert took < TIMEOUT
    assert state.wait_answered()
    assert state.delivered_ids() == {event().id: 1}
    assert len(state.attempts) == 2
