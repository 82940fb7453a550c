"""Chroma over HTTP: retrieval for queries and upserts for the ingester.

Importing ``chromadb`` is the heaviest import of the service (~1.5 s), so this module is only
imported when the first query builds the retriever, once per container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError, NotFoundError

from dnd_rag.errors import AttemptError, UpstreamError
from dnd_rag.models.domain import Passage

EMBEDDING_MODEL_KEY = "embedding_model"


def connect(host: str, port: int, ssl: bool, api_key: str | None, tenant: str, database: str) -> ClientAPI:
    headers = {"x-chroma-token": api_key} if api_key else None
    try:
        return chromadb.HttpClient(
            host=host,
            port=port,
            ssl=ssl,
            headers=headers,
            tenant=tenant,
            database=database,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
    except Exception as exc:  # the client validates tenant/database over the network
        raise _upstream("connect", exc) from None


class ChromaRetriever:
    """Reads one collection; checks it was built with the embedding model the queries use.

    Connects on first use (the client checks tenant and database over the network), so building
    the service never needs Chroma up, and a failed connection is retried by the next query.
    """

    def __init__(self, connect: Callable[[], ClientAPI], collection_name: str, embedding_model: str) -> None:
        self._connect = connect
        self._collection_name = collection_name
        self._embedding_model = embedding_model
        self._collection: Collection | None = None

    def _open(self, timeout_seconds: float) -> Collection:
        if self._collection is None:
            client = _within(self._connect, timeout_seconds)
            try:
                collection = client.get_collection(self._collection_name, embedding_function=None)
            except NotFoundError:
                raise UpstreamError(
                    "The rules index is not available.",
                    reason=f"chroma collection {self._collection_name!r} not found; run the ingester",
                ) from None
            except Exception as exc:
                raise _upstream("get_collection", exc) from None
            built_with = (collection.metadata or {}).get(EMBEDDING_MODEL_KEY)
            if built_with != self._embedding_model:
                raise UpstreamError(
                    "The rules index is not available.",
                    reason=f"chroma collection built with {built_with!r}, queries use "
                    f"{self._embedding_model!r}; re-run the ingester",
                )
            self._collection = collection
        return self._collection

    def search(self, vector: list[float], k: int, timeout_seconds: float) -> list[Passage]:
        collection = self._open(timeout_seconds)
        _bound_time(collection, timeout_seconds)
        try:
            queries: list[Sequence[float]] = [vector]
            result = collection.query(
                query_embeddings=queries, n_results=k, include=["documents", "metadatas", "distances"]
            )
        except httpx.TimeoutException:
            raise AttemptError("chroma query: timeout", billable=False, retryable=True) from None
        except Exception as exc:
            raise AttemptError(f"chroma query: {_kind(exc)}", billable=False, retryable=True) from None
        return _passages(result)


def _within(connect: Callable[[], ClientAPI], timeout_seconds: float) -> ClientAPI:
    """``connect()``, given up after ``timeout_seconds``: the client checks the tenant over HTTP
    while it is built, with no timeout of its own, so a Chroma that accepts and never answers
    would hold the request until Lambda kills it. (A connection given up on finishes in the
    background and is dropped; this happens at most once per container start.)"""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-connect")
    try:
        return pool.submit(connect).result(timeout=timeout_seconds)
    except FutureTimeout:
        raise AttemptError("chroma connect: timeout", billable=False, retryable=True) from None
    finally:
        pool.shutdown(wait=False)


def _bound_time(collection: Collection, timeout_seconds: float) -> None:
    """Give this call a timeout: chromadb's HTTP client has none of its own (it waits forever)."""
    server = getattr(getattr(collection, "_client", None), "_server", None)
    session = getattr(server, "_session", None) or getattr(getattr(collection, "_client", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_seconds)


def _passages(result: Any) -> list[Passage]:
    ids = result["ids"][0]
    documents = (result.get("documents") or [[]])[0]
    metadatas = (result.get("metadatas") or [[]])[0]
    distances = (result.get("distances") or [[]])[0]
    passages = []
    for chunk_id, text, metadata, distance in zip(ids, documents, metadatas, distances, strict=True):
        metadata = metadata or {}
        passages.append(
            Passage(
                id=chunk_id,
                text=text or "",
                source=str(metadata.get("source", "")),
                score=round(1.0 - float(distance), 6),
                title=str(metadata.get("title", "")),
            )
        )
    return passages


def open_for_writing(client: ClientAPI, name: str, embedding_model: str) -> Collection:
    """The collection to ingest into, created with cosine distance; rebuilt if another model built it."""
    try:
        existing = client.get_collection(name, embedding_function=None)
    except NotFoundError:
        existing = None
    if existing is not None and (existing.metadata or {}).get(EMBEDDING_MODEL_KEY) != embedding_model:
        client.delete_collection(name)
    return client.get_or_create_collection(
        name, metadata={"hnsw:space": "cosine", EMBEDDING_MODEL_KEY: embedding_model}, embedding_function=None
    )


def _kind(exc: Exception) -> str:
    return "ChromaError" if isinstance(exc, ChromaError) else type(exc).__name__


def _upstream(call: str, exc: Exception) -> UpstreamError:
    return UpstreamError(
        "The rules index is unavailable right now. Please retry.", reason=f"chroma {call}: {_kind(exc)}"
    )
