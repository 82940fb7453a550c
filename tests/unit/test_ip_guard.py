"""Failed sign-ins are counted per client network: the IPv4 address, or the IPv6 /64."""

import pytest

from dnd_rag.errors import IpRateLimitedError
from dnd_rag.logic.auth.ip_guard import FailedAuthGuard, client_network
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.limits.rate_limit import MAX_ATTEMPTS, BucketState, Policy, RateLimiter

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::7", "2001:db8:1:3::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("::1", "::/64"),
    ],
)
def test_each_address_is_keyed_by_the_network_its_owner_controls(ip, network):
    assert client_network(ip) == network


def test_two_addresses_of_one_ipv6_64_share_a_key_and_another_64_does_not():
    assert client_network("2001:db8:aa:bb::1") == client_network("2001:db8:aa:bb:1234:5678:9abc:def0")
    assert client_network("2001:db8:aa:bb::1") != client_network("2001:db8:aa:bc::1")


def test_something_that_is_not_an_address_is_keyed_as_it_is():
    assert client_network("not-an-ip") == "not-an-ip"


class BusyItem:
    """The limit store (the DynamoDB boundary) as an item other writers keep changing: the first
    ``contended`` attempts are refused with a state that still has room, so no attempt fails on the
    limit itself; then admissions go through."""

    def __init__(self, contended, room=True):
        self.contended = contended
        self.room = room
        self.attempts = 0

    def state(self, now, ids=None):
        tat = 0 if self.room else int(now * 1000) + 10 * 10_000  # full bucket / none left, no one in flight
        return BucketState(tat_ms=tat, day=utc_day(now), count=0, ids=ids or {})

    def try_consume(self, key, shape, policy, now, request_id, drop=(), first_id=False):
        self.attempts += 1
        if self.attempts <= self.contended or not self.room:
            return False, self.state(now)
        return True, self.state(now, {request_id: int(now * 1000)})

    def refund(self, key, day, interval_ms, request_id):
        return None

    def forget(self, key, day, request_id):
        return None


def guard_over(store):
    naps = []
    guard = FailedAuthGuard(
        RateLimiter(store), Policy(10, 0.1, 10_000), lambda: NOW, in_flight_seconds=6, sleep=naps.append
    )
    return guard, naps


def test_a_charge_whose_every_attempt_met_another_writer_waits_and_tries_again():
    store = BusyItem(contended=MAX_ATTEMPTS)  # the first admission runs out of attempts
    guard, naps = guard_over(store)

    slot = guard.charge("203.0.113.9")

    assert slot.admission.key == "IP#203.0.113.9"
    assert len(naps) == 1
    assert store.attempts == MAX_ATTEMPTS + 1


def test_a_charge_refused_on_the_limit_with_nobody_in_flight_is_429_at_once():
    guard, naps = guard_over(BusyItem(contended=0, room=False))

    with pytest.raises(IpRateLimitedError):
        guard.charge("203.0.113.9")
    assert naps == []
