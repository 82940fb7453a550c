"""Failed sign-ins are counted per client network: the IPv4 address, or the IPv6 /64."""

import pytest

from dnd_rag.logic.auth.ip_guard import client_network


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
