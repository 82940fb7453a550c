"""The interfaces the logic needs from the outside world; providers and the DAL implement them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from dnd_rag.models.cache import CachedAnswer, CacheRead
from dnd_rag.models.controls import AuditEntry, Controls
from dnd_rag.models.domain import Embedding, Generation, Moderation, Passage, Prompt, User
from dnd_rag.models.events import Event
from dnd_rag.models.limits import BucketState, Policy, Shape
from dnd_rag.models.money import BudgetTotals, Charge, HoldEntry, UserHoldEntry, UserTotals


class Embedder(Protocol):
    """One embeddings call per ``embed``: no retries of its own (the logic retries and pays)."""

    model: str

    def embed(self, texts: list[str], timeout_seconds: float) -> Embedding:
        """Raises AttemptError when the call fails."""
        ...


class Retriever(Protocol):
    def search(self, vectors: list[list[float]], k: int, timeout_seconds: float) -> list[list[Passage]]:
        """For each query vector, its ``k`` best passages over every collection, best first, scored
        as cosine similarities in [0, 1]. Raises AttemptError (retryable) or UpstreamError."""
        ...


class Generator(Protocol):
    """One chat completion per ``generate``: no retries of its own (the logic retries and pays)."""

    model: str

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """The prompt tokens the model will be billed for ``messages`` (chat overhead included)."""
        ...

    def generate(self, prompt: Prompt, max_completion_tokens: int, timeout_seconds: float) -> Generation:
        """Raises AttemptError when the call fails."""
        ...


class Moderator(Protocol):
    """One moderation call per ``moderate``: no retries of its own (free at OpenAI; the logic retries)."""

    model: str

    def moderate(self, text: str, timeout_seconds: float) -> Moderation:
        """Raises AttemptError when the call fails."""
        ...


class AuthApi(Protocol):
    def fetch_user(self, token: str) -> User | None:
        """The user for ``token``; None when the auth API rejects it (401/403).

        Raises AuthUnavailableError when the auth API cannot answer."""
        ...


class SharedTokenCache(Protocol):
    """The cross-container cache of validation results, keyed by the token's SHA-256."""

    def get(self, token_hash: str, now: float) -> tuple[User | None, float, float] | None:
        """``None`` on a miss; ``(user, expires_at, validated_at)`` on a hit, ``user`` None for a
        cached rejection; ``validated_at`` is when the auth API answered (0 when unknown)."""
        ...

    def put(self, token_hash: str, user: User | None, expires_at: float, validated_at: float) -> None: ...


class LimitStore(Protocol):
    """Rate-limit state per key; every consuming write is one conditional update naming its
    request, so a write re-sent after a lost answer is never counted twice."""

    def try_consume(
        self,
        key: str,
        shape: Shape,
        policy: Policy,
        now: float,
        request_id: str,
        drop: tuple[str, ...] = (),
        first_id: bool = False,
    ) -> tuple[bool, BucketState | None]:
        """Attempt the write ``shape`` describes, recording ``request_id`` (refused if already
        recorded) and removing the ids ``drop``; ``first_id`` when the item has no ids yet.
        (True, new state) or (False, state as found)."""
        ...

    def refund(self, key: str, day: str, interval_ms: int, request_id: str) -> BucketState | None:
        """Undo admission ``request_id`` of ``day``, once; a no-op if it is not recorded. The state
        after the refund, or None when unknown (refused)."""
        ...

    def forget(self, key: str, day: str, request_id: str) -> None:
        """Remove admission ``request_id`` of ``day`` from the item, keeping what it consumed."""
        ...

    def read(self, key: str) -> BucketState | None: ...

    def reset(self, key: str) -> None:
        """Forget the key's state: a full bucket and a zero daily count (an operator's reset)."""
        ...


class BudgetStore(Protocol):
    """The day's money (nano-dollars), split over shards (logic/money/shards.py). Every write is one
    conditional write on one shard naming its hold, so a write re-sent after a lost answer is never
    counted twice."""

    def try_reserve(
        self,
        day: str,
        hold_id: str,
        entry: HoldEntry,
        headroom: int,
        expires_at: float,
        drop_orphans: tuple[str, ...] = (),
        shard: int = 0,
        max_holds: int | None = None,
    ) -> tuple[bool, BudgetTotals]:
        """Open a hold on ``shard`` if its ``committed <= headroom`` and it has fewer than
        ``max_holds`` holds: (granted, the shard's totals after or as found)."""
        ...

    def try_resize(
        self, day: str, hold_id: str, old: int, new: int, headroom: int, shard: int = 0
    ) -> tuple[bool, BudgetTotals]: ...

    def settle(
        self,
        day: str,
        hold_id: str,
        reserved: int,
        charge: Charge,
        now: float,
        expires_at: float,
        user_hold: int | None = None,
        shard: int = 0,
    ) -> BudgetTotals:
        """Replace the hold by ``charge`` in the user's ledger (closing the user's hold of the same
        id, of amount ``user_hold``, in the same write) and then on its shard."""
        ...

    def release(self, day: str, hold_id: str, amount: int, shard: int = 0) -> bool:
        """Remove a hold that paid for nothing if it has ``amount``; False (a no-op) if it is gone
        or has another amount."""
        ...

    def reclaim(
        self, day: str, hold_id: str, entry: HoldEntry, now: float, grace_until: float, expires_at: float
    ) -> int:
        """Settle a hold whose lease ended (at its recorded cost, else in full) on its shard
        (``entry.shard``); what this call booked."""
        ...

    def read_shard(self, day: str, shard: int) -> BudgetTotals: ...

    def read_shards(self, day: str) -> dict[int, BudgetTotals]:
        """Each shard of the day that has an item, by number."""
        ...

    def read_totals(self, day: str) -> BudgetTotals:
        """The day as a whole: every shard summed."""
        ...


