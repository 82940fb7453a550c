"""Simulated Lambda containers for tests that kill containers (SIGKILL) in the middle of a request.

Each container is a process of its own running the real Lambda entry module
(``dnd_rag.handlers.api``), one invocation at a time. A cold start here costs seconds of CPU
(imports, the tokenizer's tables), so containers are forked from one warm parent, as Lambda
SnapStart restores a snapshot taken after init: the parent imports and warms up once, builds no
connection, and forks a fresh container on demand. Killing a container kills only that process.

Run ``python -m tests.support.query_worker`` with the service's environment. It prints
``{"ready": true}`` once warm; then each stdin line is the path of a Unix socket the test listens
on: the parent forks a container that connects there and answers ``{"pid": <pid>}``. Over that
socket the container reads requests ``{"method", "path", "token", "body", "tag"}`` (JSON lines)
and answers ``{"status", "body"}``, until the socket closes. A ``tag`` (optional) goes into the
path of the invocation's OpenAI calls (``<host>/t/<tag>/v1/...``), so a test can tell from the fake
OpenAI's billed records which request (or user) each billed call belongs to. Each invocation's Lambda timeout is
``QUERY_WORKER_TIMEOUT_SECONDS`` (the test enforces it by killing the container, as Lambda does).
Everything the handler logs goes to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any


def _serve(
    path: str, handler: Callable[..., dict[str, Any]], timeout: float, tag_openai: Callable[[str], None]
) -> None:
    """One container's life: answer invocations over the socket at ``path`` until it closes."""
    from infra.local.api_server import LambdaContext
    from tests.support.events import http_event

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    stream = connection.makefile("rw", buffering=1)
    stream.write(json.dumps({"pid": os.getpid()}) + "\n")
    for line in stream:
        request = json.loads(line)
        if request.get("tag"):
            tag_openai(request["tag"])
        event = http_event(request["method"], request["path"], token=request.get("token"), body=request.get("body"))
        response = handler(event, LambdaContext("dnd-rag-chaos", timeout_seconds=timeout))
        body = json.loads(response["body"]) if response.get("body") else None
        stream.write(json.dumps({"status": response["statusCode"], "body": body}) + "\n")


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's JSON logs go to stderr, never into the protocol
    sys.stdout = sys.stderr

    import chromadb  # noqa: F401 - imported lazily by the service: done once here, before forking

    from dnd_rag.handlers.api import container, lambda_handler

    # What Lambda's init phase would do: the tokenizer's tables and the service's parts (clients
    # are created, no connection is opened, so every forked container opens its own).
    container.rag.generator.prompt_tokens([{"role": "user", "content": "warm-up"}])
    container.queries  # noqa: B018
    timeout = float(os.environ.get("QUERY_WORKER_TIMEOUT_SECONDS", "29"))
    base_url = os.environ.get("OPENAI_BASE_URL", "")

    def tag_openai(tag: str) -> None:
        """Send this invocation's OpenAI calls under ``<host>/t/<tag>/v1``: the fake OpenAI then
        records the tag in the path of each billed record (its routes match path suffixes)."""
        scheme, _, rest = base_url.partition("://")
        host, _, path = rest.partition("/")
        container._openai_client().base_url = f"{scheme}://{host}/t/{tag}/{path}"

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # dead containers are reaped by the kernel
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        path = line.strip()
        pid = os.fork()
        if pid == 0:  # the new container
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                _serve(path, lambda_handler, timeout, tag_openai)
            except BaseException:  # a container that crashes says why, then dies
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        protocol.write(json.dumps({"pid": pid}) + "\n")


if __name__ == "__main__":
    main()
