"""A forwarding HTTP proxy on a free loopback port whose answers can be late: what a slow or
lossy network does to a request that reached the service.

Every request is forwarded to ``upstream`` at once (so what it asks is done: moto records a
mail sent); the answers to the first ``count`` requests whose body contains ``marker`` are held
``delay`` seconds before they are written back (by then the caller has usually timed out).
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class ProxyState:
    marker: bytes = b""
    count: int = 0  # how many matching answers to hold back
    delay: float = 0.0
    held: int = 0  # answers held so far
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _should_hold(self, body: bytes) -> bool:
        with self.lock:
            if self.held < self.count and self.marker in body:
                self.held += 1
                return True
            return False


def _handler(upstream: str, state: ProxyState) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hold = state._should_hold(body)
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            if hold:
                time.sleep(state.delay)
            try:
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the caller gave up waiting
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def start_slow_proxy(upstream: str) -> tuple[ThreadingHTTPServer, ProxyState]:
    state = ProxyState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state
