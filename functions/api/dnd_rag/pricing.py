"""OpenAI prices as data, and exact cost arithmetic.

The prices live in a versioned price file: ``prices.json`` next to this module (shipped with the
code), or another file of the same shape named by ``PRICES_FILE`` (locally) or held in the SSM
parameter named by ``PRICES_PARAMETER`` (deployed; read at cold start into ``PRICES_JSON``, see
dal/secrets.py). Prices are US dollars per 1M tokens: input, cached input and output for each chat
model, input for each embedding model, with the date each was seen in force and where.

Costs are integers of nano-dollars (1e-9 USD): a price file is refused unless every price is a
whole number of nano-dollars per token, so sums are exact and never drift. A model missing from
the file is refused (``UnknownModelError``) rather than priced with a cheaper guess.

A chat call costs ``(prompt - cached) x input + cached x cached_input + completion x output``:
OpenAI bills the prompt tokens its prefix cache served (``usage.prompt_tokens_details.cached_tokens``)
at the cached rate, and a reasoning model's hidden reasoning tokens as output (they are inside
``completion_tokens``). A hold counts no cached token: what may be billed is the full input rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dnd_rag.models.money import TokenUsage

__all__ = ["ChatPrice", "PriceBook", "PriceFile", "PriceFileError", "TokenUsage", "UnknownModelError"]

SHIPPED_PRICES = Path(__file__).resolve().parent / "prices.json"
PER_TOKENS = Decimal(1_000_000)
NANOS_PER_USD = 1_000_000_000

# dollars per 1M tokens; never negative, never NaN or infinite
PerMillion = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class UnknownModelError(ValueError):
    """A configured model has no price: refusing to run is safer than guessing low."""


class PriceFileError(ValueError):
    """A price file that cannot be read or does not describe exact prices."""


def per_token_nanos(price_per_million: Decimal) -> int:
    nanos = price_per_million * NANOS_PER_USD / PER_TOKENS
    if nanos != nanos.to_integral_value():
        raise ValueError(f"price {price_per_million} is not a whole number of nano-dollars per token")
    return int(nanos)


def _whole_nanos(price: Decimal) -> Decimal:
    per_token_nanos(price)  # raises ValueError, which pydantic reports with the field's path
    return price


class ChatModelPrice(BaseModel):
    """One chat model's entry in the price file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: PerMillion
    cached_input: PerMillion | None = None  # OpenAI lists none: cached tokens cost the input price
    output: PerMillion
    reasoning: bool = False  # bills hidden reasoning tokens as output (gpt-5 family, o-series)
    effective: date
    source: str = Field(pattern=r"^https://\S+$")

    @field_validator("input", "cached_input", "output")
    @classmethod
    def _exact(cls, price: Decimal | None) -> Decimal | None:
        return None if price is None else _whole_nanos(price)

    @model_validator(mode="after")
    def _cached_never_above_input(self) -> ChatModelPrice:
        # a hold prices every prompt token at the input price: sound only if no token costs more
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError(f"cached_input {self.cached_input} is above input {self.input}")
        return self


class EmbeddingModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: PerMillion
    effective: date
    source: str = Field(pattern=r"^https://\S+$")

    @field_validator("input")
    @classmethod
    def _exact(cls, price: Decimal) -> Decimal:
        return _whole_nanos(price)


class PriceFile(BaseModel):
    """A whole price file: its version and every priced model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    chat: dict[str, ChatModelPrice] = Field(min_length=1)
    embeddings: dict[str, EmbeddingModelPrice] = Field(min_length=1)


def parse_prices(text: str, origin: str) -> PriceFile:
    """The price file in ``text``; ``PriceFileError`` naming ``origin`` and every problem otherwise."""
    try:
        return PriceFile.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise PriceFileError(f"{origin}: not a valid price file ({problems})") from None


@cache
def load_prices(path: str | None = None, text: str | None = None) -> PriceFile:
    """The prices in effect: ``text`` (the content of an override), else the file at ``path``, else
    the shipped ``prices.json``. Read and validated once per container (per argument)."""
    if text is not None:
        return parse_prices(text, "PRICES_PARAMETER")
    if path is not None:
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceFileError(f"PRICES_FILE: cannot read {path} ({exc.strerror or exc})") from None
        return parse_prices(content, f"PRICES_FILE {path}")
    return parse_prices(SHIPPED_PRICES.read_text(encoding="utf-8"), f"shipped {SHIPPED_PRICES.name}")


@dataclass(frozen=True)
class ChatPrice:
    """A chat model's prices in nano-dollars per token."""

    input: int
    cached_input: int
    output: int
    reasoning: bool = False

    @classmethod
    def of(cls, entry: ChatModelPrice) -> ChatPrice:
        cached = entry.input if entry.cached_input is None else entry.cached_input
        return cls(
            per_token_nanos(entry.input), per_token_nanos(cached), per_token_nanos(entry.output), entry.reasoning
        )


@dataclass(frozen=True)
class PriceBook:
    """The prices for one deployment's chat and embedding models, from one price file."""

    chat_model: str
    embedding_model: str
    chat: ChatPrice
    embedding: int  # nano-dollars per embedding token
    version: str = ""

    @classmethod
    def for_models(cls, chat_model: str, embedding_model: str, prices: PriceFile | None = None) -> PriceBook:
        prices = load_prices() if prices is None else prices
        if chat_model not in prices.chat:
            raise UnknownModelError(
                f"OPENAI_MODEL: no price for {chat_model!r} in price file {prices.version}; "
                f"known: {', '.join(sorted(prices.chat))}"
            )
        if embedding_model not in prices.embeddings:
            raise UnknownModelError(
                f"EMBEDDING_MODEL: no price for {embedding_model!r} in price file {prices.version}; "
                f"known: {', '.join(sorted(prices.embeddings))}"
            )
        embedding = per_token_nanos(prices.embeddings[embedding_model].input)
        return cls(chat_model, embedding_model, ChatPrice.of(prices.chat[chat_model]), embedding, prices.version)

    def cost_nanos(self, usage: TokenUsage) -> int:
        """Exact cost of ``usage`` in nano-dollars: cached prompt tokens at the cached rate."""
        return (
            usage.uncached_prompt_tokens * self.chat.input
            + usage.cached_prompt_tokens * self.chat.cached_input
            + usage.completion_tokens * self.chat.output
            + usage.embedding_tokens * self.embedding
        )

    def cost(self, usage: TokenUsage) -> Decimal:
        """Exact dollar cost of ``usage``."""
        return nanos_to_usd(self.cost_nanos(usage))


def usd_to_nanos(amount: Decimal) -> int:
    """Whole nano-dollars, rounded down (a budget is never rounded up)."""
    return int(amount * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def usd_exact(nanos: int) -> str:
    """Dollars as an exact decimal string, every nano-dollar kept: 123456 -> "0.000123456"."""
    return f"{nanos_to_usd(nanos):.9f}"


def usd_for_display(nanos: int) -> float:
    """Dollars for a response body: rounded to the micro-dollar, as every amount in the API is."""
    return round(float(nanos_to_usd(nanos)), 6)
