"""Alert events published to an SNS topic (the only SNS code).

Standard topics deliver at least once and have no deduplication: subscribers dedupe on the
``event_id`` message attribute. A FIFO topic (ARN ending in ``.fifo``) gets the event id as its
``MessageDeduplicationId``, so SNS itself drops a re-publish of the same event within its
5-minute deduplication window (a retry after a claim expired comes later than that: still
at-least-once, with the same id).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dnd_rag.errors import AlertDeliveryError
from dnd_rag.logic.alerts.timing import AWS_CONNECT_SECONDS, AWS_READ_TIMEOUT_SECONDS
from dnd_rag.models.events import Event

# One attempt, short timeouts: a retry is the notifier's job (a later request, same event id), and
# a publish ends within SNS_SECONDS, inside the notifier's bound (logic/alerts/timing.py).
# ``total_max_attempts`` counts attempts (1: no retry); ``max_attempts`` counts retries (1 was 2 attempts).
SNS_CONFIG = Config(
    connect_timeout=AWS_CONNECT_SECONDS,
    read_timeout=AWS_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": 1},
)
SNS_SECONDS = AWS_CONNECT_SECONDS + AWS_READ_TIMEOUT_SECONDS
# SNS Publish refuses the whole message unless the Subject is "UTF-8 text with no line breaks or
# control characters, and less than 100 characters long" (SNS API reference, Publish > Subject).
# AWS's own SNS sender (Amazon Managed Prometheus, "SNS message validation rules") also replaces
# subjects with non-ASCII characters, so subject() keeps to printable ASCII, ellipsis included.
SUBJECT_MAX = 99
ELLIPSIS = "..."


class SnsChannel:
    name = "sns"
    max_seconds = SNS_SECONDS

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._fifo = topic_arn.endswith(".fifo")

    def accepts(self, event_type: str) -> bool:
        return True

    def deliver(self, event: Event) -> None:
        body = event.as_json()
        request: dict[str, Any] = {
            "TopicArn": self._topic_arn,
            "Subject": subject(f"[dnd_rag] {event.type} {event.key} ({event.day})"),
            "Message": json.dumps(body, sort_keys=True),
            # subscribers filter on the type (filter policies) and dedupe on the id
            "MessageAttributes": {
                "event_type": {"DataType": "String", "StringValue": event.type},
                "event_id": {"DataType": "String", "StringValue": event.id},
            },
        }
        if self._fifo:
            request["MessageGroupId"] = "dnd_rag-alerts"
            request["MessageDeduplicationId"] = event.id
        try:
            self._client.publish(**request)
        except (BotoCoreError, ClientError) as exc:
            raise AlertDeliveryError("alert not sent", reason=f"sns Publish: {type(exc).__name__}") from None


def subject(text: str) -> str:
    """``text`` as SNS accepts a subject: anything but printable ASCII (line breaks, control
    characters) becomes "?", and past ``SUBJECT_MAX`` characters it is cut to end in an ellipsis."""
    text = "".join(char if " " <= char <= "~" else "?" for char in text)
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - len(ELLIPSIS)] + ELLIPSIS


def sns_client() -> Any:
    import boto3

    return boto3.client("sns", config=SNS_CONFIG)
