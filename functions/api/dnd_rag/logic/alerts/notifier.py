"""Delivers alert events to every configured channel, once per event and channel, and never lets
a delivery outlive the request that started it.

Exactly once across containers: each (event, channel) delivery is claimed by one conditional
write (EventClaims) that a single container wins; the winner composes the event (only then: the
top-users read is paid once), delivers it, then marks it sent. A failed delivery drops the claim,
so a later request that sees the event due again retries it, with the same event id. A claim
whose holder died expires after ``claim_seconds`` (ALERT_CLAIM_SECONDS) and is then retried too.
An event a job left unsettled is also kept pending (one write, on that path only, within the
bound) for the scheduled sweeper, which retries it through the same claims (logic/alerts/pending.py):
no later request may come.

Lambda freezes the execution environment as soon as the handler returns: a thread still running
then makes no progress until the container's next invocation, maybe never (and its claim expires
meanwhile, so another container delivers again). So ``emit`` waits for every job it started, and
every job is bounded: each step has a worst case fixed by its client's timeouts and attempts
(timing.py), and a job that cannot *start* a step in time gives up instead of starting it late.
The arithmetic, per job (one event on one channel), with the defaults in seconds:

    pick-up    ≤ P = a pool thread takes the job (idle threads: at once)            = 0.2
    claim      ≤ W = 2 x (0.25 connect + 0.75 read) + 0.025: resends while one fits  = 2.025
    compose    ≤ R = 1 Query page x (0.25 + 0.75)  (budget events; once per event)  = 1.0
    deliver    ≤ D(channel): SES, SNS: 1 attempt x (0.5 connect + 1.5 read)         = 2.0
                             webhook: ALERT_WEBHOOK_TIMEOUT_SECONDS, a total cut    ≤ 2.0
    mark/drop  ≤ W                                                                  = 2.025

    max_seconds = P + W + R + max D + W = 7.25 (timing.MAX_SECONDS): the bound of one emit.

Jobs run in parallel, so the bound holds for all of them together. A job claims only if it starts
by ``emit``'s start + P + (max D - D(channel)), and delivers only if claim and compose ended by
that + W + R: then deliver and mark end by the bound. A job late for either is abandoned: never
claimed, or its claim dropped so that a later request retries it within BUSY_RETRY_SECONDS; it is
never started late. Typically every store call takes milliseconds; a hanging receiver costs a
request the channel's timeout, once per RETRY_SECONDS per container. Claims (ALERT_CLAIM_SECONDS)
outlive the bound, so a live job's claim never expires under it.

A claim whose every answer was lost (it may have been applied) is dropped too, and if even that
fails, this container's next try finds it its own (a slot's claims carry one owner per container).

The window that stays at-least-once: a delivery whose outcome is unknown (the receiver may have
got it, but its answer timed out or was lost) drops the claim, and a later request delivers it
again with the same event id; a delivery accepted whose "sent" mark failed is delivered again
once the claim expires. Receivers dedupe on the event id (webhook ``X-Event-Id``, SNS
``event_id`` attribute and, on a FIFO topic, its deduplication id; the e-mail names it). Within
one claim nothing is sent twice: every channel makes exactly one attempt.
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
from dnd_rag.logic.alerts.timing import PICKUP_SECONDS
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import iso
from dnd_rag.logic.ports import AlertChannel, EventClaims, PendingEvents
from dnd_rag.models.events import Event, EventType, event_id
from dnd_rag.observability import logger, metrics

CHANNELS: tuple[str, ...] = ("ses", "sns", "webhook")  # the names metrics carry: AlertSent_<channel>
CLAIM_SECONDS = 60.0  # default ALERT_CLAIM_SECONDS: far longer than a job may take (max_seconds)
RETRY_SECONDS = 15.0  # a failed delivery is retried by this container's requests no sooner than this
BUSY_RETRY_SECONDS = 1.0  # another container holds the claim, or ours was given up: try again soon
POOL_SIZE = 8  # jobs of one emit run in parallel: at most 2 events x 3 channels in practice
Outcome = Literal["delivered", "already", "busy", "failed", "late"]


@dataclass(frozen=True)
class Due:
    """An event that should exist; ``compose`` builds its data only if a channel claim is won."""

    type: EventType
    day: str
    key: str
    compose: Callable[[], dict[str, Any]]
    occurred_at: str | None = None  # a retry's: when the event was first composed (else: now)

    @property
    def id(self) -> str:
        return event_id(self.type, self.day, self.key)


class _Composed:
    """The event of a Due, built once however many channels won their claims."""

    def __init__(self, due: Due, now: float) -> None:
        self.due = due
        self._now = now
        self._lock = threading.Lock()
        self._event: Event | None = None

    def get(self) -> Event:
        with self._lock:
            if self._event is None:
                due = self.due
                self._event = Event(due.type, due.day, due.key, due.occurred_at or iso(self._now), due.compose())
            return self._event

    @property
    def ready(self) -> bool:
        """Composed already (recording it costs no compose read)."""
        return self._event is not None


class Notifier:
    def __init__(
        self,
        claims: EventClaims,
        channels: Iterable[AlertChannel],
        clock: Callable[[], float],
        claim_seconds: float = CLAIM_SECONDS,
        compose_seconds: float = 0.0,
        pending: PendingEvents | None = None,
    ) -> None:
        """``compose_seconds``: the longest a ``Due.compose`` may take (a store read for budget
        events). Refuses a claim that could expire while its job still runs. ``pending``: where an
        event left unsettled is kept for the scheduled sweeper (None: only later requests retry)."""
        self._claims = claims
        self._pending = pending
        self._channels = list(channels)
        unknown = [c.name for c in self._channels if c.name not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown alert channels {unknown}; add them to CHANNELS (metrics name them)")
        self._clock = clock
        self._store_seconds = claims.max_seconds
        self._compose_seconds = compose_seconds
        self._slowest = max((c.max_seconds for c in self._channels), default=0.0)
        # the bound of one emit (module docstring): pick-up, claim, compose, deliver, mark or drop
        self.max_seconds = PICKUP_SECONDS + self._store_seconds + compose_seconds + self._slowest + self._store_seconds
        if claim_seconds <= self.max_seconds:
            raise ValueError(
                f"a claim of {claim_seconds} s could expire while its job runs (up to {self.max_seconds} s)"
            )
        self._claim_seconds = claim_seconds
        self._settled: BoundedMap[str, bool] = BoundedMap(10_000)  # event ids every channel has
        self._done: BoundedMap[tuple[str, str], bool] = BoundedMap(10_000)  # (event, channel) delivered
        self._not_before: BoundedMap[tuple[str, str], float] = BoundedMap(10_000)  # monotonic retry time
        # the name this container's claims on a slot carry, made at its first try here (never in an
        # init that forked or snapshotted containers share): one job per slot runs here at a time
        # and none outlives its request, so a claim applied whose answer was lost is found ours by
        # the next try here, instead of holding every container off until it expires
        self._owners: BoundedMap[tuple[str, str], str] = BoundedMap(10_000)
        self._recorded: BoundedMap[str, bool] = BoundedMap(10_000)  # event ids this container kept pending
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="alerts")

    @property
    def enabled(self) -> bool:
        return bool(self._channels)

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self._channels]

    def settled(self, event_id: str) -> bool:
        """True when this container knows every channel has the event (no store round trip)."""
        return self._settled.get(event_id) is not None

    def emit(self, *due: Due, keep_unsettled: bool = True) -> set[str]:
        """Deliver each due event on every channel that takes it, once; the ids now settled
        everywhere. Never raises; returns within ``max_seconds``, once every job it started has
        ended: nothing it started runs after it returns (Lambda freezes the container then).

        An event a job of this call left unsettled (failed, late, busy, outcome unknown) is kept
        pending for the scheduled sweeper (``keep_unsettled``; the sweeper's own retries pass
        False: the record is there already): one write, on that path only, inside the bound.

        A request may see an event due several times (its hold, its settle): what this container
        already knows is skipped without a round trip — a channel that has the event, a failed or
        contended delivery until its retry time — so a dead receiver costs a request its timeout
        at most once per RETRY_SECONDS, not on every budget state it sees."""
        started = time.monotonic()
        now = self._clock()
        settled: set[str] = set()
        jobs: dict[Future[Outcome], tuple[str, str]] = {}
        waiting: set[str] = set()  # events with a channel skipped for now
        composed_of: dict[str, _Composed] = {}
        for item in due:
            if self.settled(item.id):
                settled.add(item.id)
                continue
            composed = composed_of[item.id] = _Composed(item, now)
            for channel in self._channels:
                slot = (item.id, channel.name)
                if not channel.accepts(item.type) or self._done.get(slot):
                    continue
                if not self._claim_slot(slot):
                    waiting.add(item.id)
                    continue
                # the latest times this job may claim, and deliver, and still end by the bound
                claim_by = started + PICKUP_SECONDS + self._slowest - channel.max_seconds
                deliver_by = claim_by + self._store_seconds + self._compose_seconds
                job = self._pool.submit(self._deliver_once, item, composed, channel, now, (claim_by, deliver_by))
                jobs[job] = slot
        unsettled: list[str] = []  # events a job of this call left unsettled on its channel
        if jobs:
            wait(jobs)  # no timeout: each job is bounded (module docstring), and none may outlive us
            for future, (item_id, _channel) in jobs.items():
                if future.exception() is not None or future.result() not in ("delivered", "already"):
                    waiting.add(item_id)
                    unsettled.append(item_id)
        if keep_unsettled and unsettled:
            self._keep_pending([composed_of[item_id] for item_id in dict.fromkeys(unsettled)], started)
        for item in due:
            if item.id not in waiting:
                settled.add(item.id)
                self._settled.put(item.id, True)
        return settled

    def _keep_pending(self, events: list[_Composed], started: float) -> None:
        """Record each event for the sweeper, once per container, if the write (and a compose not
        yet made) still ends within this emit's bound: the jobs' worst case leaves that room
        unless the store itself is slow, and then the record would likely fail too."""
        if self._pending is None:
            return
        for composed in events:
            due = composed.due
            if self._recorded.get(due.id):
                continue
            needs = self._pending.max_seconds + (0.0 if composed.ready else self._compose_seconds)
            if time.monotonic() + needs > started + self.max_seconds:
                logger.warning("alert left to later requests: no time to keep it pending", extra={"event": due.id})
                continue
            try:
                self._pending.record(composed.get(), self._clock())
            except Exception:  # later requests in this container still retry it
                logger.exception("alert not kept pending", extra={"event": due.id, "type": due.type})
                continue
            self._recorded.put(due.id, True)
            logger.info("alert kept pending for the sweeper", extra={"event": due.id, "type": due.type})

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
        wait_seconds = {"failed": RETRY_SECONDS, "busy": BUSY_RETRY_SECONDS, "late": BUSY_RETRY_SECONDS}
        self._not_before.put(slot, time.monotonic() + wait_seconds.get(outcome, 0.0))

    def _deliver_once(
        self, due: Due, composed: _Composed, channel: AlertChannel, now: float, by: tuple[float, float]
    ) -> Outcome:
        outcome: Outcome = "late"
        try:
            if time.monotonic() <= by[0]:  # else it waited too long for a thread: not even claimed
                outcome = self._claim_and_deliver(due, composed, channel, now, by[1])
        finally:
            self._finished((due.id, channel.name), outcome)
        return outcome

    def _claim_and_deliver(
        self, due: Due, composed: _Composed, channel: AlertChannel, now: float, deliver_by: float
    ) -> Outcome:
        """Claim, deliver, mark sent (or drop the claim). Never raises."""
        slot = (due.id, channel.name)
        owner = self._owners.get(slot)
        if owner is None:
            owner = uuid.uuid4().hex
            self._owners.put(slot, owner)
        try:
            claimed = self._claims.claim(due.day, due.id, channel.name, owner, now, now + self._claim_seconds)
        except Exception:
            logger.exception("alert claim failed", extra={"event": due.id, "channel": channel.name})
            # it may have been applied, its answers lost: give it back rather than hold every
            # container off until it expires (ends by the bound: P + W + W)
            self._drop(due, channel, owner)
            return "busy"
        if claimed != "won":
            return "already" if claimed == "sent" else "busy"
        try:
            event = composed.get()
            if time.monotonic() > deliver_by:
                # delivering now could outlast the request: give the claim back for a later one
                logger.warning(
                    "alert not started: no time left in this request; a later request delivers it",
                    extra={"event": due.id, "type": due.type, "channel": channel.name},
                )
                self._drop(due, channel, owner)
                return "late"
            channel.deliver(event)
        except Exception as exc:  # an alert must never fail the query
            reason = exc.reason if isinstance(exc, AlertDeliveryError) else type(exc).__name__
            _count("AlertFailed", channel.name)
            logger.warning(
                "alert not delivered; a later request retries it",
                extra={"event": due.id, "type": due.type, "channel": channel.name, "reason": reason},
            )
            self._drop(due, channel, owner)
            return "failed"
        _count("AlertSent", channel.name)
        logger.info("alert delivered", extra={"event": due.id, "type": due.type, "channel": channel.name})
        try:
            self._claims.mark_sent(due.day, due.id, channel.name, owner, self._clock())
        except Exception:
            # delivered, but not marked: once the claim expires it may be delivered again (same id)
            logger.exception("alert delivered but not marked sent", extra={"event": due.id, "channel": channel.name})
        return "delivered"

    def _drop(self, due: Due, channel: AlertChannel, owner: str) -> None:
        try:
            self._claims.drop(due.day, due.id, channel.name, owner)
        except Exception:  # the claim then expires after claim_seconds
            logger.exception("alert claim not dropped", extra={"event": due.id, "channel": channel.name})


def _count(outcome: Literal["AlertSent", "AlertFailed"], channel: str) -> None:
    """The total (alarms watch it) and the per-channel count (the dashboard shows them)."""
    if outcome == "AlertSent":
        metrics.add_metric(name="AlertSent", unit="Count", value=1)
        metrics.add_metric(name=f"AlertSent_{channel}", unit="Count", value=1)
    else:
        metrics.add_metric(name="AlertFailed", unit="Count", value=1)
        metrics.add_metric(name=f"AlertFailed_{channel}", unit="Count", value=1)
