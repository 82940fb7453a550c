"""Alert events POSTed as JSON to ``ALERT_WEBHOOK_URL`` (the only webhook code).

No redirects (a receiver that moved must be reconfigured, not followed blindly), one attempt per
call: a retry is the notifier's job, by a later request, with the same ``X-Event-Id`` so the
receiver can drop what it has already seen. Any 2xx answer is a delivery; anything else is a
failure.

``ALERT_WEBHOOK_TIMEOUT_SECONDS`` bounds the whole call, not each phase: httpx's timeouts apply per
connect, per write and per read, so a receiver answering a byte at a time would never trip them.
A timer shuts the connection's socket down when the time is up (a read blocked on it returns at
once), so a delivery ends within ``max_seconds`` whatever the receiver does, as the notifier's
bound needs (logic/alerts/timing.py). Each call opens its own connection (no keep-alive): none is
shared by two calls, and none goes stale while the container is frozen. (Resolving the host name
is the one step the cut cannot interrupt.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from typing import Any

import httpx

from dnd_rag import __version__
from dnd_rag.errors import AlertDeliveryError
from dnd_rag.models.events import Event

# httpcore's trace events that hand over the connection's stream (TCP, then TLS on top of it)
_STREAM_EVENTS = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self.max_seconds = timeout_seconds
        self._client = httpx.Client(
            timeout=timeout_seconds, follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def accepts(self, event_type: str) -> bool:
        return True

    def deliver(self, event: Event) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"dnd_rag-alerts/{__version__}",
            "X-Event-Id": event.id,
            "X-Event-Type": event.type,
        }
        cut = _Cut(self.max_seconds)
        try:
            response = self._client.post(
                self._url, content=json.dumps(event.as_json()), headers=headers, extensions={"trace": cut.trace}
            )
        except httpx.HTTPError as exc:
            reason = f"no answer within {self.max_seconds:g} s" if cut.fired else type(exc).__name__
            raise AlertDeliveryError("alert not sent", reason=f"webhook: {reason}") from None
        finally:
            cut.cancel()
        if not response.is_success:
            raise AlertDeliveryError("alert not sent", reason=f"webhook answered {response.status_code}")


class _Cut:
    """Shuts one request's connection down ``seconds`` after it started, unless cancelled first."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._stream: Any = None
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name in _STREAM_EVENTS:
            with self._lock:
                self._stream = info["return_value"]
                fired = self.fired
            if fired:  # connected just as the time ran out
                self._shut_down()

    def cancel(self) -> None:
        """Stop the timer and wait for it: nothing of this call runs after ``deliver`` returns."""
        self._timer.cancel()
        self._timer.join()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
        self._shut_down()

    def _shut_down(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is None:  # still connecting: the connect timeout (the same seconds) ends it
            return
        sock = stream.get_extra_info("socket")
        # on a duplicate of its descriptor: the socket object (TLS state included) stays the
        # requesting thread's; shutting the connection down wakes that thread's blocked read
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
