"""The answer cache (SPEC §4): an identical question is answered again at no cost and no budget.

"Identical" is the normalised question (Unicode NFKC, case folded, whitespace collapsed) with
the same ``k``, chat and embedding models, prompt version, completion cap, entity step and
searched collections: all of it hashed into the key. The corpus versions are not in the key but
in the entry, and the lookup reads the current ones in the same round trip: an entry computed
against another version of any collection (the ingest CLI stamps a new one) is a miss, and the
miss's answer then replaces it under the same key. DynamoDB's TTL deletion is lazy, so the
expiry is checked here as well.

A cache failure never fails a query: a read that fails is a miss (and nothing is stored, the
versions being unknown), a write that fails is logged and counted.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dnd_rag.logic.common.clock import iso, utc_day
from dnd_rag.logic.ports import AnswerCacheStore
from dnd_rag.models.cache import CachedAnswer, CacheRead
from dnd_rag.models.domain import Passage
from dnd_rag.observability import logger, metrics


def normalise(question: str) -> str:
    """The question as the cache compares it: NFKC, case folded, whitespace collapsed and trimmed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", question).casefold())
    return " ".join(folded.split())


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the question and ``k`` that changes an answer, and so is in the key."""

    chat_model: str
    embedding_model: str
    prompt_version: str
    max_completion_tokens: int
    entity_queries: bool
    collections: tuple[str, ...]
    reasoning_effort: str | None = None  # a reasoning model's effort (None for other models)


def cache_key(question: str, k: int, scope: CacheScope) -> str:
    parts = [
        normalise(question),
        k,
        scope.chat_model,
        scope.embedding_model,
        scope.prompt_version,
        scope.max_completion_tokens,
        scope.entity_queries,
        sorted(scope.collections),
    ]
    if scope.reasoning_effort is not None:  # only then: the keys of other models stay as they were
        parts.append(scope.reasoning_effort)
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Lookup:
    key: str
    read: CacheRead | None  # None when the read failed: a miss that stores nothing
    hit: CachedAnswer | None


class AnswerCache:
    def __init__(
        self, store: AnswerCacheStore, scope: CacheScope, ttl_seconds: int, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._scope = scope
        self._ttl = ttl_seconds
        self._clock = clock

    def look_up(self, question: str, k: int, user_id: str) -> Lookup:
        """The entry for this question if it is current; never raises (a failed read is a miss)."""
        key = cache_key(question, k, self._scope)
        now = self._clock()
        try:
            read = self._store.read(key, sorted(self._scope.collections), utc_day(now), user_id)
        except Exception as exc:  # an optimisation must never fail the query
            metrics.add_metric(name="AnswerCacheReadFailed", unit="Count", value=1)
            logger.warning("answer cache read failed; answering without it", extra={"reason": str(exc)})
            return Lookup(key, None, None)
        entry = read.entry
        current = entry is not None and entry.versions == read.versions and entry.expires_at > now
        return Lookup(key, read, entry if current else None)

    def remember(self, lookup: Lookup, text: str, passages: list[Passage], model: str) -> None:
        """Store a computed answer under the lookup's key, stamped with the versions it read."""
        if lookup.read is None:
            return
        now = self._clock()
        sources = [Passage(p.id, "", p.source, p.score, p.title, p.collection, p.page) for p in passages]
        entry = CachedAnswer(text, sources, model, dict(lookup.read.versions), now, now + self._ttl)
        try:
            self._store.put(lookup.key, entry)
        except Exception as exc:  # the answer is paid for: deliver it whatever happens here
            metrics.add_metric(name="AnswerCacheWriteFailed", unit="Count", value=1)
            logger.warning("answer cache write failed; the answer is delivered", extra={"reason": str(exc)})

    def diagnostics(self, entry: CachedAnswer) -> list[dict[str, Any]]:
        """What a ``debug`` hit reports: this request only (nothing of the request that computed it)."""
        return [
            {
                "stage": "cache",
                "result": "hit",
                "stored_at": iso(entry.stored_at),
                "age_seconds": round(max(0.0, self._clock() - entry.stored_at), 1),
                "expires_at": iso(entry.expires_at),
            }
        ]
