"""What an idempotent replay (a retried ``POST /api/query`` with a known ``Idempotency-Key``) must
pass before its stored answer is served again.

A replay costs no model call, but it is a request like any other: it is served behind the same
controls as a query (paused: 503 ``service_paused``; its user blocked: 403 ``user_blocked``) and
counted against a per-user limit of its own, ``REPLAY_POLICY`` (key ``REPLAY#<user id>``: a burst of
10, then one every 6 s, 1,000 a day), one conditional write, so replays cannot be used to keep a
blocked user served or to hammer one partition, and never spend the user's query quota either.
The first answer to a key is guarded by the query itself (logic/query.py): nothing is added there.
"""

from __future__ import annotations

from collections.abc import Callable

from dnd_rag.logic.limits.rate_limit import RateLimiter
from dnd_rag.logic.operations.controls import ControlsCache, check
from dnd_rag.models.limits import Policy

REPLAY_POLICY = Policy(capacity=10, refill_rate=1 / 6, daily_limit=1_000)


def replay_key(user_id: str) -> str:
    return f"REPLAY#{user_id}"


class ReplayGate:
    def __init__(self, controls: ControlsCache, limiter: RateLimiter, clock: Callable[[], float]) -> None:
        self._controls = controls
        self._limiter = limiter
        self._clock = clock

    def admit(self, user_id: str) -> None:
        """Let a replay of ``user_id`` through, or raise what the controls or the limit say."""
        now = self._clock()
        check(self._controls.current(now), user_id)  # this container's copy, as for a query
        self._limiter.admit(replay_key(user_id), REPLAY_POLICY, now)
