"""Auth APIs for tests.

``FaultyAuthHandler`` misbehaves on purpose: ``/slow/auth/me`` hangs, ``/broken/auth/me`` answers
500, ``/garbled/auth/me`` answers 200 without a user. ``AnyUserAuthHandler`` accepts every token
``u-<id>`` (optionally ``u-<id>.<plan>``), so each test can have users of its own.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

SLOW_SECONDS = 3.0


class FaultyAuthHandler(BaseHTTPRequestHandler):
    calls: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        FaultyAuthHandler.calls[self.path] = FaultyAuthHandler.calls.get(self.path, 0) + 1
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            self._send(200, b'{"data": {"id": "slow-user"}}')
        elif self.path.startswith("/garbled/"):
            self._send(200, b"<html>maintenance</html>")
        else:
            self._send(500, b'{"error": "boom"}')

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): expected
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def start_faulty_auth() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyAuthHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class AnyUserAuthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token.startswith("u-"):
            payload, status = b'{"error": "unauthorized"}', 401
        else:
            user_id, _, plan = token.partition(".")
            user = {"id": user_id, "email": f"{user_id}@example.com", **({"plan": plan} if plan else {})}
            payload, status = json.dumps({"data": user}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def start_any_user_auth() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AnyUserAuthHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
