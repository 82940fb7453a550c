"""Nothing local reaches a real AWS account by accident.

``make dev``, ``make eval``, the ingester and the tests talk to a local AWS emulator only: an
explicit ``AWS_ENDPOINT_URL`` on 127.0.0.1/localhost (the stack's own by default) and dummy
credentials, whatever profile or keys the shell carries. A non-local endpoint is refused, and so
is anything that would make boto3 bypass the local one (a non-local ``AWS_ENDPOINT_URL_<SERVICE>``,
``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``). Writing to a deployed stack's table is the
ingester's ``--allow-aws``, said out loud.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, MutableMapping
from urllib.parse import urlsplit

ENDPOINT = "AWS_ENDPOINT_URL"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
LOCAL_REGION = "us-east-1"
# what would otherwise pick credentials (or a region, an endpoint) out of the shell or ~/.aws
PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
IGNORE_ENDPOINTS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"


class RealAwsError(SystemExit):
    """The environment would send AWS calls somewhere other than a local endpoint (exits with the message)."""


def is_local_url(url: str) -> bool:
    """Loopback, or an address of this machine itself (``make sam-local`` serves the emulator on the
    Docker bridge's address so the Lambda container can reach it): never a remote host."""
    host = urlsplit(url.strip()).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or _is_own_address(address)


def _is_own_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when this machine has ``address`` on one of its interfaces (binding to it succeeds)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def endpoint_problems(env: Mapping[str, str]) -> list[str]:
    """Why boto3, configured by ``env``, could send a call to something other than a local endpoint."""
    problems = []
    if not env.get(ENDPOINT, "").strip():
        problems.append(f"{ENDPOINT} is not set")
    for name, value in sorted(env.items()):
        if (name == ENDPOINT or name.startswith(f"{ENDPOINT}_")) and value.strip() and not is_local_url(value):
            problems.append(f"{name}={value} is not a local endpoint")
    if env.get(IGNORE_ENDPOINTS, "").strip().lower() == "true":
        problems.append(f"{IGNORE_ENDPOINTS}=true makes boto3 ignore {ENDPOINT}")
    return problems


def use_local_aws(env: MutableMapping[str, str], who: str, hint: str = "") -> None:
    """Make ``env`` reach the local endpoint only (dummy credentials, no profile), or refuse with
    ``RealAwsError`` naming the variable. ``env`` must already hold the local default endpoint."""
    problems = endpoint_problems(env)
    if problems:
        raise RealAwsError(
            f"{who}: refusing to run: {'; '.join(problems)}. It talks to a local AWS emulator only "
            f"({ENDPOINT} on 127.0.0.1 or localhost){hint}"
        )
    for name in PROFILE_VARIABLES:
        env.pop(name, None)
    env.update(LOCAL_CREDENTIALS)
    env.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
