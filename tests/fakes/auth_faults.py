"""Auth APIs for tests, served on a free loopback port in a background thread.

``FaultyAuthHandler`` misbehaves on purpose: ``/slow/auth/me`` hangs, ``/broken/auth/me`` answers
500, ``/garbled/auth/me`` answers 200 without a user. ``AnyUserAuthHandler`` accepts every token
``u-<id>`` (optionally ``u-<id>.<plan>``), so each test can have users of its own.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 3.0


class _QuietHandler(BaseHTTPRequestHandler):
    def reply(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): expected
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


class FaultyAuthHandler(_QuietHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            self.reply(200, b'{"data": {"id": "slow-user"}}')
        elif self.path.startswith("/garbled/"):
            self.reply(200, b"<html>maintenance</html>")
        else:
            self.reply(500, b'{"error": "boom"}')


class AnyUserAuthHandler(_QuietHandler):
    def do_GET(self) -> None:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token.startswith("u-"):
            self.reply(401, b'{"error": "unauthorized"}')
            return
        user_id, _, plan = token.partition(".")
        user = {"id": user_id, "email": f"{user_id}@example.com", **({"plan": plan} if plan else {})}
        self.reply(200, json.dumps({"data": user}).encode())


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_faulty_auth() -> ThreadingHTTPServer:
    return _serve(FaultyAuthHandler)


def start_any_user_auth() -> ThreadingHTTPServer:
    return _serve(AnyUserAuthHandler)
