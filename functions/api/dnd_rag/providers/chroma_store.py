"""Chroma over HTTP: retrieval for queries and upserts for the ingester.

Importing ``chromadb`` is the heaviest import of the service (~1.5 s), so this module is only
imported when the first query builds the retriever, once per container.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError, NotFoundError

from dnd_rag.errors import AttemptError, UpstreamError
from dnd_rag.logic.retrieval.chunk_metadata import first_text, page, section
from dnd_rag.models.domain import Passage
from dnd_rag.observability import logger
from dnd_rag.providers.chroma_space import DEFAULT_SPACE, SPACES, cosine, is_unit, norm, score
from dnd_rag.settings import DEFAULT_PAGE_KEYS, DEFAULT_SOURCE_KEYS, DEFAULT_TITLE_KEYS

EMBEDDING_MODEL_KEY = "embedding_model"
SAMPLE_SIZE = 8  # stored vectors read on first use: their dimension and whether they are unit-norm
OVERFETCH = 3  # non-unit-norm collections: candidates per wanted passage, re-ranked by cosine
MAX_CANDIDATES = 150


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


@dataclass(frozen=True)
class MetadataKeys:
    """Which metadata keys hold a chunk's file, section and page; the first key present wins."""

    source: tuple[str, ...] = DEFAULT_SOURCE_KEYS
    title: tuple[str, ...] = DEFAULT_TITLE_KEYS
    page: tuple[str, ...] = DEFAULT_PAGE_KEYS


@dataclass
class _Opened:
    """A collection checked for use: its distance space, and how its scores are computed."""

    collection: Collection
    space: str
    dimension: int | None = None  # None until a vector was seen (an empty collection)
    unit_norm: bool = True  # False: fetch result vectors for exact cosine scores


class ChromaRetriever:
    """Searches one or several collections together and scores every hit as a cosine similarity.

    Collections may come from any pipeline: one built by our ingester carries the embedding model
    it used (checked by name); any other one is checked on first use by the dimension of its
    vectors against the query's (a mismatch is a clear error naming the collection). Connects on
    first use, so building the service never needs Chroma up, and a failed connection is retried
    by the next query.
    """

    def __init__(
        self,
        connect: Callable[[], ClientAPI],
        collection_names: Sequence[str],
        embedding_model: str,
        keys: MetadataKeys | None = None,
    ) -> None:
        self._connect = connect
        self._names = list(collection_names)
        self._embedding_model = embedding_model
        self._keys = keys or MetadataKeys()
        self._client: ClientAPI | None = None
        self._opened: dict[str, _Opened] = {}

    def search(self, vectors: list[list[float]], k: int, timeout_seconds: float) -> list[list[Passage]]:
        """For each query vector, its ``k`` best passages over every collection, best first."""
        ends_at = time.monotonic() + timeout_seconds
        hits: list[list[Passage]] = [[] for _ in vectors]
        for name in self._names:
            remaining = ends_at - time.monotonic()
            if remaining <= 0:
                raise AttemptError("chroma query: timeout", billable=False, retryable=True)
            opened = self._open(name, vectors[0], remaining)
            results = self._query(name, opened, vectors, k, ends_at - time.monotonic())
            for found, more in zip(hits, results, strict=True):
                found.extend(more)
        return [sorted(found, key=lambda p: -p.score)[:k] for found in hits]

    def _open(self, name: str, probe: list[float], timeout_seconds: float) -> _Opened:
        opened = self._opened.get(name)
        if opened is None:
            if self._client is None:
                self._client = _within(self._connect, timeout_seconds)
            try:
                collection = self._client.get_collection(name, embedding_function=None)
            except NotFoundError:
                raise UpstreamError(
                    f"The rules index {name!r} is not available.",
                    reason=f"chroma collection {name!r} not found; run the ingester or fix CHROMA_COLLECTIONS",
                ) from None
            except Exception as exc:
                raise _upstream("get_collection", exc) from None
            metadata = collection.metadata or {}
            built_with = metadata.get(EMBEDDING_MODEL_KEY)
            if built_with is not None and built_with != self._embedding_model:
                raise _mismatch(name, f"built with {built_with!r}, queries use {self._embedding_model!r}")
            opened = _Opened(collection, _space(collection))
            self._opened[name] = opened
        if opened.dimension is None:
            self._check_vectors(name, opened, len(probe), timeout_seconds)
        return opened

    def _check_vectors(self, name: str, opened: _Opened, dimension: int, timeout_seconds: float) -> None:
        """First use: the stored vectors' dimension must be the query's; are they unit-norm?"""
        _bound_time(opened.collection, timeout_seconds)
        try:
            sample = opened.collection.get(limit=SAMPLE_SIZE, include=["embeddings"])
        except Exception as exc:
            raise AttemptError(f"chroma sample: {_kind(exc)}", billable=False, retryable=True) from None
        embeddings = sample.get("embeddings")  # a numpy array from chromadb: no truth value
        stored = [[float(x) for x in vector] for vector in (embeddings if embeddings is not None else [])]
        if not stored:
            return  # empty: nothing to serve and nothing to check yet; checked again next time
        if len(stored[0]) != dimension:
            raise _mismatch(
                name, f"holds {len(stored[0])}-dimensional vectors, {self._embedding_model!r} makes {dimension}"
            )
        opened.dimension = dimension
        opened.unit_norm = opened.space == "cosine" or is_unit(stored)
        logger.info(
            "chroma collection ready",
            extra={"collection": name, "space": opened.space, "dimension": dimension, "unit_norm": opened.unit_norm},
        )

    def _query(
        self, name: str, opened: _Opened, vectors: list[list[float]], k: int, timeout_seconds: float
    ) -> list[list[Passage]]:
        if timeout_seconds <= 0:
            raise AttemptError("chroma query: timeout", billable=False, retryable=True)
        _bound_time(opened.collection, timeout_seconds)
        include: list[Any] = ["documents", "metadatas", "distances"]
        n_results = k
        if not opened.unit_norm:
            # Exact cosine needs each hit's vector; and since l2/ip order long vectors differently
            # from cosine, a wider candidate set is re-ranked by cosine (search keeps the best k).
            include.append("embeddings")
            n_results = min(k * OVERFETCH, MAX_CANDIDATES)
        try:
            queries: list[Sequence[float]] = list(vectors)
            result = opened.collection.query(query_embeddings=queries, n_results=n_results, include=include)
        except httpx.TimeoutException:
            raise AttemptError("chroma query: timeout", billable=False, retryable=True) from None
        except Exception as exc:
            raise AttemptError(f"chroma query: {_kind(exc)}", billable=False, retryable=True) from None
        return [self._passages(name, opened, result, row, vector) for row, vector in enumerate(vectors)]

    def _passages(self, name: str, opened: _Opened, result: Any, row: int, vector: list[float]) -> list[Passage]:
        ids = result["ids"][row]
        documents = _column(result, "documents", row, len(ids))
        metadatas = _column(result, "metadatas", row, len(ids))
        distances = _column(result, "distances", row, len(ids))
        embeddings = _column(result, "embeddings", row, len(ids))
        query_norm = norm(vector)
        passages = []
        for chunk_id, text, metadata, distance, stored in zip(
            ids, documents, metadatas, distances, embeddings, strict=True
        ):
            stored_norm = 1.0 if stored is None else norm([float(x) for x in stored])
            similarity = cosine(opened.space, float(distance), query_norm, stored_norm)
            passages.append(self._passage(name, chunk_id, text, metadata or {}, score(similarity)))
        return passages

    def _passage(self, name: str, chunk_id: str, text: str | None, metadata: Any, value: float) -> Passage:
        return Passage(
            id=chunk_id,
            text=text or "",
            source=first_text(metadata, self._keys.source) or name,
            score=value,
            title=section(metadata, self._keys.title),
            collection=name,
            page=page(metadata, self._keys.page),
        )


