"""Delivery claims of alert events in DynamoDB: ``EVENT#<day> / <event id>#<channel>``.

One item per (event, channel): ``claim_until`` + ``owner`` while a container delivers it,
``sent_at`` once delivered; it expires with TTL a few days after its day. Separate items (not
attributes of the day's TOTAL) so that alert traffic never adds writes on the budget's hot item.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import number, update_item
from dnd_rag.logic.common.clock import next_midnight
from dnd_rag.logic.ports import ClaimOutcome

KEEP_SECONDS = 3 * 86_400
_CONDITION_FAILED = "ConditionalCheckFailedException"


def _key(day: str, event_id: str, channel: str) -> dict[str, Any]:
    return {"pk": {"S": f"EVENT#{day}"}, "sk": {"S": f"{event_id}#{channel}"}}


class DynamoEventClaims:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, operation: str, day: str, event_id: str, channel: str, **kwargs: Any) -> dict[str, Any]:
        return update_item(self._client, self._table, _key(day, event_id, channel), operation, **kwargs)

    def claim(self, day: str, event_id: str, channel: str, owner: str, now: float, claim_until: float) -> ClaimOutcome:
        # The claim names its owner, so the SDK re-sending it after a lost response finds our own
        # claim and succeeds, instead of failing its condition and leaving the event undelivered.
        try:
            self._update(
                "UpdateItem event claim",
                day,
                event_id,
                channel,
                UpdateExpression="SET claim_until = :until, #owner = :me, expires_at = :expires",
                ConditionExpression="attribute_not_exists(sent_at) "
                "AND (attribute_not_exists(claim_until) OR claim_until < :now OR #owner = :me)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":until": number(claim_until),
                    ":now": number(now),
                    ":me": {"S": owner},
                    ":expires": number(next_midnight(now) + KEEP_SECONDS),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                raise
            found = exc.response.get("Item", {})
            return "sent" if "sent_at" in found else "busy"
        return "won"

    def mark_sent(self, day: str, event_id: str, channel: str, owner: str, now: float) -> None:
        # unconditional: the channel accepted it, whoever holds the claim now
        self._update(
            "UpdateItem event sent",
            day,
            event_id,
            channel,
            UpdateExpression="SET sent_at = :now REMOVE claim_until, #owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":now": number(now)},
        )

    def drop(self, day: str, event_id: str, channel: str, owner: str) -> None:
        try:
            self._update(
                "UpdateItem event drop",
                day,
                event_id,
                channel,
                UpdateExpression="REMOVE claim_until, #owner",
                ConditionExpression="#owner = :me",  # never another container's live claim
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                raise
