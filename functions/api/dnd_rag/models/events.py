"""Alert events: what the notifier delivers to every channel (e-mail, SNS, webhook).

The JSON shape is a public contract (README "Alerts"): receivers parse it, so fields are only
ever added, and ``schema_version`` changes if one ever has to change meaning.

An event's ``id`` is a function of its type, UTC day and key alone, so every container that sees
the same event (the 80 % threshold of one day, one user's quota) names it the same, and every
retry of one delivery carries the same id: receivers dedupe on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from dnd_rag import SERVICE_NAME

SCHEMA_VERSION = 1
EventType = Literal[
    "budget_threshold", "user_quota_nearing", "user_quota_exceeded", "operator_action", "reconciliation_drift"
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)


def event_id(event_type: str, day: str, key: str) -> str:
    """Deterministic: the same event seen by any container, on any retry, has the same id."""
    return hashlib.sha256(f"{event_type}\n{day}\n{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Event:
    type: EventType
    day: str  # the UTC day it belongs to (YYYY-MM-DD)
    key: str  # what makes it unique within its type and day: "80", "<user>:requests", an action id
    occurred_at: str  # ISO 8601 UTC, when it was first composed by this container
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return event_id(self.type, self.day, self.key)

    def as_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type,
            "day": self.day,
            "occurred_at": self.occurred_at,
            "service": SERVICE_NAME,
            "data": self.data,
        }
