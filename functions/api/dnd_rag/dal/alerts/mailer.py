"""Budget alert e-mail through SES (the only SES code)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dnd_rag.errors import AlertDeliveryError


class SesMailer:
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

    from dnd_rag.dal.dynamo import CLIENT_CONFIG

    return boto3.client("ses", config=CLIENT_CONFIG)
