"""The notifier under Lambda's freeze: every delivery job it starts has ended when ``emit``
returns (the container may be frozen then, for good), its bound is the sum of each step's worst
case, and a job that cannot start delivering in time is abandoned cleanly, never started late.

In-process, with an in-memory claim store and channels that take as long as they are told:
"frozen" here means "still running when emit returned", found by inspecting the pool's threads.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest

from dnd_rag.dal.alerts.event_claims import ALERT_STORE_CONFIG, DynamoEventClaims
from dnd_rag.dal.alerts.mailer import SES_CONFIG, SesMailer
from dnd_rag.dal.alerts.sns_channel import SNS_CONFIG, SnsChannel
from dnd_rag.errors import AlertDeliveryError
from dnd_rag.logic.alerts import timing
from dnd_rag.logic.alerts.budget_alerts import MailChannel
from dnd_rag.logic.alerts.notifier import Due, Notifier
from dnd_rag.providers.webhook import WebhookChannel
from tests.support.threads import alert_jobs_running

DAY = "2026-03-04"


class MemoryClaims:
    """EventClaims in memory, with DynamoDB's conditions; each call takes ``delays[op]`` seconds."""

    def __init__(self, max_seconds: float, **delays: float) -> None:
        self.max_seconds = max_seconds
        self._delays = delays
        self._lock = threading.Lock()
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, float]] = []  # (operation, channel, ended at)
        self.lose_answers = 0  # claims applied whose answer is lost (every resend included)
        self.failing_drops = 0  # drops that fail (not applied)

    def _slow(self, operation: str, channel: str) -> None:
        time.sleep(self._delays.get(operation, 0.0))
        with self._lock:
            self.calls.append((operation, channel, time.monotonic()))

    def claim(self, day: str, event_id: str, channel: str, owner: str, now: float, claim_until: float) -> str:
        self._slow("claim", channel)
        with self._lock:
            item = self.items.setdefault((event_id, channel), {})
            if "sent_at" in item:
                return "sent"
            if item.get("claim_until", 0) >= now and item.get("owner") != owner:
                return "busy"
            item.update(claim_until=claim_until, owner=owner)
            if self.lose_answers:
                self.lose_answers -= 1
                raise TimeoutError("applied, but the answer was lost")
            return "won"

    def mark_sent(self, day: str, event_id: str, channel: str, owner: str, now: float) -> None:
        self._slow("mark", channel)
        with self._lock:
            self.items[(event_id, channel)] = {"sent_at": now}

    def drop(self, day: str, event_id: str, channel: str, owner: str) -> None:
        self._slow("drop", channel)
        with self._lock:
            if self.failing_drops:
                self.failing_drops -= 1
                raise TimeoutError("not dropped")
            item = self.items.get((event_id, channel), {})
            if item.get("owner") == owner:
                item.pop("claim_until", None)
                item.pop("owner", None)


class TimedChannel:
    """A channel whose delivery takes ``takes`` seconds (declared: ``max_seconds``)."""

    def __init__(self, name: str, max_seconds: float, takes: float) -> None:
        self.name = name
        self.max_seconds = max_seconds
        self.takes = takes
        self.deliveries: list[tuple[str, float, float]] = []  # (event id, started, ended)

    def accepts(self, event_type: str) -> bool:
        return True

    def deliver(self, event: Any) -> None:
        started = time.monotonic()
        time.sleep(self.takes)
        self.deliveries.append((event.id, started, time.monotonic()))


def budget_event(threshold: int = 80) -> Due:
    return Due("budget_threshold", DAY, f"{threshold}@1000", lambda: {"threshold": threshold})


def test_a_job_whose_every_step_takes_its_worst_case_has_ended_when_emit_returns():
    # Given claims and marks that take their whole allowance (1 s each) and a channel that takes
    # its whole timeout (1.5 s): 3.5 s of work, each step within its own bound
    claims = MemoryClaims(1.0, claim=1.0, mark=1.0)
    channel = TimedChannel("webhook", max_seconds=1.5, takes=1.5)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60)

    started = time.monotonic()
    settled = notifier.emit(budget_event())
    returned = time.monotonic()

    # Then emit returned only once the job had ended (delivered and marked), within its bound,
    # leaving nothing running for a freeze to stop halfway
    assert alert_jobs_running() == []
    assert [operation for operation, _, _ in claims.calls] == ["claim", "mark"]
    assert max(ended for _, _, ended in claims.calls) <= returned
    assert returned - started <= notifier.max_seconds
    assert settled == {budget_event().id}


