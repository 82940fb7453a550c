"""Budget alert e-mail through SES (the only SES code).

One attempt per send: SendEmail is not idempotent, and a resend after a slow answer (the first
may have been accepted) is a second e-mail within one claim. A retry is the notifier's job, by a
later request, and names the same event id in the text. Short timeouts: a send ends within
``SES_SECONDS``, inside the notifier's bound (logic/alerts/timing.py).
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dnd_rag.errors import AlertDeliveryError
from dnd_rag.logic.alerts.timing import AWS_CONNECT_SECONDS, AWS_READ_TIMEOUT_SECONDS

# ``total_max_attempts`` counts attempts (1: no retry); ``max_attempts`` would count retries.
SES_CONFIG = Config(
    connect_timeout=AWS_CONNECT_SECONDS,
    read_timeout=AWS_READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": 1},
)
SES_SECONDS = AWS_CONNECT_SECONDS + AWS_READ_TIMEOUT_SECONDS


class SesMailer:
    max_seconds = SES_SECONDS

    def __init__(self, client: Any, sender: str, recipient: str) -> None:
        self._client = client
        self._sender = sender
        self._recipient = recipient

    def send(self, subject: str, body: str) -> None:
        try:
            self._client.send_email(
                Source=self._sender,
                Destination={"ToAddresses": [self._recipient]},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                },
            )
        except (BotoCoreError, ClientError) as exc:
            raise AlertDeliveryError("alert not sent", reason=f"ses SendEmail: {type(exc).__name__}") from None


def ses_client() -> Any:
    import boto3

    return boto3.client("ses", config=SES_CONFIG)
