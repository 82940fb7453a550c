"""A dev stand-in for the auth API: ``GET /auth/me`` answers like the real one for three tokens."""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEV_USERS = {
    "dev-alice": {"id": "00000000-0000-4000-a000-00000000a11c", "email": "alice@example.com", "plan": "default"},
    "dev-bob": {"id": "00000000-0000-4000-a000-000000000b0b", "email": "bob@example.com", "plan": "default"},
    "dev-admin": {
        "id": "00000000-0000-4000-a000-0000000ad111",
        "email": "admin@example.com",
        "plan": "default",
        "role": "admin",
    },
}


class AuthHandler(BaseHTTPRequestHandler):
    server_version = "dev-auth/1"

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/auth/me":
            self._send(404, {"error": "not_found"})
            return
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        user = DEV_USERS.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            self._send(401, {"error": "unauthorized", "message": "invalid or expired token"})
        else:
            self._send(200, {"data": user})

    def _send(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep tokens out of logs
        return


def make_auth_server(host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), AuthHandler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    server = make_auth_server(args.host, args.port)
    print(f"dev auth server listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
