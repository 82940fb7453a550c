"""A per-IP budget of failed sign-ins, so nobody can use the API to guess tokens at the auth API."""

from __future__ import annotations

from collections.abc import Callable

from dnd_rag.errors import DailyLimitExceededError, IpRateLimitedError, RateLimitedError
from dnd_rag.logic.rate_limit import Policy, RateLimiter


class FailedAuthGuard:
    def __init__(self, limiter: RateLimiter, policy: Policy, clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._policy = policy
        self._clock = clock

    def check(self, ip: str) -> None:
        """Before asking the auth API: refuse an address that has failed too often (one read)."""
        try:
            self._limiter.check(_key(ip), self._policy, self._clock())
        except (RateLimitedError, DailyLimitExceededError) as exc:
            raise _blocked(exc.retry_after) from None

    def record_failure(self, ip: str) -> None:
        """Count one failed sign-in; the failure that exhausts the budget is already answered 429."""
        try:
            self._limiter.admit(_key(ip), self._policy, self._clock())
        except (RateLimitedError, DailyLimitExceededError) as exc:
            raise _blocked(exc.retry_after) from None


def _key(ip: str) -> str:
    return f"IP#{ip}"


def _blocked(retry_after: int | None) -> IpRateLimitedError:
    wait = retry_after or 60
    return IpRateLimitedError(
        f"Too many failed sign-in attempts from your address. Try again in {wait} seconds.", retry_after=wait
    )
