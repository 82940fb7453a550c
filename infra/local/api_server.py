"""A local API Gateway (HTTP API, payload format 2.0) in front of the real Lambda handlers.

Routes come from template.yaml; each request becomes the v2 event API Gateway would send and is
passed to the very handler function Lambda runs, in a "container": a spawned worker process that
handles one invocation at a time and stays warm between them. Concurrent requests go to other
containers, up to LOCAL_API_CONTAINERS (4); when all are busy a request waits for one. That
matters: a handler's module state (the Powertools resolver's current event, caches) is per
container and never shared by two requests.

What it models of AWS, because the handlers must be correct under it:

- **Lambda freezes the execution environment when the handler returns.** A container is sent
  SIGCONT before it is handed an event and SIGSTOP as soon as its result is back (before the HTTP
  reply is written), so a thread the handler left running (an alert delivery on a thread pool,
  a background refresh) makes no progress until that container's next invocation.
  LOCAL_API_FREEZE=0 turns this off for debugging.
- **HTTP API's 30 s integration timeout, counted from the request's arrival at the gateway**
  (``requestContext.timeEpoch``), time spent waiting for a free container and a cold start
  included. Past it the client gets HTTP API's own answer, 503 ``{"message":"Service
  Unavailable"}``, while the container runs its invocation to the end (no new event meanwhile)
  and is then frozen as usual. LOCAL_API_TIMEOUT_SECONDS shortens it for tests.
- An unhandled exception in the handler, or a container that dies mid-invocation, is a Lambda
  invocation error: 500 ``{"message":"Internal Server Error"}``. A dead container is replaced by a
  fresh one (a cold start) on demand.
- **The HttpApi's CorsConfiguration and route throttling** (gateway_rules.py): the gateway answers
  preflights no route matches, writes the configured CORS headers on every answer (the handler's,
  and its own 429/503/500) in place of any the handler wrote, and tells its containers
  ``CORS_BY_GATEWAY=true`` as the template tells the function; a route whose token bucket is empty
  is answered 429 ``{"message":"Too Many Requests"}`` without an invocation.

Stopping the gateway continues every container (a stopped process leaves SIGTERM pending) and
then terminates it, so no worker, frozen or not, outlives it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import importlib
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.access_log import Tally, access_line
from infra.local.clock import local_now
from infra.local.gateway_rules import GatewayRules, gateway_rules, is_preflight, with_gateway_cors
from infra.local.template import HttpRoute, http_routes

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own limit
DEFAULT_ROUTE = "$default"
TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# HTTP API's "Maximum integration timeout: 30 seconds", not raisable
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html).
INVOKE_TIMEOUT_SECONDS = 30.0
# What HTTP API answers when it fires, cold start included: 503 {"message":"Service Unavailable"}
# (33 bytes, observed through execute-api in https://github.com/cortexlabs/cortex/issues/1225; a
# cold start plus a handler within the function timeout still got it in
# https://github.com/serverless/serverless/issues/11222). A Lambda invocation error (an unhandled
# exception, a runtime that exits) is 500 {"message":"Internal Server Error"}
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html).
TIMEOUT_STATUS, TIMEOUT_BODY = 503, b'{"message":"Service Unavailable"}'
ERROR_STATUS, ERROR_BODY = 500, b'{"message":"Internal Server Error"}'
# A throttled route ("Throttle requests to your HTTP APIs",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html: 429 Too Many Requests).
THROTTLED_STATUS, THROTTLED_BODY = 429, b'{"message":"Too Many Requests"}'
FUNCTION_TIMEOUT_SECONDS = 29.0  # template.yaml Globals.Function.Timeout
WARM_UP_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0
FREEZE_CONFIRM_SECONDS = 1.0
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
    # The function timeout counts from the invocation, as Lambda's does (not from the gateway's arrival).
    return handler(event, LambdaContext("dnd-rag-local-api", FUNCTION_TIMEOUT_SECONDS))


def container_main(conn: Connection, environment: dict[str, str] | None = None) -> None:
    """A container's process: one invocation at a time, each answered ("ok", result) or ("error", text).
    ``environment``: variables the gateway sets for the function on top of its own (CORS_BY_GATEWAY)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the gateway stops us
    os.environ.update(environment or {})
    while True:
        try:
            route, event = conn.recv()
        except (EOFError, OSError):  # the gateway is gone
            return
        try:
            reply: tuple[str, Any] = ("ok", invoke_in_container(route, event))
        except Exception as exc:  # what Lambda reports as a function error
            traceback.print_exc()
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            return
        except Exception as exc:  # a result that does not pickle is not a valid response either
            conn.send(("error", f"unusable handler result: {type(exc).__name__}: {exc}"))


