"""A per-address budget of failed sign-ins, so nobody can use the API to guess tokens at the auth API.

An IPv6 client is limited per /64, not per address: one subscriber (one home, one cloud instance)
is routinely given a whole /64, so per-address buckets would hand an attacker 2^64 of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from dnd_rag.errors import DailyLimitExceededError, IpRateLimitedError, RateLimitedError
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter


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
        """Count one failed sign-in; the failure that exhausts the budget is already answered 429.

        Each failure is its own admission, named by a fresh request id (``admit`` makes one), so a
        write the SDK resends after a lost answer counts it once."""
        try:
            self._limiter.admit(_key(ip), self._policy, self._clock())
        except (RateLimitedError, DailyLimitExceededError) as exc:
            raise _blocked(exc.retry_after) from None


def client_network(ip: str) -> str:
    """What one client controls: the IPv4 address itself, or the /64 of an IPv6 address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:  # API Gateway always sends an address; anything else is keyed as it is
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 client
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _key(ip: str) -> str:
    return f"IP#{client_network(ip)}"


def _blocked(retry_after: int | None) -> IpRateLimitedError:
    wait = retry_after or 60
    return IpRateLimitedError(
        f"Too many failed sign-in attempts from your address. Try again in {wait} seconds.", retry_after=wait
    )