class AnswerCacheStore(Protocol):
    """Cached answers and the corpus versions they were computed against."""

    def read(self, key: str, collections: list[str], day: str, user_id: str) -> CacheRead:
        """In one round trip: the entry for ``key`` (None if absent), the current version of each
        collection (``UNSTAMPED`` when never stamped), the day's budget totals and the user's."""
        ...

    def put(self, key: str, entry: CachedAnswer) -> None:
        """Write the whole entry at once (the last complete writer wins)."""
        ...


class UserBudgetStore(Protocol):
    """A user's own limits for one day (dal/money/user_budget.py); every write names its hold."""

    def try_open(
        self,
        day: str,
        user_id: str,
        hold_id: str,
        entry: UserHoldEntry,
        max_in_flight: int,
        headroom: int | None,
        expires_at: float,
        email: str | None = None,
    ) -> tuple[bool, UserTotals]: ...

    def try_resize(
        self, day: str, user_id: str, hold_id: str, old: int, new: int, headroom: int | None
    ) -> tuple[bool, UserTotals]: ...

    def release(
        self, day: str, user_id: str, hold_id: str, amount: int, expired_before: float | None = None
    ) -> bool: ...

    def read(self, day: str, user_id: str) -> UserTotals: ...

    def reset_spend(self, day: str, user_id: str) -> None: ...


class AlertStore(Protocol):
    def mark_alert_sent(self, day: str, threshold: int, budget: int) -> None:
        """Note on the day's total that every channel has the threshold's alert for ``budget``
        (others skip it until the day's budget changes)."""
        ...


ClaimOutcome = Literal["won", "sent", "busy"]


class EventClaims(Protocol):
    """Who delivers an event on a channel: one conditional write per (event, channel) that one
    container wins; the winner delivers, then marks it sent (or drops the claim if delivery failed)."""

    max_seconds: float  # the longest one claim, mark or drop may take (its client's timeouts and attempts)

    def claim(self, day: str, event_id: str, channel: str, owner: str, now: float, claim_until: float) -> ClaimOutcome:
        """``won``; ``sent`` (delivered already); ``busy`` (another owner holds a live claim)."""
        ...

    def mark_sent(self, day: str, event_id: str, channel: str, owner: str, now: float) -> None: ...

    def drop(self, day: str, event_id: str, channel: str, owner: str) -> None:
        """Give up our claim (only ours) so that a later request retries the delivery."""
        ...


class PendingEvents(Protocol):
    """Events a request left unsettled on some channel, kept for the scheduled sweeper to retry
    (one item per event under its day; the claims still decide who delivers)."""

    max_seconds: float  # the longest one ``record`` may take (its client's timeouts and attempts)

    def record(self, event: Event, now: float) -> None:
        """Keep ``event`` (composed) until ``clear``; writing it again is harmless."""
        ...

    def of_day(self, day: str, limit: int) -> list[Event]:
        """Up to ``limit`` events of ``day`` still pending."""
        ...

    def clear(self, day: str, event_id: str) -> None: ...


class AlertChannel(Protocol):
    name: str  # one of notifier.CHANNELS
    max_seconds: float  # the longest one delivery may take: one attempt, within its timeouts

    def accepts(self, event_type: str) -> bool: ...

    def deliver(self, event: Event) -> None:
        """Deliver within ``max_seconds``, in one attempt, or raise AlertDeliveryError."""
        ...


@dataclass(frozen=True)
class LedgerRow:
    """One day's usage of a user or a model."""

    name: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: int  # nano-dollars
    email: str | None = None  # a user's, as the auth API gave it (operators see it beside the id)

    @property
    def user_id(self) -> str:
        return self.name


class LedgerReader(Protocol):
    def top_users(self, day: str, limit: int) -> list[LedgerRow]: ...

    def user(self, day: str, user_id: str) -> LedgerRow | None: ...

    def models(self, day: str) -> list[LedgerRow]: ...


@dataclass(frozen=True)
class DayBooks:
    """What the books say of one UTC day: its budget total and its per-model ledger (nano-dollars)."""

    day: str
    spent: int  # every shard's ``spent``, summed: the day's total
    models: dict[str, int]  # model -> cost


class SpendBooks(Protocol):
    """The per-day aggregates the spend export reads (one Query of a day's partition each, no Scan)."""

    def day_books(self, day: str) -> DayBooks: ...

    def user_costs(self, day: str) -> dict[str, int]:
        """Each user's ledgered cost of ``day`` (nano-dollars), by user id."""
        ...


class Mailer(Protocol):
    max_seconds: float  # the longest one send may take: one attempt, within its timeouts

    def send(self, subject: str, body: str) -> None:
        """Deliver or raise AlertDeliveryError."""
        ...


class ControlStore(Protocol):
    """The operator controls (one record) and their audit trail."""

    def read(self) -> Controls:
        """The current controls (strongly consistent); the defaults when none were ever set."""
        ...

    def replace(self, expected_version: int, controls: Controls, entry: AuditEntry) -> bool:
        """Write ``controls`` and its audit ``entry`` atomically, only if the stored version is still
        ``expected_version``: False when another change got there first (True when this very write
        was applied once already and only its answer was lost)."""
        ...

    def record(self, entry: AuditEntry) -> None:
        """Write an audit entry for an action that does not change the controls (a user reset)."""
        ...

    def audit(self, limit: int) -> list[AuditEntry]:
        """The latest ``limit`` audit entries, newest first."""
        ...


class UserSpendReset(Protocol):
    """Zeroes a user's dollar use of ``day`` under their per-user cap (SPEC §4 per-user dollar cap)."""

    def reset_spend(self, day: str, user_id: str) -> None: ...
