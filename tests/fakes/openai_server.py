"""A local OpenAI-compatible server for tests: embeddings and chat completions with usage.

The real ``openai`` client talks to it over HTTP. Its answers are deterministic: embeddings are
the offline hash vectors (so retrieval works), and a completion quotes the first passage of the
prompt. ``POST /_control`` injects faults: ``{"fail": [500, 429], "delay": 1.5}`` makes the next
requests fail with those statuses, in order, and/or answer slowly.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dnd_rag.logic.text import count_tokens
from dnd_rag.providers.offline import hash_embedding


class FakeOpenAIState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.delay_seconds = 0.0
        self.requests: list[dict[str, Any]] = []  # {"path", "status", "usage"}

    def reset(self) -> None:
        with self.lock:
            self.failures.clear()
            self.delay_seconds = 0.0
            self.requests.clear()


def _embeddings(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    tokens = sum(count_tokens(text) for text in inputs)
    return {
        "object": "list",
        "model": request["model"],
        "data": [{"object": "embedding", "index": i, "embedding": hash_embedding(t)} for i, t in enumerate(inputs)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _completion(request: dict[str, Any]) -> dict[str, Any]:
    prompt = "\n".join(message["content"] for message in request["messages"])
    first_passage = re.search(r"\[1\] \(source: [^)]*\)\n(.+)", prompt)
    answer = f"According to the rules: {first_passage.group(1).strip()} [1]" if first_passage else "I do not know."
    prompt_tokens = count_tokens(prompt) + 7 * len(request["messages"])
    completion_tokens = count_tokens(answer)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def make_handler(state: FakeOpenAIState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path == "/_control":
                with state.lock:
                    state.failures.extend(body.get("fail", []))
                    state.delay_seconds = float(body.get("delay", state.delay_seconds))
                self._send(200, {"ok": True})
                return
            # Decide and record everything on arrival: a slow request still sleeping when its test
            # has ended must not consume or pollute the next test's injected faults.
            with state.lock:
                failure = state.failures.pop(0) if state.failures else None
                delay = state.delay_seconds
            if failure is not None:
                with state.lock:
                    state.requests.append({"path": self.path, "status": failure})
                time.sleep(delay)
                self._send(
                    failure,
                    {"error": {"message": "injected failure", "type": "server_error"}},
                    {"retry-after-ms": "10"},
                )
                return
            if self.path.endswith("/embeddings"):
                result = _embeddings(body)
            elif self.path.endswith("/chat/completions"):
                result = _completion(body)
            else:
                self._send(404, {"error": {"message": "unknown path"}})
                return
            with state.lock:
                state.requests.append({"path": self.path, "status": 200, "usage": result["usage"]})
            time.sleep(delay)
            self._send(200, result)

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first: expected
                pass

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def start_fake_openai(host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, FakeOpenAIState]:
    state = FakeOpenAIState()
    server = ThreadingHTTPServer((host, 0), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state
