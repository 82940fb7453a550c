"""OpenAI embeddings and chat completions through the official SDK.

The SDK's own bounded retries (2, exponential backoff, Retry-After honoured on 429/5xx/timeouts)
are used; whatever still fails becomes an UpstreamError. Each call's per-attempt timeout is cut
so that all its attempts fit in what is left of the request's deadline, which keeps the whole
request under API Gateway's 30 s.
"""

from __future__ import annotations

import openai

from dnd_rag.errors import UpstreamError
from dnd_rag.logic.clock import Deadline
from dnd_rag.logic.prompt import build_messages
from dnd_rag.models.domain import Embedding, Generation, Passage

MAX_RETRIES = 2
MIN_ATTEMPT_SECONDS = 0.5


def make_client(api_key: str, base_url: str | None, timeout_seconds: float) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=MAX_RETRIES)


def _within(client: openai.OpenAI, timeout_seconds: float, deadline: Deadline | None) -> openai.OpenAI:
    """The client with a per-attempt timeout such that every retry still ends before ``deadline``."""
    if deadline is None:
        return client
    remaining = deadline.remaining()
    if remaining < MIN_ATTEMPT_SECONDS * (MAX_RETRIES + 1):
        raise UpstreamError(
            "The language model is unavailable right now. Please retry.",
            reason="openai: no time left before the request deadline",
        )
    per_attempt = min(timeout_seconds, remaining / (MAX_RETRIES + 1))
    return client.with_options(timeout=per_attempt)


class OpenAIEmbedder:
    def __init__(self, client: openai.OpenAI, model: str, timeout_seconds: float) -> None:
        self._client = client
        self.model = model
        self._timeout = timeout_seconds

    def embed(self, texts: list[str], deadline: Deadline | None = None) -> Embedding:
        client = _within(self._client, self._timeout, deadline)
        try:
            response = client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise _upstream("embeddings", exc) from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return Embedding(vectors=vectors, tokens=response.usage.prompt_tokens, model=response.model or self.model)


class OpenAIGenerator:
    def __init__(self, client: openai.OpenAI, model: str, max_completion_tokens: int, timeout_seconds: float) -> None:
        self._client = client
        self.model = model
        self._max_completion_tokens = max_completion_tokens
        self._timeout = timeout_seconds

    def generate(self, question: str, passages: list[Passage], deadline: Deadline | None = None) -> Generation:
        client = _within(self._client, self._timeout, deadline)
        try:
            response = client.chat.completions.create(
                model=self.model,
                messages=build_messages(question, passages),  # type: ignore[arg-type]
                max_completion_tokens=self._max_completion_tokens,
                temperature=0.2,
            )
        except openai.OpenAIError as exc:
            raise _upstream("chat completion", exc) from None
        usage = response.usage
        if usage is None:
            raise UpstreamError(
                "The language model returned no usage; refusing to serve unmetered.",
                reason="openai chat completion without usage",
            )
        answer = (response.choices[0].message.content or "").strip() if response.choices else ""
        return Generation(answer, usage.prompt_tokens, usage.completion_tokens, response.model or self.model)


def _upstream(call: str, exc: openai.OpenAIError) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    detail = f"{type(exc).__name__}" + (f" {status}" if status else "")
    return UpstreamError(
        "The language model is unavailable right now. Please retry.", reason=f"openai {call}: {detail}"
    )