def test_a_channel_that_overruns_its_timeout_still_ends_before_emit_returns():
    # a channel that declares 0.1 s and takes 0.6 s (say, a DNS lookup no timeout covers)
    claims = MemoryClaims(0.1)
    channel = TimedChannel("webhook", max_seconds=0.1, takes=0.6)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60)

    notifier.emit(budget_event())
    returned = time.monotonic()

    assert alert_jobs_running() == []
    (_, _, ended) = channel.deliveries[0]
    assert ended <= returned
    assert claims.calls[-1][0] == "mark"


def test_a_job_that_cannot_start_delivering_in_time_drops_its_claim_and_is_never_delivered_late():
    # Given a claim that takes far longer than its declared worst case (0.1 s): by the time it is
    # won, delivering (0.5 s) and marking could no longer end within the bound
    claims = MemoryClaims(0.1, claim=1.0)
    channel = TimedChannel("webhook", max_seconds=0.5, takes=0.0)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60)
    event = budget_event()

    settled = notifier.emit(event)

    # Then nothing was delivered, the claim was given back (not left to expire), the event is owed
    assert channel.deliveries == []
    assert [operation for operation, _, _ in claims.calls] == ["claim", "drop"]
    assert "owner" not in claims.items[(event.id, "webhook")]
    assert settled == set()
    assert alert_jobs_running() == []

    # and a request a moment later (the claims fast again) delivers it, once
    claims._delays.clear()
    time.sleep(1.0)  # BUSY_RETRY_SECONDS: this container retries an abandoned job that soon
    assert notifier.emit(event) == {event.id}
    assert notifier.emit(event) == {event.id}
    assert [delivered for delivered, _, _ in channel.deliveries] == [event.id]


def test_a_claim_applied_whose_answers_were_lost_is_given_back():
    claims = MemoryClaims(0.1)
    claims.lose_answers = 1
    channel = TimedChannel("webhook", max_seconds=0.1, takes=0.0)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60)
    event = budget_event()

    assert notifier.emit(event) == set()

    # dropped at once (in case it was applied): any container may deliver it now, not in a minute
    assert [operation for operation, _, _ in claims.calls] == ["claim", "drop"]
    assert "owner" not in claims.items[(event.id, "webhook")]


def test_a_claim_applied_whose_answers_were_lost_and_not_given_back_is_found_ours_by_the_next_try_here():
    # Given a claim applied whose answers are all lost, and a drop that fails too
    claims = MemoryClaims(0.1)
    claims.lose_answers, claims.failing_drops = 1, 1
    channel = TimedChannel("webhook", max_seconds=0.1, takes=0.0)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60)
    event = budget_event()
    assert notifier.emit(event) == set()
    assert "owner" in claims.items[(event.id, "webhook")]  # held, by this container

    # When this container's next request tries again (a second later), before the claim expires
    time.sleep(1.0)
    settled = notifier.emit(event)

    # Then the claim is ours: delivered now, not a minute later by whoever outlives the claim
    assert settled == {event.id}
    assert [delivered for delivered, _, _ in channel.deliveries] == [event.id]


