"""OpenAI embeddings, chat completions and moderation through the official SDK, one attempt per call.

The SDK's own retries are off (``max_retries=0``): a retry it made on its own would be billed by
OpenAI without the budget knowing. The logic retries instead (logic/money/spending.py), paying for each
attempt. Each failure is classified here: may OpenAI bill it, and is another attempt worth it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from dnd_rag.errors import AttemptError
from dnd_rag.models.domain import Embedding, Generation, Moderation, Prompt
from dnd_rag.providers.tokenizer import count_chat_tokens

RETRYABLE_STATUSES = frozenset({408, 409, 429})


def make_client(api_key: str, base_url: str | None, timeout_seconds: float) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=0)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after`` in seconds)."""
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def classify(call: str, exc: openai.OpenAIError) -> AttemptError:
    """What a failed attempt means for the money and for retrying."""
    name = type(exc).__name__
    if isinstance(exc, openai.APITimeoutError):  # sent, maybe processed: OpenAI may bill it
        return AttemptError(f"openai {call}: timeout", billable=True, retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        # the SDK's HTTP client raises ConnectError when no connection was made: nothing was sent
        never_sent = type(exc.__cause__).__name__ == "ConnectError"
        return AttemptError(f"openai {call}: {name}", billable=not never_sent, retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500:  # it reached OpenAI; treat as possibly billed
            return AttemptError(
                f"openai {call}: {status}",
                billable=True,
                retryable=True,
                retry_after=_retry_after(exc.response.headers),
            )
        return AttemptError(
            f"openai {call}: {status}",
            billable=False,
            retryable=status in RETRYABLE_STATUSES,
            retry_after=_retry_after(exc.response.headers),
        )
    return AttemptError(f"openai {call}: {name}", billable=True, retryable=False)


class OpenAIEmbedder:
    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self._client = client
        self.model = model

    def embed(self, texts: list[str], timeout_seconds: float) -> Embedding:
        try:
            response = self._client.with_options(timeout=timeout_seconds).embeddings.create(
                model=self.model, input=texts
            )
        except openai.OpenAIError as exc:
            raise classify("embeddings", exc) from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return Embedding(vectors=vectors, tokens=response.usage.prompt_tokens, model=response.model or self.model)


class OpenAIGenerator:
    """Chat completions. A reasoning model (the price file says which) gets ``reasoning_effort`` and
    no ``temperature`` (it accepts only the default); every model gets ``max_completion_tokens``, the
    cap on reasoning and answer together (``max_tokens`` is refused by reasoning models)."""

    def __init__(
        self, client: openai.OpenAI, model: str, reasoning: bool = False, reasoning_effort: str | None = None
    ) -> None:
        self._client = client
        self.model = model
        self._reasoning = reasoning
        self._reasoning_effort = reasoning_effort

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return count_chat_tokens(self.model, messages)

    def request(self, prompt: Prompt, max_completion_tokens: int) -> dict[str, Any]:
        """The body of the chat completion request for ``prompt``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "max_completion_tokens": max_completion_tokens,
        }
        if self._reasoning:
            if self._reasoning_effort is not None:
                body["reasoning_effort"] = self._reasoning_effort
        else:
            body["temperature"] = 0.2
        return body

    def generate(self, prompt: Prompt, max_completion_tokens: int, timeout_seconds: float) -> Generation:
        try:
            response = self._client.with_options(timeout=timeout_seconds).chat.completions.create(
                **self.request(prompt, max_completion_tokens)
            )
        except openai.OpenAIError as exc:
            raise classify("chat completion", exc) from None
        usage = response.usage
        if usage is None:  # served, so billed, but we cannot tell how much: the bound is charged
            raise AttemptError("openai chat completion without usage", billable=True, retryable=False)
        choice = response.choices[0] if response.choices else None
        answer = (choice.message.content or "").strip() if choice is not None else ""
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None
        reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else None
        return Generation(
            answer,
            usage.prompt_tokens,
            usage.completion_tokens,
            response.model or self.model,
            cached_tokens=cached or 0,
            reasoning_tokens=reasoning or 0,
            truncated=choice is not None and choice.finish_reason == "length",
        )


class OpenAIModerator:
    """The moderations endpoint (free at OpenAI: never on the books)."""

    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self._client = client
        self.model = model

    def moderate(self, text: str, timeout_seconds: float) -> Moderation:
        try:
            response = self._client.with_options(timeout=timeout_seconds).moderations.create(
                model=self.model, input=text
            )
        except openai.OpenAIError as exc:
            raise classify("moderation", exc) from None
        if not response.results:
            raise AttemptError("openai moderation without a result", billable=False, retryable=True)
        result = response.results[0]
        categories = result.categories.model_dump(by_alias=True) if result.categories is not None else {}
        return Moderation(bool(result.flagged), sorted(name for name, flagged in categories.items() if flagged))
