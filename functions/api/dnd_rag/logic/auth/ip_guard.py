"""A per-address budget of failed sign-ins, so nobody can use the API to guess tokens at the auth API.

Charge first, give back on success: before a token is sent to the auth API, one failure is charged
to the caller's address by the limiter's conditional write (``charge``); when the token proves
valid (or the auth API could not answer) the charge is given back by name (``Slot.give_back``, an
idempotent refund). A guess therefore pays before it reaches the auth API, and N guesses in flight
at once hold N slots: parallelism cannot multiply the budget, as it could when the limit was read,
the auth API asked, and the failure counted afterwards (check-then-act).

A slot held for a sign-in still being checked is not a failure yet: an office behind one NAT
address whose people sign in at once would otherwise be refused for its own valid tokens. So a
charge refused while other charges of the address are in flight (recorded on the item, neither
given back nor kept as failures, younger than ``in_flight_seconds``) waits for them, briefly, and
tries again (so does one whose every attempt met another writer's change): valid ones give their
slots back within the auth API's answer time; guesses keep theirs (``Slot.keep`` removes their id,
so nobody waits for a failure) and the waiters are then refused. Parallel guesses still reach
the auth API at most ``capacity`` times; they only learn so a little later.

An IPv6 client is limited per /64, not per address: one subscriber (one home, one cloud instance)
is routinely given a whole /64, so per-address buckets would hand an attacker 2^64 of them.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import (
    DailyLimitExceededError,
    IpRateLimitedError,
    LimiterContendedError,
    RateLimitedError,
    ServiceError,
)
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

    def keep(self) -> None:
        """The token was refused: the slot stays used, and is no longer in flight (nobody waits
        for it). A write that fails only leaves it looking in flight until ``in_flight_seconds``."""
        try:
            self.limiter.settle(self.admission)
        except ServiceError as exc:
            logger.warning("could not record a failed sign-in as final", extra={"reason": exc.reason})


class FailedAuthGuard:
    def __init__(
        self,
        limiter: RateLimiter,
        policy: Policy,
        clock: Callable[[], float],
        in_flight_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``in_flight_seconds``: how long a sign-in may take at most (the auth API's timeout and a
        margin); a charge older than that belongs to a request that died, and is not waited for."""
        self._limiter = limiter
        self._policy = policy
        self._clock = clock
        self._in_flight_seconds = in_flight_seconds
        self._sleep = sleep

    def charge(self, ip: str) -> Slot:
        """Before asking the auth API: take one failure slot of the address (one conditional
        write), waiting up to ``in_flight_seconds`` for sign-ins in flight to give theirs back;
        429 ``ip_rate_limited`` if none is left."""
        waited, pause = 0.0, 0.05
        while True:
            try:
                return Slot(self._limiter, self._admit(ip))
            except (RateLimitedError, DailyLimitExceededError) as exc:
                # others are at it right now: their sign-ins still being checked, or their writes
                # changing the item under every attempt of ours (no verdict on the limit)
                since = self._clock() - self._in_flight_seconds
                busy = isinstance(exc, LimiterContendedError) or self._limiter.in_flight_ids(_key(ip), since) > 0
                if not busy or waited >= self._in_flight_seconds:
                    raise _blocked(exc.retry_after) from None
            step = min(pause * random.uniform(0.5, 1.5), self._in_flight_seconds - waited)  # noqa: S311 (jitter)
            self._sleep(step)
            waited, pause = waited + step, min(pause * 2, 0.4)

    def record_failure(self, ip: str) -> None:
        """Count a failure that did not need the auth API (a rejection from the negative cache);
        past the budget it is answered 429 like a fresh guess."""
        try:
            admission = self._admit(ip)
        except (RateLimitedError, DailyLimitExceededError) as exc:
            raise _blocked(exc.retry_after) from None
        Slot(self._limiter, admission).keep()

    def _admit(self, ip: str) -> Admission:
        # each charge is its own admission, named by a fresh request id (``admit`` makes one), so a
        # write the SDK resends after a lost answer counts it once, and its refund gives it back once
        return self._limiter.admit(_key(ip), self._policy, self._clock())


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
