"""A per-address budget of failed sign-ins, so nobody can use the API to guess tokens at the auth API.

Charge first, give back on success: before a token is sent to the auth API, one failure is charged
to the caller's address by the limiter's conditional write (``charge``); when the token proves
valid (or the auth API could not answer) the charge is given back by name (``Slot.give_back``, an
idempotent refund). A guess therefore pays before it reaches the auth API, and N guesses in flight
at once hold N slots: parallelism cannot multiply the budget, as it could when the limit was read,
the auth API asked, and the failure counted afterwards (check-then-act).

An IPv6 client is limited per /64, not per address: one subscriber (one home, one cloud instance)
is routinely given a whole /64, so per-address buckets would hand an attacker 2^64 of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import DailyLimitExceededError, IpRateLimitedError, RateLimitedError, ServiceError
from dnd_rag.logic.limits.rate_limit import Admission, Policy, RateLimiter
from dnd_rag.observability import logger


@dataclass(frozen=True)
class Slot:
    """One failed sign-in charged to an address ahead of the auth API's answer."""

    limiter: RateLimiter
    admission: Admission

    def give_back(self) -> None:
        """The token was valid (or could not be checked): the address is not charged. Idempotent
        (the refund names the admission); a refund that fails leaves one slot used until refilled."""
        try:
            self.limiter.refund(self.admission)
        except ServiceError as exc:
            logger.warning("could not give back a failed-sign-in slot", extra={"reason": exc.reason})


class FailedAuthGuard:
    def __init__(self, limiter: RateLimiter, policy: Policy, clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._policy = policy
        self._clock = clock

    def charge(self, ip: str) -> Slot:
        """Before asking the auth API: take one failure slot of the address, or 429
        ``ip_rate_limited`` if it has none left (one conditional write)."""
        return Slot(self._limiter, self._admit(ip))

    def record_failure(self, ip: str) -> None:
        """Count a failure that did not need the auth API (a rejection from the negative cache);
        past the budget it is answered 429 like a fresh guess."""
        self._admit(ip)

    def _admit(self, ip: str) -> Admission:
        # each charge is its own admission, named by a fresh request id (``admit`` makes one), so a
        # write the SDK resends after a lost answer counts it once, and its refund gives it back once
        try:
            return self._limiter.admit(_key(ip), self._policy, self._clock())
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
