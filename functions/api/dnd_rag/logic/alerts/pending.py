"""The scheduled sweeper's part in alerts: deliver the events that requests left unsettled.

A request's ``emit`` that ends with an event unsettled on some channel (failed, late, another
container's claim, outcome unknown) keeps it pending (dal/alerts/pending_events.py). Otherwise
only a later request in the same container that sees the event due again would retry it: a user
past the quota may never come back, and no query may follow the day's last one. The sweeper
(handlers/scheduled.py, every 5 minutes) retries the pending events of yesterday and today (and
of this month and yesterday's, for the monthly budget's) through the same notifier: the same
claims, so each channel still gets each event once, and a channel that has it answers "sent" and
is skipped. A record is deleted once every channel has its event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.logic.alerts.notifier import POOL_SIZE, Due, Notifier
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.ports import PendingEvents
from dnd_rag.models.events import Event
from dnd_rag.observability import logger

PER_DAY = 50  # pending events read per day and sweep (more wait for the next sweep, 5 minutes on)
SWEEP_SECONDS = 12.0  # no batch starts unless it ends by then (the function's timeout is 29 s)


@dataclass(frozen=True)
class PendingOutcome:
    settled: int  # records cleared: every channel has the event (delivered now, or before)
    left: int  # records still pending after this sweep


class PendingAlerts:
    def __init__(self, notifier: Notifier, pending: PendingEvents, clock: Callable[[], float]) -> None:
        self._notifier = notifier
        self._pending = pending
        self._clock = clock

    def retry(self, seconds: float = SWEEP_SECONDS) -> PendingOutcome:
        """Deliver what is pending, in batches the notifier's pool runs at once, while a whole
        batch still ends within ``seconds``. Never raises (a store error leaves the rest pending)."""
        deadline = time.monotonic() + seconds
        now = self._clock()
        days = dict.fromkeys([utc_day(now - 86_400), utc_day(now), utc_day(now - 86_400)[:7], utc_day(now)[:7]])
        per_batch = max(1, POOL_SIZE // max(1, len(self._notifier.channel_names)))
        settled = left = 0
        for day in days:
            try:
                events = self._pending.of_day(day, PER_DAY)
            except Exception:
                logger.exception("pending alerts not read", extra={"day": day})
                continue
            for start in range(0, len(events), per_batch):
                batch = events[start : start + per_batch]
                if time.monotonic() + self._notifier.max_seconds > deadline:
                    left += len(events) - start
                    break
                cleared = self._retry_batch(day, batch)
                settled += cleared
                left += len(batch) - cleared
        return PendingOutcome(settled, left)

    def _retry_batch(self, day: str, batch: list[Event]) -> int:
        settled = self._notifier.emit(*(_due(event) for event in batch), keep_unsettled=False)
        cleared = 0
        for event in batch:
            if event.id not in settled:
                continue
            try:
                self._pending.clear(day, event.id)
            except Exception:  # the next sweep finds every channel "sent" and clears it then
                logger.exception("pending alert delivered but not cleared", extra={"event": event.id})
                continue
            cleared += 1
        return cleared


def _due(event: Event) -> Due:
    data = event.data
    return Due(event.type, event.day, event.key, lambda: data, occurred_at=event.occurred_at)
