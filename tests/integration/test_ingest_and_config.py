"""The ingester against the real Chroma server; secrets from the emulator's SSM; cold-start config."""

import subprocess
import sys

import boto3
import pytest

from dnd_rag.container import Container
from dnd_rag.dal.secrets import with_secrets
from dnd_rag.settings import ConfigError, load_settings
from infra.scripts.ingest import ingest, needs_ingest
from tests.integration.conftest import corpus_files
from tests.support.servers import REPO_ROOT, python_env


@pytest.fixture
def container(base_env, request):
    return Container(load_settings({**base_env, "CHROMA_COLLECTION": f"ingest_{request.node.name[-20:]}"}))


def _count(container):
    return container.chroma_client().get_collection(container.settings.chroma_collection).count()


def test_ingesting_twice_does_not_duplicate(container):
    assert needs_ingest(container)
    first = ingest(container, corpus_files())
    second = ingest(container, corpus_files())

    assert first == second
    assert _count(container) == sum(first.values())
    assert not needs_ingest(container)


def test_a_shrunken_file_loses_its_stale_chunks(container, tmp_path):
    rules = tmp_path / "rules.md"
    rules.write_text("# A\n\nalpha\n\n# B\n\nbeta\n\n# C\n\ngamma\n")
    ingest(container, [rules], collection=container.settings.chroma_collection)
    rules.write_text("# A\n\nalpha\n")

    ingest(container, [rules], collection=container.settings.chroma_collection)

    assert _count(container) == 1


def test_secrets_are_read_from_ssm_when_only_the_parameter_is_named(aws_endpoint):
    boto3.client("ssm").put_parameter(
        Name="/dnd-rag/test/openai", Value="sk-from-ssm", Type="SecureString", Overwrite=True
    )

    env = with_secrets({"OPENAI_API_KEY_PARAMETER": "/dnd-rag/test/openai"})

    assert env["OPENAI_API_KEY"] == "sk-from-ssm"
    assert (
        with_secrets({"OPENAI_API_KEY": "sk-local", "OPENAI_API_KEY_PARAMETER": "/x"})["OPENAI_API_KEY"] == "sk-local"
    )


def test_the_alert_webhook_url_is_a_secret_read_from_ssm(aws_endpoint, base_env):
    url = "https://hooks.example.com/services/T000/B000/secret-token"
    boto3.client("ssm").put_parameter(Name="/dnd-rag/test/webhook", Value=url, Type="SecureString", Overwrite=True)

    env = with_secrets({**base_env, "ALERT_WEBHOOK_URL_PARAMETER": "/dnd-rag/test/webhook"})

    assert load_settings(env).alert_webhook_url == url
    assert "ALERT_WEBHOOK_URL" not in with_secrets({**base_env, "ALERT_WEBHOOK_URL_PARAMETER": ""})


def test_chroma_without_auth_needs_no_key_parameter(aws_endpoint, base_env):
    # the template passes an empty parameter name when ChromaApiKeyParameter is left empty
    env = with_secrets({**base_env, "CHROMA_API_KEY_PARAMETER": ""})

    assert "CHROMA_API_KEY" not in env
    assert load_settings(env).chroma_api_key is None


def test_a_named_secret_parameter_that_is_missing_fails_the_cold_start_naming_it(aws_endpoint):
    with pytest.raises(ConfigError, match="CHROMA_API_KEY_PARAMETER: SSM parameter /dnd-rag/test/absent"):
        with_secrets({"CHROMA_API_KEY_PARAMETER": "/dnd-rag/test/absent"})


def test_a_bad_variable_fails_the_cold_start_naming_it(base_env):
    env = python_env({**base_env, "TOKEN_BUCKET_CAPACITY": "lots"})

    result = subprocess.run(
        [sys.executable, "-c", "import dnd_rag.handlers.api"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "TOKEN_BUCKET_CAPACITY" in result.stderr
