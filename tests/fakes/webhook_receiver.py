"""A real webhook receiver on a free loopback port: records every POST and answers as told.

``mode``: ``ok`` (204), ``fail`` (500), ``hang`` (holds the request until ``release`` is set,
then 204). Only answered 2xx requests count as deliveries.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_SECONDS = 60.0  # a hanging request is let go after this even if the test forgot to


@dataclass
class ReceiverState:
    mode: str = "ok"
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every POST: headers + body
    delivered: list[dict[str, Any]] = field(default_factory=list)  # answered 2xx
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(item["header_id"] for item in self.delivered)

    def delivered_of(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [item["body"] for item in self.delivered if item["body"]["type"] == event_type]

    def attempted_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(item["header_id"] for item in self.attempts)


def _handler(state: ReceiverState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            record = {
                "header_id": self.headers.get("X-Event-Id"),
                "header_type": self.headers.get("X-Event-Type"),
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(self.rfile.read(length)),
            }
            with state.lock:
                state.attempts.append(record)
                mode = state.mode
            if mode == "hang":
                state.release.wait(HANG_LIMIT_SECONDS)
            status = 500 if mode == "fail" else 204
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):  # the sender gave up (its timeout)
                return
            if status == 204 and mode != "hang":
                with state.lock:
                    state.delivered.append(record)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def start_webhook_receiver() -> tuple[ThreadingHTTPServer, ReceiverState]:
    state = ReceiverState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state
