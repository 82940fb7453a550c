"""OpenAI embeddings and chat completions through the official SDK.

The SDK's own bounded retries (exponential backoff on 429/5xx/timeouts) are used; whatever
still fails becomes an UpstreamError. Timeouts keep the total under API Gateway's 30 s.
"""

from __future__ import annotations

import httpx
import openai

from dnd_rag.errors import UpstreamError
from dnd_rag.logic.prompt import build_messages
from dnd_rag.models.domain import Embedding, Generation, Passage

MAX_RETRIES = 2
CONNECT_TIMEOUT_SECONDS = 2.0


def make_client(api_key: str, base_url: str | None, timeout_seconds: float) -> openai.OpenAI:
    timeout = httpx.Timeout(timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds))
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=MAX_RETRIES)


class OpenAIEmbedder:
    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self._client = client
        self.model = model

    def embed(self, texts: list[str]) -> Embedding:
        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise _upstream("embeddings", exc) from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return Embedding(vectors=vectors, tokens=response.usage.prompt_tokens, model=response.model or self.model)


class OpenAIGenerator:
    def __init__(self, client: openai.OpenAI, model: str, max_completion_tokens: int) -> None:
        self._client = client
        self.model = model
        self._max_completion_tokens = max_completion_tokens

    def generate(self, question: str, passages: list[Passage]) -> Generation:
        try:
            response = self._client.chat.completions.create(
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
