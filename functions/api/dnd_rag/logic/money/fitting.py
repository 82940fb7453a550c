"""Fit a query to the money it may use: the standard form, or fewer passages and a smaller
completion cap down to configured floors (SPEC §4 "fit the last of the budget").

With a model ladder (``OPENAI_MODEL_FALLBACKS``), a cheaper model's standard form (every passage,
the whole completion cap) comes before any shrinking: ``Ladder.best_within`` tries each model's
standard form in order and only then shrinks, on the cheapest model, down to the floors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from dnd_rag.logic.retrieval.prompt import build_messages
from dnd_rag.models.domain import Passage, Prompt
from dnd_rag.pricing import PriceBook, TokenUsage


@dataclass(frozen=True)
class Floors:
    """The least a degraded query may use: below this it is refused instead."""

    passages: int
    completion_tokens: int


@dataclass(frozen=True)
class Fit:
    passages: list[Passage]
    messages: list[dict[str, str]]
    prompt_tokens: int
    max_completion_tokens: int
    bound: int  # the most one chat attempt of this form can be billed (nano-dollars)
    degraded: bool
    question: str = ""
    model: str = ""  # the chat model this form is priced (and token-counted) for

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.question, self.passages, self.messages)


class Fitter:
    def __init__(
        self,
        count_prompt_tokens: Callable[[list[dict[str, str]]], int],
        prices: PriceBook,
        max_completion_tokens: int,
        floors: Floors,
    ) -> None:
        self._count = count_prompt_tokens
        self._prices = prices
        self._max_completion = max_completion_tokens
        self._floors = Floors(floors.passages, min(floors.completion_tokens, max_completion_tokens))
        self._per_completion_token = prices.cost_nanos(TokenUsage(completion_tokens=1))

    @property
    def model(self) -> str:
        return self._prices.chat_model

    def _form(self, question: str, passages: list[Passage], completion_tokens: int, degraded: bool) -> Fit:
        messages = build_messages(question, passages)
        prompt_tokens = self._count(messages)
        bound = self._prices.cost_nanos(TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))
        return Fit(passages, messages, prompt_tokens, completion_tokens, bound, degraded, question, self.model)

    def chat_bound(self, prompt_tokens: int, floor: bool = False) -> int:
        """The most one chat attempt with ``prompt_tokens`` can be billed (at the floor cap if ``floor``)."""
        completion = self._floors.completion_tokens if floor else self._max_completion
        return self._prices.cost_nanos(TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion))

    def frame_tokens(self, question: str) -> int:
        """The prompt's tokens without any passage."""
        return self._count(build_messages(question, []))

    def standard(self, question: str, passages: list[Passage]) -> Fit:
        return self._form(question, passages, self._max_completion, degraded=False)

    def smallest(self, question: str, passages: list[Passage]) -> Fit:
        return self._form(question, passages[: self._floors.passages], self._floors.completion_tokens, degraded=True)

    def best_within(self, question: str, passages: list[Passage], available: int) -> Fit | None:
        """The richest form whose chat bound is at most ``available``: most passages first, then
        the largest completion cap; None when even the floors do not fit."""
        floor_k = min(self._floors.passages, len(passages))
        low, high, best = floor_k, len(passages), None
        while low <= high:  # the prompt only grows with passages: binary search for the most that fit
            k = (low + high) // 2
            form = self._form(question, passages[:k], self._floors.completion_tokens, degraded=True)
            if form.bound <= available:
                best, low = form, k + 1
            else:
                high = k - 1
        if best is None:
            return None
        prompt_cost = best.bound - self._floors.completion_tokens * self._per_completion_token
        completion = min(self._max_completion, (available - prompt_cost) // self._per_completion_token)
        degraded = len(best.passages) < len(passages) or completion < self._max_completion
        return self._form(question, best.passages, completion, degraded)


class Ladder:
    """The configured model first, then cheaper ones (``OPENAI_MODEL_FALLBACKS``), one Fitter each
    (each with its model's prices and tokenizer).

    The standard form is the configured model's. When it does not fit, the next cheaper model's
    standard form (every passage, the whole cap) is tried, and so on; only when no model's standard
    form fits does the query shrink, on the cheapest model (the one whose shrunk forms buy the most
    passages and tokens for the money). Its smallest form is the cheapest query there is: the one
    refusals and the 100 % alert are measured against."""

    def __init__(self, fitters: list[Fitter]) -> None:
        if not fitters:
            raise ValueError("a ladder needs at least one model")
        self._fitters = fitters

    @property
    def models(self) -> list[str]:
        return [fitter.model for fitter in self._fitters]

    @property
    def _cheapest(self) -> Fitter:
        return self._fitters[-1]

    def frame_tokens(self, question: str) -> int:
        """The configured model's prompt tokens without any passage."""
        return self._fitters[0].frame_tokens(question)

    def chat_bound(self, prompt_tokens: int) -> int:
        """The most one chat attempt of the configured model with ``prompt_tokens`` can be billed."""
        return self._fitters[0].chat_bound(prompt_tokens)

    def floor_bound(self, question: str) -> int:
        """The cheapest chat attempt there is for ``question``: no passage, the floor cap, the cheapest model."""
        return self._cheapest.chat_bound(self._cheapest.frame_tokens(question), floor=True)

    def standard(self, question: str, passages: list[Passage]) -> Fit:
        """The configured model's standard form: what a query is when money is no concern."""
        return self._fitters[0].standard(question, passages)

    def smallest(self, question: str, passages: list[Passage]) -> Fit:
        """The cheapest model's smallest form (at the floors)."""
        return self._cheapest.smallest(question, passages)

    def best_within(self, question: str, passages: list[Passage], available: int) -> Fit | None:
        """The first model whose standard form's bound is at most ``available`` (a fallback's is
        ``degraded``: another model than the configured one answers), else the richest form of the
        cheapest model within it; None when even the floors do not fit."""
        for number, fitter in enumerate(self._fitters):
            form = fitter.standard(question, passages)
            if form.bound <= available:
                return form if number == 0 else replace(form, degraded=True)
        shrunk = self._cheapest.best_within(question, passages, available)
        if shrunk is not None and len(self._fitters) > 1:
            return replace(shrunk, degraded=True)  # on a fallback model: degraded however much it keeps
        return shrunk
