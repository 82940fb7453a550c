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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnd_rag.errors import DailyLimitExceededError, RateLimitedError, ServiceError
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.common.clock import iso, next_midnight, utc_day
from dnd_rag.logic.ports import LimitStore
from dnd_rag.models.limits import BucketState, Policy, Shape

__all__ = ["Admission", "BucketState", "Policy", "RateLimiter", "Shape", "Standing"]

MAX_ATTEMPTS = 6  # each refused attempt re-reads the state for free; contention converges fast


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

    def admit(self, key: str, policy: Policy, now: float) -> Admission:
        """Consume one request for ``key`` or raise RateLimitedError / DailyLimitExceededError."""
        state = self._last_seen.get(key)
        reread = False
        for _ in range(MAX_ATTEMPTS):
            admitted, observed = self._store.try_consume(key, shape_for(state, now), policy, now)
            if not admitted and observed is None and not reread:
                # A refusal that carries no item (TTL removed it between the attempts, or an engine
                # that does not return it) says nothing: one consistent read, not blind retries
                # that would end in a spurious 429.
                observed, reread = self._store.read(key), True
            self._remember(key, observed)
            if admitted:
                assert observed is not None
                return Admission(key, observed.day, policy.interval_ms, standing(observed, policy, now))
            error = rejection(observed, policy, now)
            if error is not None:
                raise error
            state = observed
        raise RateLimitedError(
            "Too many concurrent requests. Please retry.",
            retry_after=1,
            rate_info={"remaining_burst": 0, "retry_after": 1},
        )

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
        """Give back an admitted request (its token and its daily count), same day only."""
        self._store.refund(admission.key, admission.day, admission.interval_ms)
        self._last_seen.pop(admission.key)

    def _remember(self, key: str, state: BucketState | None) -> None:
        if state is None:
            self._last_seen.pop(key)
        else:
            self._last_seen.put(key, state)
