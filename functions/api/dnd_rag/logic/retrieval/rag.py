"""The question-answering steps: embed and retrieve, then generate; each paid call on a tab."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dnd_rag.errors import AttemptError, UpstreamError
from dnd_rag.logic.common.clock import Deadline
from dnd_rag.logic.money.fitting import Fit
from dnd_rag.logic.money.spending import PaidCall, PaidCalls, Tab
from dnd_rag.logic.ports import Embedder, Generator, Retriever
from dnd_rag.logic.retrieval.entities import choose, comparison_entities
from dnd_rag.logic.retrieval.prompt import embedding_token_bound
from dnd_rag.models.domain import Embedding, Generation, Passage, Prompt
from dnd_rag.observability import logger, metrics
from dnd_rag.pricing import PriceBook, TokenUsage

RETRIEVAL_ATTEMPTS = 2
# A reasoning model that spends the whole completion cap thinking returns an empty answer, billed
# in full. It is asked once more with twice the cap (never more than this: the most
# MAX_COMPLETION_TOKENS itself may be), if the budget covers that second attempt as well.
EMPTY_ANSWER_RETRY_FACTOR = 2
EMPTY_ANSWER_RETRY_MAX_TOKENS = 16384


@dataclass(frozen=True)
class Retrieval:
    passages: list[Passage]
    embedding_model: str
    timings: dict[str, float] = field(default_factory=dict)
    entities: list[str] = field(default_factory=list)  # the entities a comparison question named
    via: dict[tuple[str, str], str] = field(default_factory=dict)  # passage key -> the query that found it


@dataclass(frozen=True)
class Answer:
    text: str
    passages: list[Passage]
    usage: TokenUsage
    model: str
    cost_nanos: int
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answered: bool = True  # False: the relevance gate found nothing to answer from (no chat call)


class _RetryNotCoveredError(Exception):
    """The budget refused to cover an attempt of the empty answer's retry."""


def reasoned_to_nothing(generation: Generation) -> bool:
    """A reasoning model spent the whole completion cap thinking: no answer, but every token billed."""
    return not generation.answer and generation.truncated and generation.reasoning_tokens > 0


