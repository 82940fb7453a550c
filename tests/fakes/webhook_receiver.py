"""A real webhook receiver on a free loopback port: records every POST and answers as told.

``mode``: ``ok`` (204), ``fail`` (500), ``hang`` (holds the request until ``release`` is set or
the sender gives up, then 204), ``trickle`` (answers 204 a byte at a time over
``trickle_seconds``: every read the sender makes gets a byte well within its read timeout, the
whole answer does not). With ``first_attempt_only`` the mode applies to each event id's first
POST; later ones are answered 204 at once. Only 2xx answers written in full count as deliveries.

Each record has ``received_at`` (the body was read) and ``ended_at`` (answered, or the sender
was gone), both ``time.monotonic()``, and ``sender_left``: the sender closed the connection
before the answer was complete (its timeout, or its total cut).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_SECONDS = 60.0  # a hanging request is let go after this even if the test forgot to
TRICKLE_STEP_SECONDS = 0.1


@dataclass
class ReceiverState:
    mode: str = "ok"
    first_attempt_only: bool = False
    trickle_seconds: float = 4.0
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

    def unfinished(self) -> int:
        """POSTs still being answered (a hang or a trickle in progress)."""
        with self.lock:
            return sum(1 for item in self.attempts if item["ended_at"] is None)

    def wait_answered(self, seconds: float = 2.0) -> bool:
        """Wait until every POST so far is answered and noted (the sender may read the answer a
        moment before the receiver notes it)."""
        give_up = time.monotonic() + seconds
        while self.unfinished() and time.monotonic() < give_up:
            time.sleep(0.01)
        return not self.unfinished()


def _sender_left(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _handler(state: ReceiverState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            record: dict[str, Any] = {
                "header_id": self.headers.get("X-Event-Id"),
                "header_type": self.headers.get("X-Event-Type"),
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(self.rfile.read(length)),
                "received_at": time.monotonic(),
                "ended_at": None,
                "sender_left": False,
            }
            with state.lock:
                seen = any(item["header_id"] == record["header_id"] for item in state.attempts)
                state.attempts.append(record)
                mode = "ok" if state.first_attempt_only and seen else state.mode
            complete = False
            try:
                complete = self._answer(mode)
            finally:
                with state.lock:  # at once: a request no longer unfinished is in ``delivered`` if it is one
                    record["ended_at"] = time.monotonic()
                    record["sender_left"] = not complete
                    if complete and mode not in ("fail", "hang"):
                        state.delivered.append(record)

        def _answer(self, mode: str) -> bool:
            """Answer as ``mode`` says; False when the sender was gone before the answer was complete."""
            if mode == "hang":
                give_up = time.monotonic() + HANG_LIMIT_SECONDS
                while not state.release.wait(0.02):
                    if _sender_left(self.connection) or time.monotonic() > give_up:
                        return False
            try:
                if mode == "trickle":
                    self._trickle()
                else:
                    self.send_response(500 if mode == "fail" else 204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
            except (BrokenPipeError, ConnectionResetError):  # the sender gave up (its timeout)
                return False
            return True

        def _trickle(self) -> None:
            self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Slow: ")
            self.wfile.flush()
            for _ in range(max(1, round(state.trickle_seconds / TRICKLE_STEP_SECONDS))):
                time.sleep(TRICKLE_STEP_SECONDS)
                if _sender_left(self.connection):
                    raise ConnectionResetError
                self.wfile.write(b"z")
                self.wfile.flush()
            self.wfile.write(b"\r\n\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def start_webhook_receiver() -> tuple[ThreadingHTTPServer, ReceiverState]:
    state = ReceiverState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state
