"""Per-key rate limiting: a token bucket (GCRA form) plus a daily count, both reset each UTC day.

The bucket is one number, the theoretical arrival time ``tat`` (ms): a request is admitted when
``max(tat, now) + interval <= now + capacity * interval``, and then ``tat`` moves to
``max(tat, now) + interval``. DynamoDB update expressions have no ``max``, so the write takes
one of three shapes, each a single conditional ``UpdateItem`` that is only valid in its case:

- NEW_DAY:  no state yet, or yesterday's         -> start the day: count 1, tat = now + interval
- FULL:     tat <= now (bucket full)              -> tat = now + interval,  count + 1
- DRAINING: now < tat <= now + (capacity-1)*I     -> tat = tat + interval,  count + 1

The shape is guessed from the state this container saw last; a refused write returns the item as
it is (ALL_OLD), which either proves the request must be rejected (and why, with Retry-After) or
names the right shape for one more attempt. A refusal without the item is followed by one
consistent read instead. So an admission costs one round trip in the common
case, and no interleaving of writers can admit more than the policy allows.

Resent writes (SPEC §4 "DynamoDB throttles and resends"). The SDK resends a write whose answer
was lost although DynamoDB applied it; ``count + 1`` applied twice would charge one request two
tokens. So every admission is named by its request id (a fresh uuid unless the caller gives one):
the write records the id in the item's ``ids`` map and its condition refuses a write whose id is
already there, the way the budget's holds are named by their hold id. A refusal whose item
already carries our id is our own earlier attempt, applied once: the request is admitted. A refund
removes the id with the decrements, on condition that the id is still there, so a resent refund
is refused instead of giving back twice.

The map stays small: NEW_DAY replaces it whole, and every admission removes, in the same write,
the ids older than ``ID_LIFETIME_MS`` among those this container saw on the item last time
(removing an id that is already gone is a no-op in DynamoDB). An id is only needed while its
request may still resend its admission or refund it, i.e. within the request's 30 s; so the map
holds the admissions of the last two minutes plus, at worst, those since this container's last
view of the item, and never more than the day's admissions.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from dnd_rag.errors import (
    DailyLimitExceededError,
    LimiterContendedError,
    RateLimitedError,
    ServiceError,
    StoreUnavailableError,
)
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import iso, next_midnight, utc_day
from dnd_rag.logic.ports import LimitStore
from dnd_rag.models.limits import BucketState, Policy, Shape
from dnd_rag.observability import logger

__all__ = ["Admission", "BucketState", "Policy", "RateLimiter", "Shape", "Standing"]

MAX_ATTEMPTS = 6  # each refused attempt re-reads the state for free; contention converges fast
ID_LIFETIME_MS = 120_000  # longer than any request lives (the gateway's 30 s): its id is no longer needed
MAX_DROPPED_IDS = 32  # ids removed by one admission: keeps the expression small; the next one goes on


@dataclass(frozen=True)
class Standing:
    """A key's state as the caller sees it at ``now``."""

    remaining_burst: int
    daily_remaining: int
    daily_count: int
    retry_after: int  # seconds until the next token (0 when one is available)
    reset_at: float  # next UTC midnight, epoch seconds


@dataclass(frozen=True)
class Admission:
    key: str
    day: str
    interval_ms: int
    standing: Standing
    request_id: str  # the id the admission is recorded under on the item (its refund names it too)


