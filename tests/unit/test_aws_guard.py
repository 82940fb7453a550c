"""Nothing local reaches a real AWS account by accident: make dev, the ingester and the tests
refuse a non-local endpoint (or a profile with none); the ingester needs --allow-aws for AWS."""

from __future__ import annotations

import pytest

from infra.local.aws_guard import is_local_url

AWS = "https://dynamodb.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("url", ["http://127.0.0.1:4566", "http://localhost:4566/", "http://[::1]:4566"])
def test_loopback_endpoints_are_local(url):
    assert is_local_url(url)


@pytest.mark.parametrize("url", [AWS, "http://10.0.0.5:4566", "http://localhost.example.com:4566", ""])
def test_anything_else_is_not(url):
    assert not is_local_url(url)


def test_an_address_of_this_machine_is_local_as_the_docker_bridge_sam_local_serves_on():
    import socket

    own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    own = {address for address in own if not address.startswith("127.")}
    if not own:
        pytest.skip("this machine's name resolves to loopback only")
    assert all(is_local_url(f"http://{address}:4566") for address in own)
