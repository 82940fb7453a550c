"""Alert events left unsettled by a request, for the scheduled sweeper to retry:
``EVENT#<day> / PENDING#<event id>`` (the day's partition of the event's claims; ``<day>`` is the
month for the monthly budget's alerts).

One item per event with what a retry needs to deliver it as first composed: ``type``, ``key``,
``occurred_at`` and ``data`` (JSON). Written only when an ``emit`` ended with the event unsettled
on some channel (a rare path: a request whose deliveries settle writes nothing here), deleted by
the sweeper once every channel has it, and removed by TTL with the day's claims otherwise.

The client is the alert one (``alert_store_client``): a record is written inside the notifier's
bound, so it has the claims' short timeouts and the same resends of an answer that may be lost
(a put of the same item is idempotent).
"""

from __future__ import annotations

import json
from typing import Any, cast

from dnd_rag.dal.alerts.event_claims import keep_until, resend_write
from dnd_rag.dal.dynamo import number, store_errors
from dnd_rag.logic.alerts.timing import STORE_WRITE_SECONDS
from dnd_rag.models.events import EVENT_TYPES, Event, EventType
from dnd_rag.observability import logger

PREFIX = "PENDING#"


def _key(day: str, event_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"EVENT#{day}"}, "sk": {"S": f"{PREFIX}{event_id}"}}


class DynamoPendingEvents:
    max_seconds = STORE_WRITE_SECONDS

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def record(self, event: Event, now: float) -> None:
        item = {
            **_key(event.day, event.id),
            "type": {"S": event.type},
            "day": {"S": event.day},
            "key": {"S": event.key},
            "occurred_at": {"S": event.occurred_at},
            "data": {"S": json.dumps(event.data, sort_keys=True)},
            "expires_at": number(keep_until(event.day, now)),
        }
        resend_write("PutItem pending event", lambda: self._client.put_item(TableName=self._table, Item=item))

    def of_day(self, day: str, limit: int) -> list[Event]:
        events: list[Event] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :pending)",
            "ExpressionAttributeValues": {":pk": {"S": f"EVENT#{day}"}, ":pending": {"S": PREFIX}},
            "ConsistentRead": True,
            "Limit": limit,
        }
        with store_errors("Query pending events"):
            page = self._client.query(**request)
        for item in page.get("Items", []):
            event = _event(item)
            if event is not None:
                events.append(event)
        return events

    def clear(self, day: str, event_id: str) -> None:
        with store_errors("DeleteItem pending event"):
            self._client.delete_item(TableName=self._table, Key=_key(day, event_id))


def _event(item: dict[str, Any]) -> Event | None:
    kind = item["type"]["S"]
    if kind not in EVENT_TYPES:  # written by a later version: leave it to that version's sweeper
        logger.warning("pending alert of an unknown type left alone", extra={"type": kind})
        return None
    data = json.loads(item["data"]["S"])
    return Event(cast(EventType, kind), item["day"]["S"], item["key"]["S"], item["occurred_at"]["S"], data)
