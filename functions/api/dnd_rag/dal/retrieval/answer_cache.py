"""The answer cache and the corpus versions in DynamoDB.

Items:
  CACHE#<sha256 key> / ANSWER   ``answer``, ``sources`` (JSON), ``model``, ``versions`` (collection ->
                                corpus version it was computed against), ``stored_at``, ``expires_at`` (TTL)
  CORPUS#<collection> / VERSION ``version`` (random, new at every ingest), ``stamped_at``; never expires

A lookup is one BatchGetItem of the entry, every searched collection's version and the user's
ledger, sent together with one Query of the day's budget shards (for ``daily_total`` on a hit:
exact, and unchanged by the hit): one sequential round trip. An entry is written
whole by one PutItem, so concurrent writers of the same key cannot mix their entries: the last
complete one wins.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

from dnd_rag.dal.dynamo import number, store_errors
from dnd_rag.dal.money.budget import DynamoBudgetStore, user_ledger_key
from dnd_rag.dal.money.user_budget import user_totals_from_item
from dnd_rag.errors import StoreUnavailableError
from dnd_rag.logic.common.concurrently import together
from dnd_rag.models.cache import UNSTAMPED, CachedAnswer, CacheRead
from dnd_rag.models.domain import Passage
from dnd_rag.observability import logger

UNPROCESSED_RETRIES = 3  # BatchGetItem may leave keys unprocessed under throttling: ask again, briefly
UNPROCESSED_WAIT_SECONDS = 0.02


def entry_key(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"CACHE#{key}"}, "sk": {"S": "ANSWER"}}


def version_key(collection: str) -> dict[str, Any]:
    return {"pk": {"S": f"CORPUS#{collection}"}, "sk": {"S": "VERSION"}}


def _id(item_key: dict[str, Any]) -> tuple[str, str]:
    return item_key["pk"]["S"], item_key["sk"]["S"]


def _passage_json(passage: Passage) -> dict[str, Any]:
    return {
        "id": passage.id,
        "source": passage.source,
        "score": passage.score,
        "title": passage.title,
        "collection": passage.collection,
        "page": passage.page,
    }


def _entry(item: dict[str, Any]) -> CachedAnswer | None:
    try:
        sources = [
            Passage(s["id"], "", s["source"], float(s["score"]), s["title"], s["collection"], s["page"])
            for s in json.loads(item["sources"]["S"])
        ]
        return CachedAnswer(
            text=item["answer"]["S"],
            sources=sources,
            model=item["model"]["S"],
            versions={name: value["S"] for name, value in item["versions"]["M"].items()},
            stored_at=float(item["stored_at"]["N"]),
            expires_at=float(item["expires_at"]["N"]),
        )
    except (KeyError, TypeError, ValueError) as exc:  # unreadable: a miss, whose answer replaces it
        logger.warning("unreadable answer cache entry ignored", extra={"reason": repr(exc)})
        return None


class DynamoAnswerCache:
    def __init__(self, client: Any, table_name: str, sleep: Any = time.sleep) -> None:
        self._client = client
        self._table = table_name
        self._sleep = sleep
        self._budget = DynamoBudgetStore(client, table_name)

    def read(self, key: str, collections: list[str], day: str, user_id: str) -> CacheRead:
        user_key = user_ledger_key(day, user_id)
        keys = [entry_key(key), *(version_key(c) for c in collections), user_key]
        items, totals = together(lambda: self._batch_get(keys), lambda: self._budget.read_totals(day))
        entry_item = items.get(_id(entry_key(key)))
        versions = {c: items.get(_id(version_key(c)), {}).get("version", {}).get("S", UNSTAMPED) for c in collections}
        user = user_totals_from_item(items.get(_id(user_key)))
        return CacheRead(_entry(entry_item) if entry_item else None, versions, totals, user)

    def _batch_get(self, keys: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(UNPROCESSED_RETRIES + 1):
            with store_errors("BatchGetItem answer cache"):
                response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._table, []):
                found[_id(item)] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            if attempt < UNPROCESSED_RETRIES:
                self._sleep(UNPROCESSED_WAIT_SECONDS * 2**attempt)
        raise StoreUnavailableError(
            "The service is temporarily unavailable. Please retry shortly.",
            retry_after=5,
            reason="dynamodb BatchGetItem answer cache: keys left unprocessed",
        )

    def put(self, key: str, entry: CachedAnswer) -> None:
        item = {
            **entry_key(key),
            "answer": {"S": entry.text},
            "sources": {"S": json.dumps([_passage_json(p) for p in entry.sources], ensure_ascii=False)},
            "model": {"S": entry.model},
            "versions": {"M": {name: {"S": version} for name, version in entry.versions.items()}},
            "stored_at": number(math.floor(entry.stored_at)),
            "expires_at": number(math.ceil(entry.expires_at)),
        }
        with store_errors("PutItem answer cache"):
            self._client.put_item(TableName=self._table, Item=item)


class DynamoCorpusVersions:
    """The version of each collection's corpus, stamped by the ingest CLI after a successful run."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def stamp(self, collection: str, now: float) -> str:
        """A new random version for ``collection``: every cached answer computed against it goes stale."""
        version = uuid.uuid4().hex
        with store_errors("PutItem corpus version"):
            self._client.put_item(
                TableName=self._table,
                Item={**version_key(collection), "version": {"S": version}, "stamped_at": number(now)},
            )
        return version
