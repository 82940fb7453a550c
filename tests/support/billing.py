"""What OpenAI would have billed, priced exactly: the ground truth the books are checked against."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from dnd_rag.pricing import PriceBook, TokenUsage


def billed_nanos(records: Iterable[dict[str, Any]], chat_model: str, embedding_model: str) -> int:
    """Exact nano-dollars for the fake OpenAI server's billed records (``state.billed`` or ``/_billed``).

    Chat records are priced with the chat model's input price on ``prompt_tokens`` and output price
    on ``completion_tokens``; embeddings records with the embedding price on ``prompt_tokens``. A record
    for another model than the one given is refused (ValueError): pricing it at the wrong rate would
    make the ground truth wrong without saying so.
    """
    book = PriceBook.for_models(chat_model, embedding_model)
    total = 0
    for record in records:
        path, model = str(record["path"]), record.get("model")
        if path.endswith("/chat/completions"):
            _check_model(record, model, chat_model)
            usage = TokenUsage(prompt_tokens=record["prompt_tokens"], completion_tokens=record["completion_tokens"])
        elif path.endswith("/embeddings"):
            _check_model(record, model, embedding_model)
            usage = TokenUsage(embedding_tokens=record["prompt_tokens"])
        else:
            raise ValueError(f"not a billable path: {record!r}")
        total += book.cost_nanos(usage)
    return total


def _check_model(record: dict[str, Any], model: object, expected: str) -> None:
    if model != expected:
        raise ValueError(f"record for model {model!r}, priced as {expected!r}: {record!r}")


def fetch_billed(base_url: str) -> list[dict[str, Any]]:
    """The billed records of a fake OpenAI server running in another process (``GET /_billed``)."""
    response = httpx.get(base_url.rstrip("/") + "/_billed", timeout=10)
    response.raise_for_status()
    records: list[dict[str, Any]] = response.json()["records"]
    return records
