"""The interfaces the logic needs from the outside world; providers and the DAL implement them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from dnd_rag.models.domain import Embedding, Generation, Passage, User

if TYPE_CHECKING:
    from dnd_rag.logic.rate_limit import BucketState, Policy, Shape


class Embedder(Protocol):
    model: str

    def embed(self, texts: list[str]) -> Embedding: ...


class Retriever(Protocol):
    def search(self, vector: list[float], k: int) -> list[Passage]: ...


class Generator(Protocol):
    model: str

    def generate(self, question: str, passages: list[Passage]) -> Generation: ...


class AuthApi(Protocol):
    def fetch_user(self, token: str) -> User | None:
        """The user for ``token``; None when the auth API rejects it (401/403).

        Raises AuthUnavailableError when the auth API cannot answer."""
        ...


class SharedTokenCache(Protocol):
    """The cross-container cache of validation results, keyed by the token's SHA-256."""

    def get(self, token_hash: str, now: float) -> tuple[User | None] | None:
        """``None`` on a miss; ``(user,)`` on a hit, where ``user`` is None for a cached rejection."""
        ...

    def put(self, token_hash: str, user: User | None, expires_at: float) -> None: ...


class LimitStore(Protocol):
    """Rate-limit state per key; every consuming write is one conditional update."""

    def try_consume(self, key: str, shape: Shape, policy: Policy, now: float) -> tuple[bool, BucketState | None]:
        """Attempt the write ``shape`` describes: (True, new state) or (False, state as found)."""
        ...

    def refund(self, key: str, day: str, interval_ms: int) -> None: ...

    def read(self, key: str) -> BucketState | None: ...
