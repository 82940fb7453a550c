"""Every tier: the tests never reach a real AWS account, whatever the shell or ~/.aws says.

Before any test module is imported (and any boto3 client built), a non-local AWS_ENDPOINT_URL
stops the run; then the session gets a local endpoint that answers nothing until a tier starts
its emulator (tests/integration/conftest.py points it there), dummy credentials, and no profile
or shared config file to read keys, a region or endpoints from. Subprocesses inherit it.
"""

from __future__ import annotations

import os

import pytest

from infra.local.aws_guard import ENDPOINT, PROFILE_VARIABLES, RealAwsError, use_local_aws

# Port 9 (discard) on loopback: nothing listens there, so a stray call fails at once, locally.
NOWHERE = "http://127.0.0.1:9"


def _local_aws_only() -> str | None:
    """Point this process (and its children) at local AWS only; the reason to stop the run instead."""
    env = dict(os.environ)
    env.setdefault(ENDPOINT, NOWHERE)
    try:
        use_local_aws(env, "tests", hint=f"; unset {ENDPOINT} (each tier starts its own emulator)")
    except RealAwsError as exc:
        return str(exc)
    for name in PROFILE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update({name: env[name] for name in (ENDPOINT, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    os.environ.setdefault("AWS_DEFAULT_REGION", env["AWS_DEFAULT_REGION"])
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return None


# At import: this conftest is loaded before every other one and before any test module.
_REFUSAL = _local_aws_only()


def pytest_configure(config: pytest.Config) -> None:
    if _REFUSAL is not None:
        pytest.exit(_REFUSAL, returncode=4)