class RagService:
    def __init__(
        self,
        embedder: Embedder,
        retriever: Retriever,
        generator: Generator,
        prices: PriceBook,
        paid_calls: PaidCalls,
        timeout_seconds: float,
        retrieval_timeout_seconds: float,
        entity_queries: bool = True,
        fallbacks: Sequence[tuple[Generator, PriceBook]] = (),
    ) -> None:
        self._embedder = embedder
        self._retriever = retriever
        self.generator = generator
        self._prices = prices
        # every model of the ladder (OPENAI_MODEL_FALLBACKS): its generator and its prices, by the
        # model a Fit is priced for
        self._chat = {prices.chat_model: (generator, prices)}
        self._chat.update({book.chat_model: (fallback, book) for fallback, book in fallbacks})
        self._paid = paid_calls
        self._timeout = timeout_seconds
        self._retrieval_timeout = retrieval_timeout_seconds
        self._entity_queries = entity_queries

    def entities(self, question: str) -> list[str]:
        return comparison_entities(question) if self._entity_queries else []

    def embedding_bound(self, question: str) -> int:
        """The most the one embeddings call for ``question`` (and the entities it names) can be billed."""
        texts = [question, *self.entities(question)]
        return self._prices.cost_nanos(TokenUsage(embedding_tokens=sum(embedding_token_bound(t) for t in texts)))

    def retrieve(
        self, question: str, k: int, deadline: Deadline, tab: Tab, not_covered: Callable[[], Exception]
    ) -> Retrieval:
        started = time.perf_counter()
        entities = self.entities(question)
        texts = [question, *entities]  # one paid call embeds the question and every entity it names
        call = PaidCall("embeddings", self.embedding_bound(question), self._timeout)
        embedding: Embedding = self._paid.run(
            tab,
            call,
            lambda timeout: self._embedder.embed(texts, timeout),
            lambda result: (
                self._prices.cost_nanos(TokenUsage(embedding_tokens=result.tokens)),
                TokenUsage(embedding_tokens=result.tokens),
            ),
            deadline,
            not_covered,
        )
        embedded = time.perf_counter()
        if len(embedding.vectors) != len(texts):
            raise UpstreamError(
                "The embedding service is unavailable right now. Please retry.",
                reason=f"embeddings: {len(embedding.vectors)} vectors for {len(texts)} texts",
            )
        hits = self._search(embedding.vectors, k, deadline)
        choice = choose(hits[0], dict(zip(entities, hits[1:], strict=True)), k)
        timings = {"embed_ms": _ms(embedded - started), "retrieve_ms": _ms(time.perf_counter() - embedded)}
        return Retrieval(choice.passages, embedding.model, timings, entities, choice.via)

    def _search(self, vectors: list[list[float]], k: int, deadline: Deadline) -> list[list[Passage]]:
        """Chroma costs nothing per call: plain bounded retries, each inside the deadline."""
        for attempt in range(1, RETRIEVAL_ATTEMPTS + 1):
            timeout = min(self._retrieval_timeout, deadline.remaining())
            if timeout <= 0:
                break
            try:
                return self._retriever.search(vectors, k, timeout)
            except AttemptError as failure:
                logger.warning("retrieval attempt failed", extra={"attempt": attempt, "reason": failure.reason})
                if not failure.retryable or attempt == RETRIEVAL_ATTEMPTS:
                    raise UpstreamError(
                        "The rules index is unavailable right now. Please retry.", reason=failure.reason
                    ) from None
        raise UpstreamError("The rules index is unavailable right now. Please retry.", reason="chroma: deadline")

    def generate(self, fit: Fit, deadline: Deadline, tab: Tab, not_covered: Callable[[], Exception]) -> Generation:
        """The chat completion of ``fit``, on the model it was fitted for. An answer a reasoning
        model cut to nothing is asked again once, with a larger cap, if the budget covers it."""
        generator, prices = self._chat.get(fit.model, (self.generator, self._prices))
        generation = self._chat_call(
            generator, prices, fit.prompt, fit.max_completion_tokens, fit.bound, deadline, tab, not_covered
        )
        if not reasoned_to_nothing(generation):
            return generation
        return self._retry_larger(generator, prices, fit, generation, deadline, tab)

    def _chat_call(
        self,
        generator: Generator,
        prices: PriceBook,
        prompt: Prompt,
        cap: int,
        bound: int,
        deadline: Deadline,
        tab: Tab,
        not_covered: Callable[[], Exception],
    ) -> Generation:
        generation: Generation = self._paid.run(
            tab,
            PaidCall("chat completion", bound, self._timeout),
            lambda timeout: generator.generate(prompt, cap, timeout),
            lambda result: (prices.cost_nanos(result.usage), result.usage),
            deadline,
            not_covered,
        )
        return generation

    def _retry_larger(
        self, generator: Generator, prices: PriceBook, fit: Fit, first: Generation, deadline: Deadline, tab: Tab
    ) -> Generation:
        """The second (and last) attempt at an answer reasoning ate whole: twice the cap, through the
        same hold grown first; both attempts stay on the books. When the budget will not grow the hold,
        or the attempt fails, the empty first answer is returned with an ``errors`` entry saying so."""
        cap = min(fit.max_completion_tokens * EMPTY_ANSWER_RETRY_FACTOR, EMPTY_ANSWER_RETRY_MAX_TOKENS)
        cut = fit.max_completion_tokens
        spent = f"The model spent the whole answer length ({cut} tokens) reasoning and wrote no answer"
        if cap <= fit.max_completion_tokens:
            return replace(first, errors=(f"{spent}.",))
        bound = prices.cost_nanos(TokenUsage(prompt_tokens=fit.prompt_tokens, completion_tokens=cap))
        if not tab.cover(bound):
            metrics.add_metric(name="EmptyAnswerNotRetried", unit="Count", value=1)
            return replace(first, errors=(f"{spent}; the budget left does not cover asking again with {cap} tokens.",))
        metrics.add_metric(name="EmptyAnswerRetried", unit="Count", value=1)
        logger.info("retrying an answer reasoning cut to nothing", extra={"cap": cut, "retry_cap": cap})
        try:
            second = self._chat_call(generator, prices, fit.prompt, cap, bound, deadline, tab, _RetryNotCoveredError)
        except (UpstreamError, _RetryNotCoveredError):
            return replace(first, errors=(f"{spent}; asking again with {cap} tokens failed.",))
        if reasoned_to_nothing(second):
            return replace(second, errors=(f"{spent}, nor with {cap} tokens when asked again.",))
        return second


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def diagnostics(
    retrieval: Retrieval, fit: Fit, usage: TokenUsage, generate_ms: float, reserved: int
) -> list[dict[str, Any]]:
    return [
        {
            "stage": "retrieval",
            "embedding_model": retrieval.embedding_model,
            # how the passages were chosen: one query for the question, one per entity it compares
            "queries": ["question", *(f"entity: {entity}" for entity in retrieval.entities)],
            "passages": [
                {
                    "rank": n,
                    "id": p.id,
                    "collection": p.collection,
                    "source": p.source,
                    "page": p.page,
                    "score": round(p.score, 4),
                    "via": retrieval.via.get(p.key, "question"),
                }
                for n, p in enumerate(retrieval.passages, start=1)
            ],
        },
        {
            "stage": "budget",
            "passages_used": len(fit.passages),
            "max_completion_tokens": fit.max_completion_tokens,
            "prompt_tokens_counted": fit.prompt_tokens,
            "reserved_nanos": reserved,
        },
        {
            "stage": "tokens",
            "prompt": usage.prompt_tokens,
            "cached_prompt": usage.cached_tokens,
            "completion": usage.completion_tokens,
            "reasoning": usage.reasoning_tokens,
            "embedding": usage.embedding_tokens,
        },
        {"stage": "timings", **retrieval.timings, "generate_ms": generate_ms},
    ]