def test_the_bound_is_the_sum_of_each_steps_worst_case_with_the_clients_configured_as_it_says():
    # the clients, configured as timing.py says: one attempt each (total_max_attempts counts
    # attempts; botocore's max_attempts would count retries)
    for config, connect, read in (
        (SES_CONFIG, timing.AWS_CONNECT_SECONDS, timing.AWS_READ_TIMEOUT_SECONDS),
        (SNS_CONFIG, timing.AWS_CONNECT_SECONDS, timing.AWS_READ_TIMEOUT_SECONDS),
        (ALERT_STORE_CONFIG, timing.STORE_CONNECT_SECONDS, timing.STORE_READ_TIMEOUT_SECONDS),
    ):
        assert (config.connect_timeout, config.read_timeout) == (connect, read)
        client = boto3.client(
            "ses", config=config, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        assert client.meta.config.retries["total_max_attempts"] == 1

    channels = [
        MailChannel(SesMailer(None, "alerts@example.com", "ops@example.com")),
        SnsChannel(None, "arn:aws:sns:us-east-1:123456789012:alerts"),
        WebhookChannel("https://hooks.example.com/dnd", 0.5),
    ]
    notifier = Notifier(DynamoEventClaims(None, "t"), channels, time.time, compose_seconds=timing.COMPOSE_SECONDS)

    # pick-up 0.2 + claim 2 x (0.25 + 0.75) + 0.025 + compose 1.0 + SES 0.5 + 1.5 + mark 2.025
    assert notifier.max_seconds == pytest.approx(7.25)
    assert notifier.max_seconds == pytest.approx(timing.MAX_SECONDS)
    only_webhook = Notifier(DynamoEventClaims(None, "t"), channels[2:], time.time, compose_seconds=1.0)
    assert only_webhook.max_seconds == pytest.approx(0.2 + 2.025 + 1.0 + 0.5 + 2.025)


def test_a_claim_that_could_expire_under_its_own_job_is_refused():
    channel = TimedChannel("webhook", max_seconds=2.0, takes=0.0)

    with pytest.raises(ValueError, match="could expire while its job runs"):
        Notifier(MemoryClaims(2.0), [channel], time.time, claim_seconds=5)


class MemoryPending:
    """PendingEvents in memory: what was recorded, in order."""

    def __init__(self, max_seconds: float = 0.1) -> None:
        self.max_seconds = max_seconds
        self.recorded: list[Any] = []

    def record(self, event: Any, now: float) -> None:
        self.recorded.append(event)

    def of_day(self, day: str, limit: int) -> list[Any]:
        return self.recorded[:limit]

    def clear(self, day: str, event_id: str) -> None:
        self.recorded = [event for event in self.recorded if event.id != event_id]


class FailingChannel(TimedChannel):
    def deliver(self, event: Any) -> None:
        raise AlertDeliveryError("webhook answered 500")


def test_an_event_left_unsettled_is_kept_pending_once_per_container_composed():
    claims, pending = MemoryClaims(0.1), MemoryPending()
    notifier = Notifier(claims, [FailingChannel("webhook", 0.1, 0.0)], time.time, claim_seconds=60, pending=pending)
    event = budget_event()

    assert notifier.emit(event) == set()
    time.sleep(1.0)
    notifier._not_before.pop((event.id, "webhook"))  # its retry time, come: a later request fails again
    assert notifier.emit(event) == set()

    assert [(e.id, e.data) for e in pending.recorded] == [(event.id, {"threshold": 80})]


def test_an_event_another_container_holds_is_kept_pending_and_one_delivered_is_not():
    claims, pending = MemoryClaims(0.1), MemoryPending()
    channel = TimedChannel("webhook", 0.1, 0.0)
    notifier = Notifier(claims, [channel], time.time, claim_seconds=60, pending=pending)
    held, delivered = budget_event(80), budget_event(100)
    claims.items[(held.id, "webhook")] = {"claim_until": time.time() + 60, "owner": "another container"}

    assert notifier.emit(held, delivered) == {delivered.id}

    # the holder may die with it: the sweeper retries it once the claim expires
    assert [e.id for e in pending.recorded] == [held.id]


def test_the_sweepers_own_retries_and_a_store_too_slow_to_leave_room_write_no_record():
    claims, pending = MemoryClaims(0.1), MemoryPending()
    notifier = Notifier(claims, [FailingChannel("webhook", 0.1, 0.0)], time.time, claim_seconds=60, pending=pending)
    assert notifier.emit(budget_event(), keep_unsettled=False) == set()
    assert pending.recorded == []

    # a claim and a drop that take their whole allowance (0.5 s, the record's too), and a delivery
    # that fails after its whole timeout: the bound has no room left for the record
    pending = MemoryPending(max_seconds=0.5)
    slow = MemoryClaims(0.5, claim=0.5, drop=0.5)
    late = Notifier(slow, [SlowFailingChannel()], time.time, claim_seconds=60, pending=pending)
    started = time.monotonic()
    assert late.emit(budget_event()) == set()
    assert time.monotonic() - started <= late.max_seconds
    assert pending.recorded == []


class SlowFailingChannel(TimedChannel):
    def __init__(self) -> None:
        super().__init__("webhook", max_seconds=0.5, takes=0.5)

    def deliver(self, event: Any) -> None:
        time.sleep(self.takes)
        raise AlertDeliveryError("timed out")