def _column(result: Any, key: str, row: int, size: int) -> list[Any]:
    column = result.get(key) if hasattr(result, "get") else None
    if column is None or len(column) <= row or column[row] is None:
        return [None] * size
    return list(column[row])


def _space(collection: Collection) -> str:
    """The collection's distance space: legacy ``hnsw:space`` metadata, else its configuration."""
    space = (collection.metadata or {}).get("hnsw:space")
    if space is None:
        configuration = collection.configuration_json or {}
        for index in ("hnsw", "spann"):
            section = configuration.get(index) or {}
            if section.get("space"):
                space = section["space"]
                break
    space = str(space or DEFAULT_SPACE)
    if space not in SPACES:
        raise UpstreamError(
            f"The rules index {collection.name!r} is not available.",
            reason=f"chroma collection {collection.name!r} uses distance space {space!r}",
        )
    return space


def _mismatch(name: str, why: str) -> UpstreamError:
    logger.error("chroma collection does not match the embedding model", extra={"collection": name, "why": why})
    return UpstreamError(
        f"The rules index {name!r} does not match the configured embedding model.",
        reason=f"chroma collection {name!r} {why}",
    )


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


class ForeignCollectionError(Exception):
    """The ingester was pointed at a collection another pipeline built: never overwrite it."""


def open_for_writing(client: ClientAPI, name: str, embedding_model: str) -> Collection:
    """The collection to ingest into, created with cosine distance and stamped with the model that
    embeds it; rebuilt if we built it with another model; refused if another pipeline built it."""
    try:
        existing = client.get_collection(name, embedding_function=None)
    except NotFoundError:
        existing = None
    if existing is not None:
        built_with = (existing.metadata or {}).get(EMBEDDING_MODEL_KEY)
        if built_with is None and existing.count() > 0:
            raise ForeignCollectionError(
                f"collection {name!r} was built by another pipeline (no {EMBEDDING_MODEL_KEY!r} metadata); "
                "it is served as it is: ingest into another collection"
            )
        if built_with != embedding_model:
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
