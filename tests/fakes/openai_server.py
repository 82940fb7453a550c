"""A local OpenAI-compatible server for tests: embeddings and chat completions with usage.

The real ``openai`` client talks to it over HTTP. Its answers are deterministic: embeddings are
the offline hash vectors (so retrieval works), and a completion quotes the first passage of the
prompt.

It knows the models of a price file (the shipped ``prices.json``, or ``PRICES_FILE`` / ``--prices``)
and behaves as OpenAI does with them:

- a model the price file does not list: 404 ``model_not_found``;
- prompt caching: a chat prompt that repeats a prefix of at least 1,024 tokens of a prompt the same
  model saw in the last ``cache_ttl`` seconds (5 minutes) reports ``prompt_tokens_details.cached_tokens``:
  1,024 plus whole 128-token steps of the shared prefix (OpenAI's rule);
- reasoning models (``"reasoning": true``): ``max_tokens`` and a ``temperature`` other than 1 are
  refused (400), ``reasoning_effort`` is read (default ``medium``), and the hidden reasoning tokens
  (``REASONING_TOKENS`` by effort, or ``/_control`` ``reasoning_tokens``) come first out of
  ``max_completion_tokens``, are reported in ``completion_tokens_details.reasoning_tokens`` and
  counted inside ``completion_tokens``: a cap they eat whole leaves an empty answer, ``finish_reason``
  ``"length"``. Other models refuse ``reasoning_effort`` (400).

Moderation (``POST /v1/moderations``, free at OpenAI: never billed) answers in OpenAI's shape
(``{"id", "model", "results": [{"flagged", "categories", "category_scores",
"category_applied_input_types"}]}``) for the moderation models (others: 404), flagging an input
deterministically when it contains one of ``FLAGGED_MARKERS``' phrases (case-insensitive). Every
moderation request processed is recorded in ``state.moderations`` (``{"model", "input", "flagged"}``),
``GET /_moderations`` over HTTP.

It keeps the ground truth of what OpenAI would bill (SPEC §4 "Budget", §7): ``state.billed`` has one
record per request the real API would bill — every embeddings or chat request it processed — as
``{"path", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
"cost_nanos", "delivered", "fault"}``, appended when the request is processed, before any answer is
written. ``cost_nanos`` is what it bills at the price file's rates (``tests/support/billing.py``), the
cached discount included. ``delivered`` turns False when the answer could not be written (the client
was gone) and is False for a ``timeout_after_billing`` request. Injected 429/5xx answers and refused
requests (404/400) bill nothing. ``GET /_billed`` returns ``{"records": [...]}`` over HTTP.

``POST /_control`` (each key optional, applied in one go):

- ``{"fail": [500, 429]}`` the next requests fail with those statuses, in order (nothing billed);
- ``{"delay": 1.5}`` every answer comes that much later (processed and billed first);
- ``{"timeout_after_billing": n, "hold": 5}`` the next ``n`` requests are processed and billed, then
  held ``hold`` seconds (default 5) before answering: a client with a shorter timeout abandons them;
- ``{"reasoning_tokens": 300}`` every reasoning-model answer thinks that many tokens (``null``: by effort);
- ``{"retry_after": 2}`` injected 429s carry ``Retry-After: 2`` and ``retry-after-ms: 2000``
  (``null`` goes back to the default ``retry-after-ms: 10``);
- ``{"rules": [{"fault": "timeout_after_billing" | 429 | 500, "probability": p, "paths": [...]}],
  "seed": s}`` probabilistic faults (``paths`` optional, matched as suffixes of the request path,
  e.g. ``"/embeddings"``); the first rule that matches and wins its draw from ``random.Random(s)``
  decides, so a run is reproducible. Queued ``fail`` and ``timeout_after_billing`` come first.

``state.peak_active`` is the most billable requests it was answering at once since the last reset.

Each record also carries ``at``: when it was billed, in epoch seconds on ``state.clock`` (the local
stack's clock, ``LOCAL_CLOCK_START`` honoured; a test may set its own). From these records it serves
OpenAI's organization usage and costs API (``organization_api``: ``GET /v1/organization/usage/completions``,
``/v1/organization/usage/embeddings`` and ``/v1/organization/costs``, bucketed by UTC day), to callers
with the admin key (``state.admin_key``, ``FAKE_OPENAI_ADMIN_KEY``, default ``sk-admin-fake``).

``POST /_reset`` is ``state.reset()`` over HTTP. Run standalone (the Lambda code must be importable,
``PYTHONPATH=functions/api`` as ``make`` and ``tests.support.servers.python_env`` set it):
``python -m tests.fakes.openai_server --port N [--prices FILE]`` prints a ready line and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dnd_rag.pricing import PriceFile, load_prices
from dnd_rag.providers.offline import hash_embedding
from dnd_rag.providers.tokenizer import REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, count_text_tokens, encoding
from infra.local.clock import local_time
from tests.fakes.organization_api import DEFAULT_ADMIN_KEY, organization_answer
from tests.support.billing import record_nanos

# Embedding models count with cl100k_base, as OpenAI's text-embedding-3 models do.
EMBEDDING_TOKENIZER_MODEL = "gpt-4"

TIMEOUT_AFTER_BILLING = "timeout_after_billing"
RULE_FAULTS = (TIMEOUT_AFTER_BILLING, 429, 500)

# OpenAI's prompt caching: prompts of at least 1,024 tokens are cached; a hit covers the shared
# prefix in 128-token steps past the first 1,024; an unused prefix is evicted after minutes.
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
CACHE_TTL_SECONDS = 300.0
# Hidden reasoning tokens a reasoning model spends before answering, by reasoning_effort (OpenAI's
# default effort is medium). Deterministic, so a test knows what it is billed.
REASONING_TOKENS = {"minimal": 16, "low": 64, "medium": 192, "high": 512}


MODERATION_MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26")
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
# A phrase in the input flags these categories (the real model scores meaning; this fake, words).
FLAGGED_MARKERS = {
    "kill my neighbour": ("violence", "harassment/threatening"),
    "build a pipe bomb": ("illicit", "illicit/violent"),
    "hurt myself": ("self-harm", "self-harm/intent"),
}


def cached_prefix_tokens(shared: int) -> int:
    """The cached tokens OpenAI reports for a prompt sharing ``shared`` leading tokens with a cached one."""
    if shared < CACHE_MIN_TOKENS:
        return 0
    return CACHE_MIN_TOKENS + (shared - CACHE_MIN_TOKENS) // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS


def prompt_sequence(model: str, messages: list[dict[str, str]]) -> list[int]:
    """The prompt as the token stream OpenAI bills (its length is the prompt's token count): each
    message's format tokens (negative ids, they are not text), its role and content, then the reply
    priming."""
    enc = encoding(model)
    sequence: list[int] = []
    for message in messages:
        sequence.extend(-n for n in range(1, TOKENS_PER_MESSAGE + 1))
        for value in message.values():
            sequence.extend(enc.encode(value, disallowed_special=()))
    sequence.extend(-100 - n for n in range(REPLY_PRIMING_TOKENS))
    return sequence


class PromptCache:
    """The prefixes a model has seen recently, by their first 1,024 tokens (only prompts that share
    those can hit)."""

    def __init__(self, ttl_seconds: float = CACHE_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[tuple[str, tuple[int, ...]], dict[tuple[int, ...], float]] = {}

    def clear(self) -> None:
        self._entries.clear()

    def hit(self, model: str, sequence: list[int], now: float) -> int:
        """Cached tokens for ``sequence`` now; remembers it for the next prompts (caller holds the lock)."""
        if len(sequence) < CACHE_MIN_TOKENS:
            return 0
        bucket = self._entries.setdefault((model, tuple(sequence[:CACHE_MIN_TOKENS])), {})
        for seen, last_used in list(bucket.items()):
            if now - last_used > self.ttl_seconds:
                del bucket[seen]
        shared, best = 0, None
        for seen in bucket:
            length = _common_prefix(seen, sequence)
            if length > shared:
                shared, best = length, seen
        if best is not None:
            bucket[best] = now  # a hit keeps the prefix warm
        bucket[tuple(sequence)] = now
        return min(cached_prefix_tokens(shared), len(sequence))


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


class RequestError(Exception):
    """A request OpenAI would refuse before processing it (nothing billed)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


class FakeOpenAIState:
    def __init__(self, prices: PriceFile | None = None) -> None:
        self.prices = load_prices(os.environ.get("PRICES_FILE")) if prices is None else prices
        self.prompt_cache = PromptCache()
        self.reasoning_tokens: int | None = None  # every reasoning answer thinks this much (None: by effort)
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.delay_seconds = 0.0
        self.requests: list[dict[str, Any]] = []  # {"path", "status", "usage"}
        self.billed: list[dict[str, Any]] = []  # {"path", "model", "prompt_tokens", ..., "cost_nanos", ...}
        self.moderations: list[dict[str, Any]] = []  # {"model", "input", "flagged"}: free, never billed
        self.timeout_after_billing = 0
        self.hold_seconds = 5.0
        self.retry_after: float | None = None
        self.rules: list[dict[str, Any]] = []
        self.rng = random.Random(0)
        self.active = 0  # billable requests being answered right now
        self.peak_active = 0  # the most at once since the last reset
        self.clock = local_time  # when a request is billed (its record's ``at``)
        self.admin_key = os.environ.get("FAKE_OPENAI_ADMIN_KEY", DEFAULT_ADMIN_KEY)  # the usage/costs API's key

    def reset(self) -> None:
        with self.lock:
            self.failures.clear()
            self.delay_seconds = 0.0
            self.requests.clear()
            self.billed.clear()
            self.moderations.clear()
            self.timeout_after_billing = 0
            self.hold_seconds = 5.0
            self.retry_after = None
            self.rules = []
            self.rng = random.Random(0)
            self.active = self.peak_active = 0
            self.prompt_cache = PromptCache()  # its lifetime too, which a test may shorten
            self.reasoning_tokens = None
            self.clock = local_time

    def control(self, body: dict[str, Any]) -> None:
        """Apply a ``/_control`` body (see the module docstring); raises ValueError on nonsense."""
        rules = [_rule(raw) for raw in body.get("rules", [])] if "rules" in body else None
        with self.lock:
            self.failures.extend(int(status) for status in body.get("fail", []))
            self.delay_seconds = float(body.get("delay", self.delay_seconds))
            self.timeout_after_billing += int(body.get("timeout_after_billing", 0))
            self.hold_seconds = float(body.get("hold", self.hold_seconds))
            if "retry_after" in body:
                self.retry_after = None if body["retry_after"] is None else float(body["retry_after"])
            if "reasoning_tokens" in body:
                tokens = body["reasoning_tokens"]
                self.reasoning_tokens = None if tokens is None else max(0, int(tokens))
            if rules is not None:
                self.rules = rules
                self.rng = random.Random(int(body.get("seed", 0)))

    def decide(self, path: str) -> int | str | None:
        """The fault for a request arriving now: a status to fail with, ``timeout_after_billing`` or None."""
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
            if self.timeout_after_billing > 0:
                self.timeout_after_billing -= 1
                return TIMEOUT_AFTER_BILLING
            for rule in self.rules:
                if rule["paths"] and not any(path.endswith(suffix) for suffix in rule["paths"]):
                    continue
                if self.rng.random() < rule["probability"]:
                    fault: int | str = rule["fault"]
                    return fault
        return None

    def billed_records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(record) for record in self.billed]

    def moderation_records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(record) for record in self.moderations]


