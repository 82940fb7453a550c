"""The versioned OpenAI price table and exact cost arithmetic.

Prices are US dollars per 1M tokens. Costs are integers of nano-dollars (1e-9 USD): every listed
price is a whole number of nano-dollars per token, so sums are exact and never drift. A model
missing from the table is refused (``UnknownModelError``) rather than priced with a cheaper guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from dnd_rag.models.money import TokenUsage

__all__ = ["ChatPrice", "PriceBook", "TokenUsage", "UnknownModelError"]

PRICES_VERSION = "2025-11-04"
PRICES_SOURCE = "OpenAI API pricing page, standard tier, as of 2025-11-04"
PER_TOKENS = Decimal(1_000_000)
NANOS_PER_USD = 1_000_000_000


@dataclass(frozen=True)
class ChatPrice:
    input: Decimal
    output: Decimal


CHAT_PRICES: dict[str, ChatPrice] = {
    "gpt-4o-mini": ChatPrice(input=Decimal("0.15"), output=Decimal("0.60")),
    "gpt-4o": ChatPrice(input=Decimal("2.50"), output=Decimal("10.00")),
    "gpt-4-turbo": ChatPrice(input=Decimal("10.00"), output=Decimal("30.00")),
    "gpt-4": ChatPrice(input=Decimal("30.00"), output=Decimal("60.00")),
    "gpt-3.5-turbo": ChatPrice(input=Decimal("0.50"), output=Decimal("1.50")),
}

EMBEDDING_PRICES: dict[str, Decimal] = {
    "text-embedding-3-small": Decimal("0.02"),
    "text-embedding-3-large": Decimal("0.13"),
    "text-embedding-ada-002": Decimal("0.10"),
}


class UnknownModelError(ValueError):
    """A configured model has no price: refusing to run is safer than guessing low."""


@dataclass(frozen=True)
class PriceBook:
    """The prices for one deployment's chat and embedding models."""

    chat_model: str
    embedding_model: str
    chat: ChatPrice
    embedding: Decimal

    @classmethod
    def for_models(cls, chat_model: str, embedding_model: str) -> PriceBook:
        if chat_model not in CHAT_PRICES:
            raise UnknownModelError(
                f"OPENAI_MODEL: no price for {chat_model!r} in pricing table {PRICES_VERSION}; "
                f"known: {', '.join(sorted(CHAT_PRICES))}"
            )
        if embedding_model not in EMBEDDING_PRICES:
            raise UnknownModelError(
                f"EMBEDDING_MODEL: no price for {embedding_model!r} in pricing table {PRICES_VERSION}; "
                f"known: {', '.join(sorted(EMBEDDING_PRICES))}"
            )
        return cls(chat_model, embedding_model, CHAT_PRICES[chat_model], EMBEDDING_PRICES[embedding_model])

    def cost_nanos(self, usage: TokenUsage) -> int:
        """Exact cost of ``usage`` in nano-dollars."""
        return (
            usage.prompt_tokens * per_token_nanos(self.chat.input)
            + usage.completion_tokens * per_token_nanos(self.chat.output)
            + usage.embedding_tokens * per_token_nanos(self.embedding)
        )

    def cost(self, usage: TokenUsage) -> Decimal:
        """Exact dollar cost of ``usage``."""
        return nanos_to_usd(self.cost_nanos(usage))


def per_token_nanos(price_per_million: Decimal) -> int:
    nanos = price_per_million * NANOS_PER_USD / PER_TOKENS
    if nanos != nanos.to_integral_value():
        raise ValueError(f"price {price_per_million} is not a whole number of nano-dollars per token")
    return int(nanos)


def usd_to_nanos(amount: Decimal) -> int:
    """Whole nano-dollars, rounded down (a budget is never rounded up)."""
    return int(amount * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def usd_for_display(nanos: int) -> float:
    """Dollars for a response body: rounded to the micro-dollar, as every amount in the API is."""
    return round(float(nanos_to_usd(nanos)), 6)
