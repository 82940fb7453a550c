"""The local AWS emulator: moto's server (DynamoDB, SES, SSM...) with every request serialized.

Stock moto does not make a conditional write atomic against a concurrent one (a 40-thread
conditional-increment race admitted 11-26 of 10), so the whole WSGI app runs under one lock.
That makes each request atomic, as DynamoDB's conditional writes are, which the concurrency
tests rely on.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


class SerializedApp:
    """A WSGI wrapper that lets one request at a time into the wrapped app."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            # Drain the body inside the lock: moto may compute the response lazily.
            return list(self._app(environ, start_response))


def serve(host: str, port: int) -> None:
    app = SerializedApp(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True)
    print(f"aws emulator listening on http://{host}:{port}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
