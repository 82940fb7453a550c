"""The per-user quota events and the operator-action event (budget thresholds: logic/alerts/budget_alerts.py).

``user_quota_nearing`` when a user reaches 80 % of a daily quota, ``user_quota_exceeded`` when it
is used up; for the daily request quota (``quota: "requests"``, observed on each admission) and
for the daily dollar cap (``quota: "usd"``, observed when the user's spend moves). They cost
nothing until a threshold is crossed: below 80 % no event is due and nothing is written; past it
each container tries the delivery claim once and then remembers the event settled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal

from dnd_rag.logic.alerts.notifier import Due, Notifier
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import iso, next_midnight, utc_day
from dnd_rag.logic.limits.rate_limit import Admission
from dnd_rag.logic.money.budget import percentage
from dnd_rag.models.controls import AuditEntry
from dnd_rag.pricing import usd_for_display

NEARING_PERCENT = 80
Quota = Literal["requests", "usd"]


def _nearing_at(limit: int) -> int:
    return max(1, -(-limit * NEARING_PERCENT // 100))


class QuotaEvents:
    def __init__(self, notifier: Notifier, clock: Callable[[], float]) -> None:
        self._notifier = notifier
        self._clock = clock
        # events whose delivery failed, retried by the user's next request in this container,
        # even a rejected one (the exceeded event has no later admission to ride on); the user may
        # never come back: the notifier keeps them pending for the scheduled sweeper too
        self._pending: BoundedMap[tuple[str, str], list[Due]] = BoundedMap(10_000)

    def admission_due(self, user_id: str, admission: Admission, daily_limit: int) -> list[Due]:
        """The events an admission makes due (usually none: no work, no round trip)."""
        count = admission.standing.daily_count
        return self._due(admission.day, user_id, "requests", count, daily_limit, count, daily_limit)

    def deliver(self, user_id: str, due: list[Due]) -> None:
        """Deliver ``due`` (never raises; bounded by the notifier)."""
        if not due:
            return
        settled = self._notifier.emit(*due)
        unsettled = [item for item in due if item.id not in settled]
        key = (due[0].day, user_id)
        if unsettled:
            self._pending.put(key, unsettled)
        else:
            self._pending.pop(key)

    def observe_rejection(self, user_id: str, day: str) -> None:
        """A rejected request of the user: retries only deliveries that failed in this container."""
        pending = self._pending.get((day, user_id))
        if pending:
            self.deliver(user_id, pending)

    def observe_spend(self, day: str, user_id: str, spent: int, cap: int, exhausted: bool = False) -> None:
        """The user's dollar use moved to ``spent`` (nano-dollars) against ``cap``; ``exhausted``
        when what is left cannot pay for the cheapest query (the cap counts as reached)."""
        due = self._due(day, user_id, "usd", spent, cap, usd_for_display(spent), usd_for_display(cap), exhausted)
        self.deliver(user_id, due)

    def _due(
        self,
        day: str,
        user_id: str,
        quota: Quota,
        used: int,
        limit: int,
        shown_used: float,
        shown_limit: float,
        exhausted: bool = False,
    ) -> list[Due]:
        if limit <= 0 or used < _nearing_at(limit):
            return []
        key = f"{user_id}:{quota}"
        midnight = next_midnight(self._clock())
        data = {
            "user_id": user_id,
            "quota": quota,
            "used": shown_used,
            "limit": shown_limit,
            "percentage": percentage(used, limit),
            "resets_at": iso(midnight),
        }
        due = [Due("user_quota_nearing", day, key, lambda: data)]
        if used >= limit or exhausted:
            due.append(Due("user_quota_exceeded", day, key, lambda: data))
        return [item for item in due if not self._notifier.settled(item.id)]


class OperatorEvents:
    """``operator_action``: what an operator changed (who, action, before -> after)."""

    def __init__(self, notifier: Notifier, clock: Callable[[], float]) -> None:
        self._notifier = notifier
        self._clock = clock

    def on_audit(self, entry: AuditEntry) -> None:
        """The operator routes' ``on_action`` hook: each audit entry, once on every channel."""
        self.on_action(entry.who, entry.action, entry.before, entry.after, entry.id, entry.target, entry.at)

    def on_action(
        self,
        who: str,
        action: str,
        before: Any,
        after: Any,
        action_id: str | None = None,
        target: str | None = None,
        at: float | None = None,
    ) -> None:
        """Deliver one operator action to every channel, once. ``action_id`` (the audit record's
        id) keeps the event's id stable across retries."""
        when = self._clock() if at is None else at
        data = {"who": who, "action": action, "target": target, "before": before, "after": after, "at": iso(when)}
        key = action_id or hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]
        self._notifier.emit(Due("operator_action", utc_day(when), key, lambda: data))
