"""Auth APIs for tests, served on a free loopback port in a background thread.

``FaultyAuthHandler`` misbehaves on purpose: ``/slow/auth/me`` hangs, ``/broken/auth/me`` answers
500, ``/garbled/auth/me`` answers 200 without a user. ``AnyUserAuthHandler`` accepts every token
``u-<id>`` (optionally ``u-<id>.<plan>``), so each test can have users of its own.
``start_scripted_auth`` serves an auth API that a test scripts while it runs (``AuthScript``): which
token is which user (with which role), which token stops being valid, how slow each answer is, and
how many times it was asked.
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


class AuthScript:
    """What the scripted auth API answers, changed by the test as it goes: ``users[token]`` is the
    user (``/auth/me``'s ``data``) or absent (401). ``calls`` counts the requests that reached it;
    ``delay`` seconds pass before each answer (a slow auth API widens every race)."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, object]] = {}
        self.calls = 0
        self.delay = 0.0
        self._lock = threading.Lock()

    def answer(self, token: str) -> dict[str, object] | None:
        with self._lock:
            self.calls += 1
            user = self.users.get(token)
        if self.delay:
            time.sleep(self.delay)
        return user

    def reset(self) -> None:
        with self._lock:
            self.users.clear()
            self.calls = 0
            self.delay = 0.0


def _scripted_handler(script: AuthScript) -> type[BaseHTTPRequestHandler]:
    class ScriptedAuthHandler(_QuietHandler):
        def do_GET(self) -> None:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            user = script.answer(token)
            if user is None:
                self.reply(401, b'{"error": "unauthorized"}')
            else:
                self.reply(200, json.dumps({"data": user}).encode())

    return ScriptedAuthHandler


def start_scripted_auth() -> tuple[ThreadingHTTPServer, AuthScript]:
    script = AuthScript()
    return _serve(_scripted_handler(script)), script


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_faulty_auth() -> ThreadingHTTPServer:
    return _serve(FaultyAuthHandler)


def start_any_user_auth() -> ThreadingHTTPServer:
    return _serve(AnyUserAuthHandler)
