"""What OpenAI would have billed, priced exactly: the ground truth the books are checked against.

The arithmetic here is its own, not the service's (``PriceBook.cost_nanos``): the rates straight from
the price file, in dollars per 1M tokens, applied as OpenAI's billing applies them. A mistake in the
service's pricing then shows as books that differ from what was billed.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx

from dnd_rag.pricing import PriceFile, load_prices

PER_TOKENS = Decimal(1_000_000)
NANOS_PER_USD = Decimal(1_000_000_000)


def record_nanos(record: dict[str, Any], prices: PriceFile) -> int:
    """Exact nano-dollars of one billed record at the price file's rates.

    Chat: ``(prompt - cached) x input + cached x cached_input + completion x output`` (reasoning
    tokens are inside ``completion_tokens``); embeddings: ``prompt x input``."""
    path, model = str(record["path"]), str(record.get("model"))
    if path.endswith("/chat/completions"):
        chat = prices.chat.get(model)
        if chat is None:
            raise ValueError(f"no price for chat model {model!r}: {record!r}")
        cached = int(record.get("cached_tokens") or 0)
        cached_rate = chat.input if chat.cached_input is None else chat.cached_input
        dollars = (
            (record["prompt_tokens"] - cached) * chat.input
            + cached * cached_rate
            + record["completion_tokens"] * chat.output
        ) / PER_TOKENS
    elif path.endswith("/embeddings"):
        embedding = prices.embeddings.get(model)
        if embedding is None:
            raise ValueError(f"no price for embedding model {model!r}: {record!r}")
        dollars = record["prompt_tokens"] * embedding.input / PER_TOKENS
    else:
        raise ValueError(f"not a billable path: {record!r}")
    nanos = dollars * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{record!r} costs {dollars} USD: not a whole number of nano-dollars")
    return int(nanos)


def billed_nanos(
    records: Iterable[dict[str, Any]], chat_model: str, embedding_model: str, prices: PriceFile | None = None
) -> int:
    """Exact nano-dollars for the fake OpenAI server's billed records (``state.billed`` or ``/_billed``),
    at the rates of ``prices`` (default: the shipped price file).

    A record for another model than the one given is refused (ValueError): pricing it at the wrong
    rate would make the ground truth wrong without saying so.
    """
    prices = load_prices() if prices is None else prices
    total = 0
    for record in records:
        path, model = str(record["path"]), record.get("model")
        if path.endswith("/chat/completions"):
            _check_model(record, model, chat_model)
        elif path.endswith("/embeddings"):
            _check_model(record, model, embedding_model)
        total += record_nanos(record, prices)
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
