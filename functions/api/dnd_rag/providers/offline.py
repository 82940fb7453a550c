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

# The name says how vectors are made: a collection built by another version is rebuilt by the
# ingester (make dev) or refused by the retriever, never searched with incomparable vectors.
OFFLINE_EMBEDDING_MODEL = "offline-hash-1024"
OFFLINE_CHAT_MODEL = "offline-extractive"
DIMENSIONS = 1024  # few hash collisions: a one-word question must not land on a frequent word's slot
_PAIR_WEIGHT = 0.5
# What a rules question asks (a level, points, a range) rather than what it is about: every entry
# of a rules book uses these words, so a passage that shares only them is not about the question.
# They weigh this much of another word as long; names (a monster, a class, a spell) carry the
# similarity, which is what lets the relevance gate (logic/retrieval/relevance.py) tell a question
# about something the corpus lacks ("hit points of a Glimmerwight") from one it covers.
_ATTRIBUTE_WEIGHT = 0.4
RULES_ATTRIBUTES = frozenset(
    """level experience point hit armor class range damage attack round turn roll bonus save
    saving throw ability score feet minute hour duration need reach become gain work difference rule
    cost speed move action effect target""".split()  # noqa: SIM905 - a word list reads better as text
)


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSIONS, 1.0 if (value >> 32) & 1 else -1.0


def _weight(word: str) -> float:
    """Longer words are rarer and say more (a cheap stand-in for inverse document frequency); the
    square root keeps a short word that matters ("cold", "red") from vanishing beside long ones."""
    return math.sqrt(len(word)) * (_ATTRIBUTE_WEIGHT if word in RULES_ATTRIBUTES else 1.0)


def hash_embedding(text: str) -> list[float]:
    """A unit vector: sublinear counts of words and adjacent word pairs, each weighted by
    ``_weight``, hashed into 1024 signed slots."""
    words = terms(text)
    features: dict[str, float] = {
        word: (1.0 + math.log(count)) * _weight(word) for word, count in Counter(words).items()
    }
    for (first, second), count in Counter(itertools.pairwise(words)).items():
        features[f"{first}_{second}"] = _PAIR_WEIGHT * (1.0 + math.log(count)) * min(_weight(first), _weight(second))
    vector = [0.0] * DIMENSIONS
    for feature, value in features.items():
        slot, sign = _bucket(feature)
        vector[slot] += sign * value
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
