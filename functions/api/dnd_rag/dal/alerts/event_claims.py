"""Delivery claims of alert events in DynamoDB: ``EVENT#<day> / <event id>#<channel>`` (``<day>``
is the month, ``YYYY-MM``, for the monthly budget's alerts).

One item per (event, channel): ``claim_until`` + ``owner`` while a container delivers it,
``sent_at`` once delivered; it expires with TTL a few days after its day. Separate items (not
attributes of the day's TOTAL) so that alert traffic never adds writes on the budget's hot item.

Alert work runs inside the request and must end within the notifier's bound, so it has a client
of its own (``alert_store_client``): one SDK attempt per call and short timeouts, where the shared
client may spend 4 attempts x 4 s. A write here is sent again after an answer that may have been
lost (a timeout, a 5xx, a throttle) while a whole call still fits in ``STORE_WRITE_SECONDS``, at
most ``STORE_WRITE_SENDS`` times: all three writes are idempotent, so a claim applied whose answer
was lost is found ours on the resend.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as SdkConnectionError

from dnd_rag.dal.dynamo import THROTTLE_CODES, is_transient, number, store_errors
from dnd_rag.logic.alerts.timing import (
    STORE_CALL_SECONDS,
    STORE_CONNECT_SECONDS,
    STORE_READ_TIMEOUT_SECONDS,
    STORE_RESEND_PAUSE_MAX_SECONDS,
    STORE_RESEND_PAUSE_SECONDS,
    STORE_WRITE_SECONDS,
    STORE_WRITE_SENDS,
)
from dnd_rag.logic.common.clock import month_end, next_midnight
from dnd_rag.logic.ports import ClaimOutcome

KEEP_SECONDS = 3 * 86_400
_CONDITION_FAILED = "ConditionalCheckFailedException"
# ``total_max_attempts`` counts attempts (1: the SDK never resends; ``_send`` decides).
ALERT_STORE_CONFIG = Config(
    connect_timeout=STORE_CONNECT_SECONDS,
    read_timeout=STORE_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": 1},
)


def alert_store_client() -> Any:
    """The DynamoDB client of alert work: claims, marks, drops and the top-users read."""
    import boto3

    return boto3.client("dynamodb", config=ALERT_STORE_CONFIG)


def _key(day: str, event_id: str, channel: str) -> dict[str, Any]:
    return {"pk": {"S": f"EVENT#{day}"}, "sk": {"S": f"{event_id}#{channel}"}}


def _may_be_lost(exc: Exception) -> bool:
    """An answer that says nothing of whether the write was applied, or that it was not, yet."""
    if isinstance(exc, ClientError):
        # a throttle too: a claim item is no hot item, and the claim has a time budget of its own
        throttled = exc.response["Error"]["Code"] in THROTTLE_CODES
        server_error = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
        return is_transient(exc) or throttled or server_error
    return isinstance(exc, (SdkConnectionError, HTTPClientError))  # no answer: refused, reset, timed out


def resend_write(operation: str, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``write()`` (idempotent), sent again after an answer that may have been lost while a whole
    call still fits in ``STORE_WRITE_SECONDS``, at most ``STORE_WRITE_SENDS`` times."""
    deadline = time.monotonic() + STORE_WRITE_SECONDS
    with store_errors(operation):
        for send in range(1, STORE_WRITE_SENDS + 1):
            try:
                return write()
            except (ClientError, SdkConnectionError, HTTPClientError) as exc:
                backoff = min(STORE_RESEND_PAUSE_MAX_SECONDS, STORE_RESEND_PAUSE_SECONDS * 2 ** (send - 1))
                pause = random.random() * backoff  # noqa: S311 - jitter, not a secret
                fits = time.monotonic() + pause + STORE_CALL_SECONDS <= deadline
                if send == STORE_WRITE_SENDS or not fits or not _may_be_lost(exc):
                    raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def keep_until(day: str, now: float) -> float:
    """A day's claims are kept a few days after it; a month's (``YYYY-MM``, the monthly budget's
    alerts) a few days after the month ends, so they are never claimed twice within it."""
    return (month_end(day) if len(day) == len("YYYY-MM") else next_midnight(now)) + KEEP_SECONDS


class DynamoEventClaims:
    max_seconds = STORE_WRITE_SECONDS

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, operation: str, day: str, event_id: str, channel: str, **kwargs: Any) -> dict[str, Any]:
        key = _key(day, event_id, channel)
        return resend_write(operation, lambda: self._client.update_item(TableName=self._table, Key=key, **kwargs))

    def claim(self, day: str, event_id: str, channel: str, owner: str, now: float, claim_until: float) -> ClaimOutcome:
        # The claim names its owner, so re-sending it after a lost response finds our own claim
        # and succeeds, instead of failing its condition and leaving the event undelivered.
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
                    ":expires": number(keep_until(day, now)),
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
