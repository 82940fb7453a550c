"""Offline providers: deterministic embeddings and an extractive answerer, with no downloads.

They let the whole stack run without an OpenAI key. The embedding is feature hashing of content
words and word pairs; the answerer quotes the retrieved sentences that best match the question.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter

from dnd_rag.logic.retrieval.entities import comparison_entities
from dnd_rag.logic.retrieval.text import count_tokens, sentences, terms
from dnd_rag.models.domain import Embedding, Generation, Passage, Prompt

OFFLINE_EMBEDDING_MODEL = "offline-hash-384"
OFFLINE_CHAT_MODEL = "offline-extractive"
DIMENSIONS = 384
_PAIR_WEIGHT = 0.5


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSIONS, 1.0 if (value >> 32) & 1 else -1.0


def hash_embedding(text: str) -> list[float]:
    """A unit vector: sublinear term counts of words and adjacent word pairs, hashed into 384 slots."""
    words = terms(text)
    features: dict[str, float] = dict(Counter(words))
    for pair in itertools.pairwise(words):
        features[f"{pair[0]}_{pair[1]}"] = features.get(f"{pair[0]}_{pair[1]}", 0.0) + _PAIR_WEIGHT
    vector = [0.0] * DIMENSIONS
    for feature, count in features.items():
        slot, sign = _bucket(feature)
        vector[slot] += sign * (1.0 + math.log(count)) if count >= 1 else sign * count
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class OfflineEmbedder:
    model = OFFLINE_EMBEDDING_MODEL

    def embed(self, texts: list[str], timeout_seconds: float = 0) -> Embedding:
        return Embedding(
            vectors=[hash_embedding(text) for text in texts],
            tokens=sum(count_tokens(text) for text in texts),
            model=self.model,
        )


class ExtractiveGenerator:
    """Answers by quoting the best-matching sentences, covering each of the top sources and, for a
    comparison question, each entity it names."""

    model = OFFLINE_CHAT_MODEL

    def __init__(self, max_sentences: int = 4, sources_covered: int = 3) -> None:
        self._max_sentences = max_sentences
        self._sources_covered = sources_covered

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """The offline model reads words and punctuation; that is what it reports and is charged."""
        return sum(count_tokens(message["content"]) for message in messages)

    def generate(self, prompt: Prompt, max_completion_tokens: int, timeout_seconds: float = 0) -> Generation:
        chosen = self._choose(prompt.question, prompt.passages)
        if chosen:
            answer = "From the rules: " + " ".join(f"{text} [{ref}]" for text, ref in chosen)
        else:
            answer = "I could not find that in the rules I have."
        answer = self._truncate(answer, max_completion_tokens)
        return Generation(answer, self.prompt_tokens(prompt.messages), count_tokens(answer), self.model)

    def _choose(self, question: str, passages: list[Passage]) -> list[tuple[str, int]]:
        wanted = set(terms(question))
        scored: list[tuple[float, int, int, str]] = []  # (score, passage rank, order, sentence)
        for rank, passage in enumerate(passages):
            for order, sentence in enumerate(sentences(passage.text)):
                overlap = wanted & set(terms(sentence))
                if overlap:
                    scored.append((len(overlap) + passage.score, rank, order, sentence))
        scored.sort(key=lambda item: (-item[0], item[1], item[2]))
        picked: list[tuple[float, int, int, str]] = []
        for entity in comparison_entities(question):  # a comparison quotes every side of it
            named = set(terms(entity))
            best = next((item for item in scored if named <= set(terms(item[3])) and item not in picked), None)
            if best is not None:
                picked.append(best)
        limit = max(self._max_sentences, len(picked) + 1)
        covered: set[int] = {item[1] for item in picked}
        for item in scored:  # the best sentence of each of the best sources first ...
            if item[1] not in covered and len(covered) < self._sources_covered:
                covered.add(item[1])
                picked.append(item)
        for item in scored:  # ... then the best remaining sentences overall
            if len(picked) >= limit:
                break
            if item not in picked:
                picked.append(item)
        picked = picked[:limit]
        picked.sort(key=lambda item: (-item[0], item[1], item[2]))
        return [(sentence, rank + 1) for _, rank, _, sentence in picked]

    def _truncate(self, answer: str, max_tokens: int) -> str:
        """Never write more than the completion cap, like a real model's ``max_completion_tokens``."""
        if count_tokens(answer) <= max_tokens:
            return answer
        words = answer.split()
        while words and count_tokens(" ".join(words)) > max_tokens:
            words.pop()
        return " ".join(words)
