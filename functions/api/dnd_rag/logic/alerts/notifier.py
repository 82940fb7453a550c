"""Delivers alert events to every configured channel, once per event and channel, never failing
or slowing a query beyond a bound.

Exactly once across containers: each (event, channel) delivery is claimed by one conditional
write (EventClaims) that a single container wins; the winner composes the event (only then: the
top-users read is paid once), delivers it, then marks it sent. A failed delivery drops the claim,
so a later request that sees the event due again retries it, with the same event id. A claim
whose holder died (or timed out) expires after CLAIM_SECONDS and is then retried too.

The window that stays at-least-once: a delivery the channel accepted but whose "sent" mark was
never written (the container died, or DynamoDB failed, in between) is sent again once the claim
expires. Receivers dedupe on the event id (webhook ``X-Event-Id``, SNS ``event_id`` attribute
and, on a FIFO topic, its deduplication id).

Bounded time: every job runs on this container's small pool and ``emit`` waits at most
``max_seconds`` for all of them together; a job still running then (a receiver that hangs past
its own timeout) finishes in the background and settles its claim itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

from dnd_rag.errors import AlertDeliveryError
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import iso
from dnd_rag.logic.ports import AlertChannel, EventClaims
from dnd_rag.models.events import Event, EventType, event_id
from dnd_rag.observability import logger, metrics

CHANNELS: tuple[str, ...] = ("ses", "sns", "webhook")  # the names metrics carry: AlertSent_<channel>
CLAIM_SECONDS = 60  # longer than any delivery can take (each channel has a timeout of a few seconds)
MAX_SECONDS = 3.0  # default bound on what one request spends on alerts, all events and channels together
RETRY_SECONDS = 15.0  # a failed delivery is retried by this container's requests no sooner than this
BUSY_RETRY_SECONDS = 1.0  # another container holds the claim: it is delivering right now
Outcome = Literal["delivered", "already", "busy", "failed"]


@dataclass(frozen=True)
class Due:
    """An event that should exist; ``compose`` builds its data only if a channel claim is won."""

    type: EventType
    day: str
    key: str
    compose: Callable[[], dict[str, Any]]

    @property
    def id(self) -> str:
        return event_id(self.type, self.day, self.key)


class _Composed:
    """The event of a Due, built once however many channels won their claims."""

    def __init__(self, due: Due, now: float) -> None:
        self._due = due
        self._now = now
        self._lock = threading.Lock()
        self._event: Event | None = None

    def get(self) -> Event:
        with self._lock:
            if self._event is None:
                due = self._due
                self._event = Event(due.type, due.day, due.key, iso(self._now), due.compose())
            return self._event


class Notifier:
    def __init__(
        self,
        claims: EventClaims,
        channels: Iterable[AlertChannel],
        clock: Callable[[], float],
        max_seconds: float = MAX_SECONDS,
        claim_seconds: float = CLAIM_SECONDS,
    ) -> None:
        self._claims = claims
        self._channels = list(channels)
        unknown = [c.name for c in self._channels if c.name not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown alert channels {unknown}; add them to CHANNELS (metrics name them)")
        self._clock = clock
        self.max_seconds = max_seconds
        self._claim_seconds = claim_seconds
        self._settled: BoundedMap[str, bool] = BoundedMap(10_000)  # event ids every channel has
        self._done: BoundedMap[tuple[str, str], bool] = BoundedMap(10_000)  # (event, channel) delivered
        self._not_before: BoundedMap[tuple[str, str], float] = BoundedMap(10_000)  # monotonic retry time
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="alerts")

    @property
    def enabled(self) -> bool:
        return bool(self._channels)

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self._channels]

    def settled(self, event_id: str) -> bool:
        """True when this container knows every channel has the event (no store round trip)."""
        return self._settled.get(event_id) is not None

    def emit(self, *due: Due) -> set[str]:
        """Deliver each due event on every channel that takes it, once; the ids now settled
        everywhere. Never raises; returns within ``max_seconds``.

        A request may see an event due several times (its hold, its settle): what this container
        already knows is skipped without a round trip — a channel that has the event, a delivery
        running now, a failed or contended one until its retry time — so a dead receiver costs a
        request its timeout at most once per RETRY_SECONDS, not on every budget state it sees."""
        deadline = time.monotonic() + self.max_seconds
        now = self._clock()
        settled: set[str] = set()
        jobs: dict[Future[Outcome], tuple[str, str]] = {}
        waiting: set[str] = set()  # events with a channel skipped for now
        for item in due:
            if self.settled(item.id):
                settled.add(item.id)
                continue
            composed = _Composed(item, now)
            for channel in self._channels:
                slot = (item.id, channel.name)
                if not channel.accepts(item.type) or self._done.get(slot):
                    continue
                if not self._claim_slot(slot):
                    waiting.add(item.id)
                    continue
                jobs[self._pool.submit(self._deliver_once, item, composed, channel, now)] = slot
        if jobs:
            done, _ = wait(jobs, timeout=max(0.0, deadline - time.monotonic()))
            for future, (item_id, _channel) in jobs.items():
                if future not in done or future.result() not in ("delivered", "already"):
                    waiting.add(item_id)
        for item in due:
            if item.id not in waiting:
                settled.add(item.id)
                self._settled.put(item.id, True)
        return settled

    def _claim_slot(self, slot: tuple[str, str]) -> bool:
        """Reserve (event, channel) for one delivery job in this container, unless one runs or
        the last one asked to wait."""
        with self._lock:
            if time.monotonic() < (self._not_before.get(slot) or 0.0):
                return False
            self._not_before.put(slot, float("inf"))  # running
            return True

    def _finished(self, slot: tuple[str, str], outcome: Outcome) -> None:
        if outcome in ("delivered", "already"):
            self._done.put(slot, True)
        wait_seconds = {"failed": RETRY_SECONDS, "busy": BUSY_RETRY_SECONDS}.get(outcome, 0.0)
        self._not_before.put(slot, time.monotonic() + wait_seconds)

    def _deliver_once(self, due: Due, composed: _Composed, channel: AlertChannel, now: float) -> Outcome:
        outcome = self._claim_and_deliver(due, composed, channel, now)
        self._finished((due.id, channel.name), outcome)
        return outcome

    def _claim_and_deliver(self, due: Due, composed: _Composed, channel: AlertChannel, now: float) -> Outcome:
        """Claim, deliver, mark sent (or drop the claim). Never raises."""
        owner = uuid.uuid4().hex
        try:
            claimed = self._claims.claim(due.day, due.id, channel.name, owner, now, now + self._claim_seconds)
        except Exception:
            logger.exception("alert claim failed", extra={"event": due.id, "channel": channel.name})
            return "busy"
        if claimed != "won":
            return "already" if claimed == "sent" else "busy"
        try:
            event = composed.get()
            channel.deliver(event)
        except Exception as exc:  # an alert must never fail the query
            reason = exc.reason if isinstance(exc, AlertDeliveryError) else type(exc).__name__
            _count("AlertFailed", channel.name)
            logger.warning(
                "alert not delivered; a later request retries it",
                extra={"event": due.id, "type": due.type, "channel": channel.name, "reason": reason},
            )
            try:
                self._claims.drop(due.day, due.id, channel.name, owner)
            except Exception:  # the claim then expires after CLAIM_SECONDS
                logger.exception("alert claim not dropped", extra={"event": due.id, "channel": channel.name})
            return "failed"
        _count("AlertSent", channel.name)
        logger.info("alert delivered", extra={"event": due.id, "type": due.type, "channel": channel.name})
        try:
            self._claims.mark_sent(due.day, due.id, channel.name, owner, self._clock())
        except Exception:
            # delivered, but not marked: once the claim expires it may be delivered again (same id)
            logger.exception("alert delivered but not marked sent", extra={"event": due.id, "channel": channel.name})
        return "delivered"


def _count(outcome: Literal["AlertSent", "AlertFailed"], channel: str) -> None:
    """The total (alarms watch it) and the per-channel count (the dashboard shows them)."""
    if outcome == "AlertSent":
        metrics.add_metric(name="AlertSent", unit="Count", value=1)
        metrics.add_metric(name=f"AlertSent_{channel}", unit="Count", value=1)
    else:
        metrics.add_metric(name="AlertFailed", unit="Count", value=1)
        metrics.add_metric(name=f"AlertFailed_{channel}", unit="Count", value=1)
