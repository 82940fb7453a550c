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
from dnd_rag.models.events import Event

# One attempt, short timeouts: a retry is the notifier's job (a later request, same event id).
SNS_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 1})
SUBJECT_MAX = 100  # SNS refuses longer subjects


class SnsChannel:
    name = "sns"

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
            "Subject": f"[dnd_rag] {event.type} {event.key} ({event.day})"[:SUBJECT_MAX],
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


def sns_client() -> Any:
    import boto3

    return boto3.client("sns", config=SNS_CONFIG)
