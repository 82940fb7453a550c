"""The question-answering use case: embed, retrieve, generate, price."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dnd_rag.logic.clock import Deadline
from dnd_rag.logic.ports import Embedder, Generator, Retriever
from dnd_rag.models.domain import Passage
from dnd_rag.pricing import PriceBook, TokenUsage, nanos_to_usd


@dataclass(frozen=True)
class Answer:
    text: str
    passages: list[Passage]
    usage: TokenUsage
    model: str
    cost_nanos: int
    diagnostics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)


class RagService:
    def __init__(self, embedder: Embedder, retriever: Retriever, generator: Generator, prices: PriceBook) -> None:
        self._embedder = embedder
        self._retriever = retriever
        self._generator = generator
        self._prices = prices

    def answer(self, question: str, k: int, debug: bool = False, deadline: Deadline | None = None) -> Answer:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        embedding = self._embedder.embed([question], deadline)
        timings["embed_ms"] = _elapsed_ms(started)

        started = time.perf_counter()
        passages = self._retriever.search(embedding.vectors[0], k)
        timings["retrieve_ms"] = _elapsed_ms(started)

        started = time.perf_counter()
        generation = self._generator.generate(question, passages, deadline)
        timings["generate_ms"] = _elapsed_ms(started)

        usage = TokenUsage(generation.prompt_tokens, generation.completion_tokens, embedding.tokens)
        diagnostics = _diagnostics(passages, usage, timings, embedding.model) if debug else []
        return Answer(generation.answer, passages, usage, generation.model, self._prices.cost_nanos(usage), diagnostics)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _diagnostics(
    passages: list[Passage], usage: TokenUsage, timings: dict[str, float], embedding_model: str
) -> list[dict[str, Any]]:
    return [
        {
            "stage": "retrieval",
            "embedding_model": embedding_model,
            "passages": [
                {"rank": n, "id": p.id, "source": p.source, "score": round(p.score, 4)}
                for n, p in enumerate(passages, start=1)
            ],
        },
        {
            "stage": "tokens",
            "prompt": usage.prompt_tokens,
            "completion": usage.completion_tokens,
            "embedding": usage.embedding_tokens,
        },
        {"stage": "timings", **timings},
    ]