def _rule(raw: dict[str, Any]) -> dict[str, Any]:
    fault = raw.get("fault")
    if fault not in RULE_FAULTS:
        raise ValueError(f"rule fault must be one of {RULE_FAULTS}: {fault!r}")
    probability = float(raw.get("probability", 1.0))
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1]: {probability}")
    return {"fault": fault, "probability": probability, "paths": list(raw.get("paths") or [])}


def _embeddings(request: dict[str, Any], state: FakeOpenAIState) -> dict[str, Any]:
    _known_model(request, state.prices.embeddings)
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    tokens = sum(count_text_tokens(EMBEDDING_TOKENIZER_MODEL, text) for text in inputs)
    return {
        "object": "list",
        "model": request["model"],
        "data": [{"object": "embedding", "index": i, "embedding": hash_embedding(t)} for i, t in enumerate(inputs)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _moderation(request: dict[str, Any], state: FakeOpenAIState) -> dict[str, Any]:
    _known_model(request, dict.fromkeys(MODERATION_MODELS))
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    results = []
    for text in inputs:
        hits = {c for marker, found in FLAGGED_MARKERS.items() if marker in str(text).lower() for c in found}
        results.append(
            {
                "flagged": bool(hits),
                "categories": {c: c in hits for c in MODERATION_CATEGORIES},
                "category_scores": {c: 0.97 if c in hits else 0.0001 for c in MODERATION_CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
            }
        )
        with state.lock:
            state.moderations.append({"model": request["model"], "input": text, "flagged": bool(hits)})
    return {"id": "modr-fake", "model": request["model"], "results": results}


def _known_model(request: dict[str, Any], models: dict[str, Any]) -> None:
    model = request.get("model")
    if model not in models:
        raise RequestError(
            404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
        )


def _check_parameters(request: dict[str, Any], reasoning: bool) -> None:
    """The parameters OpenAI refuses for this kind of model (400, nothing billed)."""
    if reasoning:
        if "max_tokens" in request:
            raise RequestError(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "unsupported_parameter",
                "max_tokens",
            )
        if request.get("temperature", 1) != 1:
            raise RequestError(
                400,
                f"Unsupported value: 'temperature' does not support {request['temperature']} with this model. "
                "Only the default (1) value is supported.",
                "unsupported_value",
                "temperature",
            )
        effort = request.get("reasoning_effort", "medium")
        if effort not in REASONING_TOKENS:
            raise RequestError(
                400,
                f"Invalid value: '{effort}'. Supported values are: {', '.join(REASONING_TOKENS)}.",
                "invalid_value",
                "reasoning_effort",
            )
    elif "reasoning_effort" in request:
        raise RequestError(
            400,
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            "unsupported_parameter",
            "reasoning_effort",
        )


def _completion(request: dict[str, Any], state: FakeOpenAIState) -> dict[str, Any]:
    _known_model(request, state.prices.chat)
    model = request["model"]
    reasoning_model = state.prices.chat[model].reasoning
    _check_parameters(request, reasoning_model)
    prompt = "\n".join(message["content"] for message in request["messages"])
    first_passage = re.search(r"\[1\] \(source: [^)]*\)\n(.+)", prompt)
    answer = f"According to the rules: {first_passage.group(1).strip()} [1]" if first_passage else "I do not know."
    # Billed as OpenAI bills: its tokenizer and chat format, and never beyond the completion cap,
    # which a reasoning model's hidden tokens use first.
    sequence = prompt_sequence(model, request["messages"])
    with state.lock:
        cached = state.prompt_cache.hit(model, sequence, time.time())
        thinking = state.reasoning_tokens
    cap = request.get("max_completion_tokens") or request.get("max_tokens")
    reasoning = 0
    if reasoning_model:
        reasoning = REASONING_TOKENS[request.get("reasoning_effort", "medium")] if thinking is None else thinking
        if cap is not None:
            reasoning = min(reasoning, cap)
    room = None if cap is None else cap - reasoning
    tokens = encoding(model).encode(answer, disallowed_special=())
    finish = "stop"
    if room is not None and len(tokens) > room:
        answer = encoding(model).decode(tokens[:room])
        tokens = tokens[:room]
        finish = "length"
    completion_tokens = reasoning + len(tokens)
    usage: dict[str, Any] = {
        "prompt_tokens": len(sequence),
        "completion_tokens": completion_tokens,
        "total_tokens": len(sequence) + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": answer}}],
        "usage": usage,
    }


def make_handler(state: FakeOpenAIState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.endswith("/_billed"):
                self._send(200, {"records": state.billed_records()})
            elif self.path.endswith("/_moderations"):
                self._send(200, {"records": state.moderation_records()})
            elif "/organization/" in self.path:
                status, answer = organization_answer(
                    self.path, self.headers.get("Authorization"), state.admin_key, state.billed_records(), state.prices
                )
                self._send(status, answer)
            else:
                self._send(404, {"error": {"message": "unknown path"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path.endswith("/_control"):
                try:
                    state.control(body)
                except (ValueError, TypeError) as error:
                    self._send(400, {"error": {"message": str(error)}})
                    return
                self._send(200, {"ok": True})
                return
            if self.path.endswith("/_reset"):
                state.reset()
                self._send(200, {"ok": True})
                return
            with state.lock:
                state.active += 1
                state.peak_active = max(state.peak_active, state.active)
            try:
                self._answer(body)
            finally:
                with state.lock:
                    state.active = max(0, state.active - 1)

        def _answer(self, body: dict[str, Any]) -> None:
            # Decide and record everything on arrival: a slow request still sleeping when its test
            # has ended must not consume or pollute the next test's injected faults.
            fault = state.decide(self.path)
            with state.lock:
                delay = state.delay_seconds
                hold = state.hold_seconds
                retry_after = state.retry_after
            if isinstance(fault, int):
                with state.lock:
                    state.requests.append({"path": self.path, "status": fault})
                time.sleep(delay)
                headers = {"retry-after-ms": "10"}
                if fault == 429 and retry_after is not None:
                    headers = {"retry-after": f"{retry_after:g}", "retry-after-ms": str(int(retry_after * 1000))}
                self._send(fault, {"error": {"message": "injected failure", "type": "server_error"}}, headers)
                return
            if self.path.endswith("/moderations"):  # free: recorded, never billed
                try:
                    result = _moderation(body, state)
                except RequestError as refused:
                    with state.lock:
                        state.requests.append({"path": self.path, "status": refused.status})
                    self._send(refused.status, refused.body)
                    return
                with state.lock:
                    state.requests.append({"path": self.path, "status": 200})
                time.sleep(hold if fault == TIMEOUT_AFTER_BILLING else delay)
                self._send(200, result)
                return
            try:
                if self.path.endswith("/embeddings"):
                    result = _embeddings(body, state)
                elif self.path.endswith("/chat/completions"):
                    result = _completion(body, state)
                else:
                    self._send(404, {"error": {"message": "unknown path"}})
                    return
            except RequestError as refused:  # refused before processing: nothing billed
                with state.lock:
                    state.requests.append({"path": self.path, "status": refused.status})
                self._send(refused.status, refused.body)
                return
            usage = result["usage"]
            record = {
                "path": self.path,
                "model": body.get("model"),
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage.get("completion_tokens", 0),
                "cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
                "reasoning_tokens": usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0),
                "delivered": fault != TIMEOUT_AFTER_BILLING,
                "fault": fault,
                "at": state.clock(),
            }
            record["cost_nanos"] = record_nanos(record, state.prices)
            with state.lock:  # billed on processing, whether or not the client waits for the answer
                state.requests.append({"path": self.path, "status": 200, "usage": usage})
                state.billed.append(record)
            time.sleep(hold if fault == TIMEOUT_AFTER_BILLING else delay)
            if not self._send(200, result):
                with state.lock:
                    record["delivered"] = False

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bool:
            """Write the answer; False when the client was gone (it timed out first)."""
            if self._client_gone():
                self.close_connection = True
                return False
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first: expected
                self.close_connection = True
                return False
            return True

        def _client_gone(self) -> bool:
            """True when the client closed its end: a write would only fill a buffer nobody reads."""
            connection: socket.socket = self.connection
            try:
                readable, _, _ = select.select([connection], [], [], 0)
                return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):
                return True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def start_fake_openai(
    host: str = "127.0.0.1", port: int = 0, prices: PriceFile | None = None
) -> tuple[ThreadingHTTPServer, FakeOpenAIState]:
    state = FakeOpenAIState(prices)
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake of the OpenAI API that records what it would bill.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prices", help="a price file (default: PRICES_FILE, else the shipped prices.json)")
    args = parser.parse_args()
    state = FakeOpenAIState(load_prices(args.prices) if args.prices else None)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    server.daemon_threads = True
    host, port = args.host, server.server_address[1]
    print(f"fake openai listening on http://{host}:{port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
