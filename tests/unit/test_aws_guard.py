"""Nothing local reaches a real AWS account by accident: make dev, the ingester and the tests
refuse a non-local endpoint (or a profile with none); the ingester needs --allow-aws for AWS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.local.aws_guard import RealAwsError, endpoint_problems, is_local_url, use_local_aws
from infra.scripts import ingest
from tests.support.servers import REPO_ROOT, python_env

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


def test_every_way_boto3_could_bypass_the_local_endpoint_is_named():
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ENDPOINT_URL_DYNAMODB": AWS,
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
    }

    assert endpoint_problems(env) == [
        f"AWS_ENDPOINT_URL_DYNAMODB={AWS} is not a local endpoint",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true makes boto3 ignore AWS_ENDPOINT_URL",
    ]
    assert endpoint_problems({}) == ["AWS_ENDPOINT_URL is not set"]


def test_a_local_environment_drops_the_shells_profile_and_keys():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_PROFILE": "work", "AWS_ACCESS_KEY_ID": "AKIAREAL"}

    use_local_aws(env, "stack")

    assert "AWS_PROFILE" not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_DEFAULT_REGION"]) == ("testing", "us-east-1")


def test_make_dev_refuses_a_real_aws_endpoint_before_starting_anything(tmp_path):
    env = python_env({"AWS_ENDPOINT_URL": AWS, "LOCAL_DATA_DIR": str(tmp_path)})

    result = subprocess.run(
        [sys.executable, "-m", "infra.local.stack"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert f"stack: refusing to run: AWS_ENDPOINT_URL={AWS} is not a local endpoint" in result.stderr
    assert "ready" not in result.stdout


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"AWS_PROFILE": "work"}, "AWS_PROFILE is set and AWS_ENDPOINT_URL is not"),
        ({"AWS_ACCESS_KEY_ID": "AKIAREAL"}, "AWS_ACCESS_KEY_ID is set and AWS_ENDPOINT_URL is not"),
        ({"AWS_ENDPOINT_URL": AWS}, f"AWS_ENDPOINT_URL={AWS} is not a local endpoint"),
    ],
)
def test_the_ingester_refuses_real_aws_without_allow_aws(monkeypatch, variables, message):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(RealAwsError, match=message) as refused:
        ingest.main(["--stamp-only"])

    assert "--allow-aws" in str(refused.value)


def test_allow_aws_needs_the_deployed_table_named(monkeypatch):
    monkeypatch.delenv("TABLE_NAME", raising=False)
    monkeypatch.setenv("AWS_PROFILE", "work")

    with pytest.raises(RealAwsError, match="--allow-aws needs TABLE_NAME"):
        ingest.main(["--stamp-only", "--allow-aws"])


def test_this_session_talks_to_local_aws_only():
    assert is_local_url(os.environ["AWS_ENDPOINT_URL"])
    assert "AWS_PROFILE" not in os.environ
    assert os.environ["AWS_CONFIG_FILE"] == os.environ["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


def test_the_tests_refuse_to_start_against_a_real_endpoint():
    env = python_env({"AWS_ENDPOINT_URL": AWS})

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_aws_guard.py::test_anything_else_is_not",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 4, result.stdout + result.stderr
    assert f"tests: refusing to run: AWS_ENDPOINT_URL={AWS} is not a local endpoint" in result.stdout + result.stderr
