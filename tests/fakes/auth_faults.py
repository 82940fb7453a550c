"""An auth API that misbehaves on purpose: ``/slow/auth/me`` hangs, ``/broken/auth/me`` answers 500,
``/garbled/auth/me`` answers 200 without a user. Counts calls so tests can see cache effects."""

from __future__ import annotations

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
