"""Alert events POSTed as JSON to ``ALERT_WEBHOOK_URL`` (the only webhook code).

No redirects (a receiver that moved must be reconfigured, not followed blindly), a short timeout
on every phase of the request, one attempt per call: a retry is the notifier's job, by a later
request, with the same ``X-Event-Id`` so the receiver can drop what it has already seen.
Any 2xx answer is a delivery; anything else is a failure.
"""

from __future__ import annotations

import json

import httpx

from dnd_rag import __version__
from dnd_rag.errors import AlertDeliveryError
from dnd_rag.models.events import Event


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self.timeout_seconds = timeout_seconds
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def accepts(self, event_type: str) -> bool:
        return True

    def deliver(self, event: Event) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"dnd_rag-alerts/{__version__}",
            "X-Event-Id": event.id,
            "X-Event-Type": event.type,
        }
        try:
            response = self._client.post(self._url, content=json.dumps(event.as_json()), headers=headers)
        except httpx.HTTPError as exc:
            raise AlertDeliveryError("alert not sent", reason=f"webhook: {type(exc).__name__}") from None
        if not response.is_success:
            raise AlertDeliveryError("alert not sent", reason=f"webhook answered {response.status_code}")
