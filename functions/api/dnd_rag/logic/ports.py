"""The interfaces the logic needs from the outside world; providers and the DAL implement them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dnd_rag.models.domain import Embedding, Generation, Passage, User

if TYPE_CHECKING:
    from dnd_rag.logic.budget import BudgetTotals, Charge
    from dnd_rag.logic.clock import Deadline
    from dnd_rag.logic.rate_limit import BucketState, Policy, Shape


class Embedder(Protocol):
    model: str

    def embed(self, texts: list[str], deadline: Deadline | None = None) -> Embedding: ...


class Retriever(Protocol):
    def search(self, vector: list[float], k: int) -> list[Passage]: ...


class Generator(Protocol):
    model: str

    def generate(self, question: str, passages: list[Passage], deadline: Deadline | None = None) -> Generation: ...


class AuthApi(Protocol):
    def fetch_user(self, token: str) -> User | None:
        """The user for ``token``; None when the auth API rejects it (401/403).

        Raises AuthUnavailableError when the auth API cannot answer."""
        ...


class SharedTokenCache(Protocol):
    """The cross-container cache of validation results, keyed by the token's SHA-256."""

    def get(self, token_hash: str, now: float) -> tuple[User | None, float] | None:
        """``None`` on a miss; ``(user, expires_at)`` on a hit, ``user`` None for a cached rejection."""
        ...

    def put(self, token_hash: str, user: User | None, expires_at: float) -> None: ...


class LimitStore(Protocol):
    """Rate-limit state per key; every consuming write is one conditional update."""

    def try_consume(self, key: str, shape: Shape, policy: Policy, now: float) -> tuple[bool, BucketState | None]:
        """Attempt the write ``shape`` describes: (True, new state) or (False, state as found)."""
        ...

    def refund(self, key: str, day: str, interval_ms: int) -> None: ...

    def read(self, key: str) -> BucketState | None: ...


class BudgetStore(Protocol):
    """The day's budget counters (nano-dollars); every change is one conditional write."""

    def try_reserve(
        self, day: str, reservation_id: str, amount: int, headroom: int, lease_until: float, expires_at: float
    ) -> tuple[bool, BudgetTotals]:
        """Hold ``amount`` if ``committed <= headroom``: (granted, totals after or as found)."""
        ...

    def release(self, day: str, reservation_id: str, amount: int) -> None: ...

    def release_expired(self, day: str, now: float) -> int:
        """Release reservations whose lease ended; how many were released."""
        ...

    def settle(self, day: str, reservation_id: str, reserved: int, charge: Charge, expires_at: float) -> None: ...

    def read_totals(self, day: str) -> BudgetTotals: ...


class AlertStore(Protocol):
    def claim_alert(self, day: str, threshold: int, now: float, claim_until: float, minimum_spent: int) -> bool: ...

    def mark_alert_sent(self, day: str, threshold: int, now: float) -> None: ...

    def drop_alert_claim(self, day: str, threshold: int) -> None: ...

    def read_totals(self, day: str) -> BudgetTotals: ...


@dataclass(frozen=True)
class LedgerRow:
    """One day's usage of a user or a model."""

    name: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: int  # nano-dollars

    @property
    def user_id(self) -> str:
        return self.name


class LedgerReader(Protocol):
    def top_users(self, day: str, limit: int) -> list[LedgerRow]: ...

    def user(self, day: str, user_id: str) -> LedgerRow | None: ...

    def models(self, day: str) -> list[LedgerRow]: ...


class Mailer(Protocol):
    def send(self, subject: str, body: str) -> None:
        """Deliver or raise AlertDeliveryError."""
        ...