class IntegrationTimeoutError(Exception):
    """The integration timeout passed before the handler answered."""


class InvocationError(Exception):
    """The handler raised, or its container died during the invocation."""


def _is_frozen(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (or gone); True where /proc cannot tell."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # the thread just ended
        if fields and fields[0] not in ("T", "t", "Z", "X"):
            return False
    return True


class Container:
    """One Lambda execution environment: a spawned worker process and the pipe it is invoked through.

    A reader thread takes each result off the pipe, freezes the process (when freezing is on) and
    only then settles the invocation and hands the container back to the pool, so nothing runs in
    it between two invocations. The pool guarantees one invocation at a time."""

    def __init__(
        self,
        context: SpawnContext,
        freeze: bool,
        on_idle: Callable[[Container], None],
        on_exit: Callable[[Container], None],
        environment: dict[str, str] | None = None,
    ) -> None:
        self._freeze = freeze
        self._on_idle = on_idle
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._pending: Future[dict[str, Any]] | None = None
        self._stopping = False
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=container_main, args=(child_conn, environment or {}), name="lambda-container"
        )
        self.process.start()
        child_conn.close()  # the worker's end lives in the worker only: its death is our EOF
        self._reader = threading.Thread(target=self._read, name=f"container-{self.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def invoke(self, route: HttpRoute, event: dict[str, Any]) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._pending = future
        if self._freeze:
            self._signal(signal.SIGCONT)
        try:
            self._conn.send((route, event))
        except (OSError, ValueError):  # it died while idle; the reader retires it
            self._settle(error=InvocationError(f"container {self.pid} is gone"))
        return future

    def stop(self) -> None:
        """Continue the process (a stopped one would leave SIGTERM pending), then terminate it."""
        self._stopping = True
        if self.process.is_alive():
            self._signal(signal.SIGCONT)
            self.process.terminate()
            self.process.join(STOP_GRACE_SECONDS)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self._reader.join(STOP_GRACE_SECONDS)

    def _read(self) -> None:
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            if self._freeze:
                self._signal(signal.SIGSTOP)
                self._wait_frozen()
            future = self._take_pending()
            self._on_idle(self)  # a request timed out at the gateway left the container busy until now
            if future is not None:
                if kind == "ok":
                    future.set_result(payload)
                else:
                    future.set_exception(InvocationError(str(payload)))
        self._conn.close()
        self.process.join(STOP_GRACE_SECONDS)
        if not self._stopping:
            print(
                f"container {self.pid} exited (code {self.process.exitcode}); the next request starts a fresh one",
                file=sys.stderr,
                flush=True,
            )
        self._settle(error=InvocationError(f"container {self.pid} exited with code {self.process.exitcode}"))
        self._on_exit(self)

    def _take_pending(self) -> Future[dict[str, Any]] | None:
        with self._lock:
            future, self._pending = self._pending, None
        return future

    def _settle(self, error: Exception) -> None:
        future = self._take_pending()
        if future is not None:
            future.set_exception(error)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _wait_frozen(self) -> None:
        """SIGSTOP takes effect asynchronously: wait until every thread has stopped."""
        give_up = time.monotonic() + FREEZE_CONFIRM_SECONDS
        while not _is_frozen(self.pid) and time.monotonic() < give_up:
            time.sleep(0.001)


class Containers:
    """The gateway's Lambda execution environments, at most ``limit`` of them, each serving one
    invocation at a time; started on demand (a cold start), kept warm, frozen between invocations."""

    def __init__(self, limit: int, freeze: bool, environment: dict[str, str] | None = None) -> None:
        self.limit = limit
        self.freeze = freeze
        self.environment = dict(environment or {})
        self._context = multiprocessing.get_context("spawn")
        self._changed = threading.Condition()
        self._idle: list[Container] = []
        self._all: set[Container] = set()
        self._starting = 0
        self._closed = False
        atexit.register(self.shutdown)  # stopped workers must not outlive an interpreter that forgot us

    def invoke(self, route: HttpRoute, event: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The handler's result, or IntegrationTimeoutError at ``deadline`` (a time.monotonic() value)
        counted over waiting for a container, starting it and the invocation itself."""
        container = self._acquire(deadline)
        future = container.invoke(route, event)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise IntegrationTimeoutError from None

    def pids(self) -> list[int]:
        with self._changed:
            return sorted(container.pid for container in self._all)

    def shutdown(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            containers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._changed.notify_all()
        atexit.unregister(self.shutdown)
        for container in containers:
            container.stop()

    def _acquire(self, deadline: float) -> Container:
        with self._changed:
            while True:
                if self._closed:
                    raise InvocationError("the gateway is stopping")
                if self._idle:
                    return self._idle.pop()  # the most recently used: the warmest
                if len(self._all) + self._starting < self.limit:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise IntegrationTimeoutError
                self._changed.wait(remaining)
        container: Container | None = None
        try:
            container = Container(self._context, self.freeze, self._release, self._retire, self.environment)
        finally:
            with self._changed:
                self._starting -= 1
                closed = self._closed
                if container is not None and not closed:
                    self._all.add(container)
                self._changed.notify_all()
        if closed:
            assert container is not None
            container.stop()
            raise InvocationError("the gateway is stopping")
        return container

    def _release(self, container: Container) -> None:
        with self._changed:
            if container in self._all:
                self._idle.append(container)
                self._changed.notify()

    def _retire(self, container: Container) -> None:
        with self._changed:
            self._all.discard(container)
            if container in self._idle:
                self._idle.remove(container)
            self._changed.notify_all()


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

    def __init__(self, function_name: str, timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS) -> None:
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
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The v2 event for a request; ``received_at`` (its arrival at the gateway, default now on the
    local stack's clock, LOCAL_CLOCK_START) is its ``requestContext.time``/``timeEpoch``."""
    content_type = headers.get("content-type", "")
    is_text = not body or (content_type.startswith(TEXT_TYPES) and _is_utf8(body))
    now = received_at or local_now()
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


def make_request_handler(
    routes: list[CompiledRoute],
    containers: Containers,
    timeout_seconds: float = INVOKE_TIMEOUT_SECONDS,
    human: bool = False,
    tally: Tally | None = None,
    rules: GatewayRules | None = None,
) -> type[BaseHTTPRequestHandler]:
    """``human`` (LOG_FORMAT=human, make dev): one line per request instead of a JSON access line.
    ``rules``: the HttpApi's CORS and route throttling (none: neither)."""
    answered = tally if tally is not None else Tally()
    cors = rules.cors if rules is not None else None
    throttle = rules.throttle if rules is not None else None
    cors_on_own_answers = rules.cors_on_own_answers if rules is not None else True

    class ApiGatewayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "local-apigw/1"
        _arrived = 0.0

        def _dispatch(self) -> None:
            self._arrived = time.monotonic()
            # The integration timeout counts from here, the request's arrival, as HTTP API's does.
            # On the stack's one clock (LOCAL_CLOCK_START), as the function's: timeEpoch and its clock agree.
            received_at, deadline = local_now(), time.monotonic() + timeout_seconds
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
            if found is None and cors is not None and is_preflight(self.command, headers):
                self._reply(204, {}, b"", gateway_error=False)  # no route: HTTP API answers it (documented)
                return
            if found is None:  # only without a $default route, as API Gateway itself would answer
                self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                return
            compiled, path_parameters = found
            if throttle is not None and not throttle.admit(compiled.route_key):
                self._reply(THROTTLED_STATUS, {"content-type": "application/json"}, THROTTLED_BODY)
                return
            event = build_event(
                self.command,
                url.path,
                url.query,
                headers,
                body,
                compiled.route_key,
                path_parameters,
                self.client_address[0],
                received_at,
            )
            self._invoke(compiled, event, deadline)

        def _invoke(self, compiled: CompiledRoute, event: dict[str, Any], deadline: float) -> None:
            try:
                result = containers.invoke(compiled.route, event, deadline)
            except IntegrationTimeoutError:
                print(
                    f"no answer within the {timeout_seconds:g} s integration timeout: {event['routeKey']}",
                    file=sys.stderr,
                    flush=True,
                )
                self._reply(TIMEOUT_STATUS, {"content-type": "application/json"}, TIMEOUT_BODY)
                return
            except Exception as exc:  # the handler raised, its container died: a Lambda invocation error
                print(f"invocation failed: {exc}", file=sys.stderr, flush=True)
                self._reply(ERROR_STATUS, {"content-type": "application/json"}, ERROR_BODY)
                return
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode()
            headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
            status = int(result.get("statusCode", 200))
            self._reply(status, headers, data, result.get("cookies") or [], gateway_error=False)

        def _reply(
            self,
            status: int,
            headers: dict[str, str],
            data: bytes,
            cookies: list[str] | None = None,
            *,
            gateway_error: bool = True,
        ) -> None:
            """Writes an answer, the configured CORS headers in place of any the integration wrote:
            the integration's or a preflight's (documented), or a ``gateway_error`` (429, 503, 500, 404,
            413: undocumented; none with LOCAL_API_CORS_ON_OWN_ANSWERS=0)."""
            if gateway_error and not cors_on_own_answers:
                headers = with_gateway_cors(cors, self.command, {}, headers)  # as if HTTP API wrote none there
            else:
                request_headers = {name.lower(): value for name, value in self.headers.items()}
                headers = with_gateway_cors(cors, self.command, request_headers, headers)
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
            millis = (time.monotonic() - self._arrived) * 1000
            authorization = {"authorization": self.headers.get("Authorization") or ""}
            line, cost = access_line(self.command, urlsplit(self.path).path, status, millis, authorization, data)
            answered.add(status, cost)
            if human:
                print(line, flush=True)

        def __getattr__(self, name: str) -> Any:
            # Every method (GET, TRACE, QUERY, ...) goes to the routes, as the $default route does upstream.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if not human:  # the human line is printed once the answer is written (_reply)
                super().log_request(code, size)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            if human:
                print(f"gateway: {format % args}", file=sys.stderr, flush=True)
                return
            line = {"access": format % args, "client": self.client_address[0]}
            print(json.dumps(line), file=sys.stderr, flush=True)

    return ApiGatewayHandler


def start_containers(
    count: int, routes: list[HttpRoute], freeze: bool = True, environment: dict[str, str] | None = None
) -> Containers:
    """The containers; one is warmed now so a configuration error fails at start."""
    containers = Containers(count, freeze, environment)
    health = next((r for r in routes if r.path == "/health"), routes[0])
    warm_up = build_event(
        "GET", "/health", "", {"host": "127.0.0.1"}, b"", f"{health.method} {health.path}", {}, "127.0.0.1"
    )
    try:
        containers.invoke(health, warm_up, time.monotonic() + WARM_UP_SECONDS)
    except BaseException:
        containers.shutdown()
        raise
    return containers


def freeze_enabled() -> bool:
    return os.environ.get("LOCAL_API_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off")


def integration_timeout() -> float:
    return float(os.environ.get("LOCAL_API_TIMEOUT_SECONDS") or INVOKE_TIMEOUT_SECONDS)


def human_logs() -> bool:
    """LOG_FORMAT=human (make dev's default): one line per request; json: the JSON access line."""
    return os.environ.get("LOG_FORMAT", "json").strip().lower() == "human"


def make_api_server(
    host: str,
    port: int,
    containers: int,
    routes: list[HttpRoute] | None = None,
    tally: Tally | None = None,
    rules: GatewayRules | None = None,
) -> tuple[ThreadingHTTPServer, Containers]:
    """The gateway (not yet serving) and its containers; ``routes`` and ``rules`` (CORS, throttling)
    default to template.yaml's (tests pass their own). LOCAL_API_FREEZE, LOCAL_API_TIMEOUT_SECONDS,
    LOG_FORMAT and the variables of gateway_rules.py are read here."""
    routes = routes if routes is not None else http_routes()
    rules = rules if rules is not None else gateway_rules()
    # as the template tells the function when its HttpApi has a CorsConfiguration
    environment = {"CORS_BY_GATEWAY": "true"} if rules.cors is not None else {}
    pool = start_containers(containers, routes, freeze_enabled(), environment)
    try:
        handler = make_request_handler(compile_routes(routes), pool, integration_timeout(), human_logs(), tally, rules)
        server = ThreadingHTTPServer((host, port), handler)
    except BaseException:
        pool.shutdown()
        raise
    server.daemon_threads = True
    return server, pool


SWEEP_EVENT = {"dnd_rag_task": "sweep"}  # what template.yaml's SweeperSchedule sends


def schedule_sweeps(pool: Containers, route: HttpRoute, every_seconds: float) -> threading.Event:
    """EventBridge Scheduler's part: invoke the function with the sweep event every ``every_seconds``
    (LOCAL_SWEEP_SECONDS, 60 by default, 0 = off), in a container like any invocation. Set the
    returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_seconds):
            try:
                pool.invoke(route, dict(SWEEP_EVENT), time.monotonic() + INVOKE_TIMEOUT_SECONDS)
            except Exception as exc:  # the next run tries again, as the scheduler would
                print(f"scheduled sweep failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    if every_seconds > 0:
        threading.Thread(target=loop, name="sweeper-schedule", daemon=True).start()
    return stop


def describe(rules: GatewayRules) -> str:
    limits = rules.throttle.default
    cors = f"CORS for {', '.join(rules.cors.allow_origins)}" if rules.cors else "no CORS"
    return f"{cors}; routes throttled at {limits.rate:g}/s, burst {limits.burst}"


def _exit(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the shutdown short
    raise SystemExit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--containers", type=int, default=int(os.environ.get("LOCAL_API_CONTAINERS", "4")))
    args = parser.parse_args()
    # Stopped by SIGTERM (the stack, the test tiers): shut the worker processes down with us, or they
    # would outlive the server as orphans, frozen ones forever. Installed first: the warm-up starts one.
    signal.signal(signal.SIGTERM, _exit)
    tally = Tally()
    rules = gateway_rules()
    server, pool = make_api_server(args.host, args.port, args.containers, tally=tally, rules=rules)
    routes = http_routes()
    sweeps = schedule_sweeps(pool, routes[0], float(os.environ.get("LOCAL_SWEEP_SECONDS", "60")))
    frozen = "frozen between invocations" if pool.freeze else "never frozen (LOCAL_API_FREEZE=0)"
    print(
        f"API listening on http://{args.host}:{args.port}; up to {pool.limit} containers, {frozen}; "
        f"integration timeout {integration_timeout():g} s; {describe(rules)}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sweeps.set()
        server.server_close()
        pool.shutdown()
        summary = os.environ.get("LOCAL_API_SUMMARY_FILE")  # the stack prints it in its last line
        if summary:
            with open(summary, "w", encoding="utf-8") as out:
                out.write(tally.summary())
        else:
            print(f"api: {tally.summary()}", flush=True)


if __name__ == "__main__":
    main()
