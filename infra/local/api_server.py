"""A local API Gateway (HTTP API, payload format 2.0) in front of the real Lambda handlers.

Routes come from template.yaml; each request becomes the v2 event API Gateway would send and is
passed to the very handler function Lambda runs. Like Lambda, a "container" (here: a worker
process) handles one invocation at a time and stays warm between them; concurrent requests go to
other containers, up to LOCAL_API_CONTAINERS (4). That matters: a handler's module state (the
Powertools resolver's current event, caches) is per container and never shared by two requests.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import multiprocessing
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.template import HttpRoute, http_routes

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own limit
DEFAULT_ROUTE = "$default"
TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


INVOKE_TIMEOUT_SECONDS = 30  # API Gateway's integration timeout
_CONTAINER_HANDLERS: dict[str, Handler] = {}


def invoke_in_container(route: HttpRoute, event: dict[str, Any]) -> dict[str, Any]:
    """Runs inside a worker ("container"): import the handler once (cold start), then call it."""
    handler = _CONTAINER_HANDLERS.get(route.handler)
    if handler is None:
        if str(route.code_uri) not in sys.path:
            sys.path.insert(0, str(route.code_uri))
        module_name, _, function_name = route.handler.rpartition(".")
        handler = getattr(importlib.import_module(module_name), function_name)
        _CONTAINER_HANDLERS[route.handler] = handler
    return handler(event, LambdaContext("dnd-rag-local-api"))


@dataclass(frozen=True)
class CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str]

    @property
    def greedy(self) -> bool:
        return "+}" in self.route.path

    @property
    def is_default(self) -> bool:
        return self.route.path == DEFAULT_ROUTE

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.is_default else f"{self.route.method} {self.route.path}"


def _compile(path: str) -> re.Pattern[str]:
    if path == DEFAULT_ROUTE:  # API Gateway's catch-all: whatever no other route matches
        return re.compile(r"^/.*$", re.DOTALL)
    regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", path)
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
    return re.compile(f"^{regex}$")


def compile_routes(routes: list[HttpRoute]) -> list[CompiledRoute]:
    compiled = [CompiledRoute(route, _compile(route.path)) for route in routes]
    # API Gateway prefers exact methods over ANY, non-greedy paths over greedy ones, and uses
    # $default only when nothing else matches.
    compiled.sort(key=lambda c: (c.is_default, c.greedy, c.route.method == "ANY", -len(c.route.path)))
    return compiled


def find_route(routes: list[CompiledRoute], method: str, path: str) -> tuple[CompiledRoute, dict[str, str]] | None:
    """The route API Gateway would pick for ``method path`` (``routes`` as compile_routes sorts them)."""
    for compiled in routes:
        if compiled.route.method not in ("ANY", method):
            continue
        match = compiled.pattern.match(path)
        if match:
            return compiled, match.groupdict()
    return None


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_seconds: float = 29.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def build_event(
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    route_key: str,
    path_parameters: dict[str, str],
    source_ip: str,
) -> dict[str, Any]:
    content_type = headers.get("content-type", "")
    is_text = not body or (content_type.startswith(TEXT_TYPES) and _is_utf8(body))
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers.pop("cookie").split(";") if c.strip()]
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        # bytes that are not UTF-8 go base64-encoded, as they are: the handler judges them, not a lossy decode
        event["body"] = body.decode("utf-8") if is_text else base64.b64encode(body).decode()
    return event


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def make_request_handler(routes: list[CompiledRoute], containers: Executor) -> type[BaseHTTPRequestHandler]:
    class ApiGatewayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "local-apigw/1"

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PAYLOAD_BYTES:
                self._reply(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, str] = {}
            for name, value in self.headers.items():  # API Gateway lower-cases and comma-joins headers
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            found = find_route(routes, self.command, url.path)
            if found is None:  # only without a $default route, as API Gateway itself would answer
                self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                return
            compiled, path_parameters = found
            event = build_event(
                self.command,
                url.path,
                url.query,
                headers,
                body,
                compiled.route_key,
                path_parameters,
                self.client_address[0],
            )
            self._invoke(compiled, event)

        def _invoke(self, compiled: CompiledRoute, event: dict[str, Any]) -> None:
            try:
                result = containers.submit(invoke_in_container, compiled.route, event).result(INVOKE_TIMEOUT_SECONDS)
            except Exception as exc:  # an unhandled Lambda error or a timeout: API Gateway answers 500
                print(f"handler raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
                return
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode()
            headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
            self._reply(int(result.get("statusCode", 200)), headers, data, result.get("cookies") or [])

        def _reply(self, status: int, headers: dict[str, str], data: bytes, cookies: list[str] | None = None) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            for cookie in cookies or []:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def __getattr__(self, name: str) -> Any:
            # Every method (GET, TRACE, QUERY, ...) goes to the routes, as the $default route does upstream.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            line = {"access": format % args, "client": self.client_address[0]}
            print(json.dumps(line), file=sys.stderr, flush=True)

    return ApiGatewayHandler


def start_containers(count: int, routes: list[HttpRoute]) -> ProcessPoolExecutor:
    """The worker pool; one container is warmed now so a configuration error fails at start."""
    pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"))
    health = next((r for r in routes if r.path == "/health"), routes[0])
    warm_up = build_event(
        "GET", "/health", "", {"host": "127.0.0.1"}, b"", f"{health.method} {health.path}", {}, "127.0.0.1"
    )
    pool.submit(invoke_in_container, health, warm_up).result(timeout=120)
    return pool


def make_api_server(host: str, port: int, containers: int) -> tuple[ThreadingHTTPServer, ProcessPoolExecutor]:
    routes = http_routes()
    pool = start_containers(containers, routes)
    server = ThreadingHTTPServer((host, port), make_request_handler(compile_routes(routes), pool))
    server.daemon_threads = True
    return server, pool


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--containers", type=int, default=int(os.environ.get("LOCAL_API_CONTAINERS", "4")))
    args = parser.parse_args()
    server, pool = make_api_server(args.host, args.port, args.containers)
    # Stopped by SIGTERM (the stack, the test tiers): shut the worker processes down with us,
    # or they would outlive the server as orphans.
    signal.signal(signal.SIGTERM, _exit)
    print(f"API listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        pool.shutdown(wait=True, cancel_futures=True)


if __name__ == "__main__":
    main()