def standing(state: BucketState | None, policy: Policy, now: float) -> Standing:
    now_ms = int(now * 1000)
    today = utc_day(now)
    reset_at = next_midnight(now)
    if state is None or state.day < today:
        return Standing(policy.capacity, policy.daily_limit, 0, 0, reset_at)
    interval = policy.interval_ms
    backlog = max(state.tat_ms - now_ms, 0)
    remaining = max(0, min(policy.capacity, (policy.capacity * interval - backlog) // interval))
    wait_ms = max(0, backlog - (policy.capacity - 1) * interval)
    return Standing(
        remaining, max(0, policy.daily_limit - state.count), state.count, math.ceil(wait_ms / 1000), reset_at
    )


def shape_for(state: BucketState | None, now: float) -> Shape:
    if state is None or state.day < utc_day(now):
        return Shape.NEW_DAY
    return Shape.FULL if state.tat_ms <= int(now * 1000) else Shape.DRAINING


def stale_ids(state: BucketState | None, now: float) -> tuple[str, ...]:
    """The ids of ``state`` no request needs any more (oldest first, at most MAX_DROPPED_IDS)."""
    if state is None or not state.ids:
        return ()
    cutoff = int(now * 1000) - ID_LIFETIME_MS
    old = sorted((at, request_id) for request_id, at in state.ids.items() if at < cutoff)
    return tuple(request_id for _, request_id in old[:MAX_DROPPED_IDS])


def rejection(state: BucketState | None, policy: Policy, now: float) -> ServiceError | None:
    """The error to answer when ``state`` leaves no room for one more request, else None."""
    current = standing(state, policy, now)
    if current.daily_remaining <= 0:
        retry_after = max(1, math.ceil(current.reset_at - now))
        return DailyLimitExceededError(
            f"You have used all {policy.daily_limit} requests for today. The quota resets at midnight UTC.",
            retry_after=retry_after,
            rate_info={"daily_remaining": 0, "retry_after": retry_after, "reset_at": iso(current.reset_at)},
        )
    if current.retry_after > 0:
        return RateLimitedError(
            f"Too many requests. Please wait {current.retry_after} seconds.",
            retry_after=current.retry_after,
            rate_info={
                "remaining_burst": 0,
                "daily_remaining": current.daily_remaining,
                "retry_after": current.retry_after,
            },
        )
    return None


class RateLimiter:
    """Admits or rejects requests for keys (``USER#id``, ``IP#addr``) against a shared store."""

    def __init__(self, store: LimitStore, max_remembered: int = 10_000) -> None:
        self._store = store
        self._last_seen: BoundedMap[str, BucketState] = BoundedMap(max_remembered)

    def admit(self, key: str, policy: Policy, now: float, request_id: str | None = None) -> Admission:
        """Consume one request for ``key`` or raise RateLimitedError / DailyLimitExceededError.

        ``request_id`` names the admission on the item (a fresh uuid when not given): give each
        admission its own, as a second admission under the same id is taken for a resend."""
        request_id = request_id or uuid.uuid4().hex
        state = self._last_seen.get(key)
        reread = False
        for _ in range(MAX_ATTEMPTS):
            shape = shape_for(state, now)
            unnamed = shape is not Shape.NEW_DAY and state is not None and state.ids is None
            try:
                admitted, observed = self._store.try_consume(
                    key, shape, policy, now, request_id, drop=stale_ids(state, now), first_id=unnamed
                )
            except StoreUnavailableError:
                # the write may have been applied although every answer was lost: a request
                # answered 503 consumes nothing, so its admission (if there is one) is given back
                self._give_back(key, utc_day(now), policy.interval_ms, request_id)
                raise
            if not admitted and observed is None and not reread:
                # A refusal that carries no item (TTL removed it between the attempts, or an engine
                # that does not return it) says nothing: one consistent read, not blind retries
                # that would end in a spurious 429.
                observed, reread = self._store.read(key), True
            self._remember(key, observed)
            if admitted or (observed is not None and observed.ids is not None and request_id in observed.ids):
                # refused, but by our own write: applied once already, its answer lost and resent
                assert observed is not None
                return Admission(key, observed.day, policy.interval_ms, standing(observed, policy, now), request_id)
            error = rejection(observed, policy, now)
            if error is not None:
                raise error
            state = observed
        raise LimiterContendedError(
            "Too many concurrent requests. Please retry.",
            retry_after=1,
            rate_info={"remaining_burst": 0, "retry_after": 1},
        )

    def _give_back(self, key: str, day: str, interval_ms: int, request_id: str) -> None:
        """Refund admission ``request_id`` if it was written; never raises (the refund names it)."""
        try:
            self._store.refund(key, day, interval_ms, request_id)
        except ServiceError:
            logger.error("could not give back an admission after a store error", extra={"key_kind": key.split("#")[0]})
        self._last_seen.pop(key)

    def peek(self, key: str, policy: Policy, now: float) -> Standing:
        """The key's standing without consuming anything (one read)."""
        return standing(self._store.read(key), policy, now)

    def check(self, key: str, policy: Policy, now: float) -> None:
        """Raise the rejection ``key`` would get now, without consuming (one read)."""
        error = rejection(self._store.read(key), policy, now)
        if error is not None:
            raise error

    def state(self, key: str) -> BucketState | None:
        """What the store holds for ``key`` (one consistent read)."""
        return self._store.read(key)

    def reset(self, key: str) -> None:
        """Refill the key's bucket and zero its daily count (an operator's reset)."""
        self._store.reset(key)
        self._last_seen.pop(key)

    def refund(self, admission: Admission) -> None:
        """Give back an admitted request (its token and its daily count), same day only, once."""
        after = self._store.refund(admission.key, admission.day, admission.interval_ms, admission.request_id)
        self._remember(admission.key, after)  # the next admission then guesses its write right

    def settle(self, admission: Admission) -> None:
        """The admission is final (never refunded): its id leaves the item at once, so nobody waits
        for it as for one still in flight (``in_flight_ids``). Once; a no-op once the day rolled over."""
        self._store.forget(admission.key, admission.day, admission.request_id)

    def in_flight_ids(self, key: str, since: float) -> int:
        """How many admissions of ``key`` recorded at ``since`` or later are still on the item as
        this container saw it last (no read): those neither refunded nor settled yet."""
        state = self._last_seen.get(key)
        if state is None or not state.ids:
            return 0
        cutoff = int(since * 1000)
        return sum(1 for at in state.ids.values() if at >= cutoff)

    def _remember(self, key: str, state: BucketState | None) -> None:
        if state is None:
            self._last_seen.pop(key)
        else:
            self._last_seen.put(key, state)
