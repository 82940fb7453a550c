"""Integration tier: the real handlers in-process against the real local servers.

Session-wide: the serialized AWS emulator (subprocess), a Chroma server (subprocess), the dev
auth server and a fake OpenAI server (threads). The table is created from template.yaml.
"""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from dnd_rag.container import Container
from dnd_rag.handlers.routes import create_app
from dnd_rag.settings import load_settings
from infra.local.auth_server import make_auth_server
from infra.local.bootstrap import ensure_table, verify_identities
from infra.scripts.ingest import document_paths, ingest
from tests.fakes.auth_faults import AuthScript, start_any_user_auth, start_scripted_auth
from tests.fakes.openai_server import FakeOpenAIState, start_fake_openai
from tests.fakes.webhook_receiver import ReceiverState, start_webhook_receiver
from tests.support.aws_calls import RECORDER
from tests.support.events import lambda_context
from tests.support.faults import EmulatorFaults
from tests.support.servers import REPO_ROOT, chroma_command, emulator_command, free_port, python_env, running

CORPUS = REPO_ROOT / "infra" / "corpus"
ALLOWED_ORIGIN = "http://localhost:3000"
IAM_TEST = "test_iam_policy.py"

# Before any client exists: every AWS call the Lambda code makes in this session is recorded
# (tests/support/aws_calls.py) and compared with the template's policy by test_iam_policy.py.
RECORDER.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The IAM comparison runs last, once every other test has made its AWS calls."""
    items.sort(key=lambda item: item.path.name == IAM_TEST)


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with running(emulator_command(port), port, log, env=python_env()):
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ENDPOINT_URL", endpoint)
            patch.setenv("AWS_ACCESS_KEY_ID", "testing")
            patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
            patch.delenv("AWS_PROFILE", raising=False)
            yield endpoint


@pytest.fixture(scope="session")
def dynamodb(aws_endpoint: str) -> Any:
    return boto3.client("dynamodb")


@pytest.fixture(scope="session")
def table_name(dynamodb: Any) -> str:
    name = "dnd-rag-test"
    ensure_table(dynamodb, name)
    verify_identities(boto3.client("ses"), "alerts@example.com", "ops@example.com")
    return name


@pytest.fixture
def table(dynamodb: Any, request: pytest.FixtureRequest) -> str:
    """A table of the test's own: budgets, caps, alerts and controls are global per day, so a test
    that exhausts or inspects them must not share them."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name = f"{module}-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, name)
    return name


@pytest.fixture
def recipient() -> str:
    """A verified alert recipient of the test's own (the emulator keeps every mail sent)."""
    address = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    boto3.client("ses").verify_email_identity(EmailAddress=address)
    return address


@pytest.fixture
def emulator_faults(aws_endpoint: str) -> Iterator[EmulatorFaults]:
    """The emulator's DynamoDB fault injection, switched off again after the test whatever happened."""
    faults = EmulatorFaults(aws_endpoint)
    faults.clear()
    yield faults
    faults.clear()


@pytest.fixture(scope="session")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    data = tmp_path_factory.mktemp("chroma")
    with running(chroma_command(port, data), port, data / "chroma.log", env=python_env()):
        yield port


@pytest.fixture(scope="session")
def auth_url() -> Iterator[str]:
    server = make_auth_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def any_user_auth_url() -> Iterator[str]:
    """An auth API that accepts any ``u-<id>[.<plan>]`` token as user ``<id>`` (on plan ``<plan>``)."""
    server = start_any_user_auth()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def _scripted_auth_server() -> Iterator[tuple[str, AuthScript]]:
    server, script = start_scripted_auth()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()


@pytest.fixture
def scripted_auth(_scripted_auth_server: tuple[str, AuthScript]) -> Iterator[tuple[str, AuthScript]]:
    """(URL, script) of an auth API the test scripts as it runs (tests/fakes/auth_faults.py)."""
    _scripted_auth_server[1].reset()
    yield _scripted_auth_server
    _scripted_auth_server[1].reset()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[tuple[str, FakeOpenAIState]]:
    server, state = start_fake_openai()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()


@pytest.fixture
def openai_state(fake_openai: tuple[str, FakeOpenAIState]) -> Iterator[FakeOpenAIState]:
    fake_openai[1].reset()
    yield fake_openai[1]
    fake_openai[1].reset()


@pytest.fixture(scope="session")
def base_env(table_name: str, chroma_port: int, auth_url: str) -> dict[str, str]:
    """The offline configuration every integration test starts from."""
    return {
        "AUTH_API_URL": auth_url,
        "TABLE_NAME": table_name,
        "CHROMA_HOST": "127.0.0.1",
        "CHROMA_PORT": str(chroma_port),
        "CHROMA_COLLECTION": "rules_offline",
        "CORS_ORIGINS": f"{ALLOWED_ORIGIN},https://react.example.com",
        "ALERT_EMAIL": "ops@example.com",
        "ALERT_FROM": "alerts@example.com",
        "LLM_PROVIDER": "offline",
        "EMBEDDING_PROVIDER": "offline",
        # The shared dev users must not run out during the suite; limit tests use their own users.
        "TOKEN_BUCKET_CAPACITY": "100000",
        "DAILY_USER_REQUEST_LIMIT": "100000",
        # Off unless a test turns it on (tests/integration/test_answer_cache.py): most tests ask the
        # same question again and again and need each one computed, billed and settled.
        "ANSWER_CACHE_TTL": "0",
        # Off unless a test turns it on (tests/integration/test_relevance_gate.py): many tests ask "hi"
        # or a question the sample corpus does not cover and need the chat call made, billed and settled.
        "MIN_RELEVANCE": "0",
        # Concurrency tests of other limits use one user from many threads; the in-flight limit
        # has tests of its own (test_user_limits.py).
        "MAX_IN_FLIGHT_PER_USER": "1000",
        # Every user has a dollar cap by default (0.05); the shared dev users ask all day long, and
        # the cap has tests of its own (test_user_limits.py, test_plans.py).
        "USER_DAILY_BUDGET_USD": "none",
        # Every test request comes from one address, and a token the caches do not know holds one
        # failed-sign-in slot of it while the auth API answers: tests sending dozens of new tokens at
        # once would see 429 ip_rate_limited. The guard has tests of its own (test_rate_limits.py).
        "IP_AUTH_FAILURE_CAPACITY": "1000",
        # The money tests ask with k up to 50, which the default plan (max_k 20) refuses; the plan
        # limit has tests of its own (test_plans.py).
        "PLAN_LIMITS": '{"default": {"max_k": 50}}',
    }


@pytest.fixture(scope="session")
def openai_env(base_env: dict[str, str], fake_openai: tuple[str, FakeOpenAIState]) -> dict[str, str]:
    """The same stack with the real OpenAI client pointed at the local fake server."""
    return {
        **base_env,
        "LLM_PROVIDER": "openai",
        "EMBEDDING_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": fake_openai[0],
        "CHROMA_COLLECTION": "rules_openai",
        "OPENAI_TIMEOUT_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def corpus_ingested(base_env: dict[str, str], openai_env: dict[str, str]) -> None:
    for env in (base_env, openai_env):
        ingest(Container(load_settings(env)), document_paths([CORPUS]))


Invoke = Callable[..., dict[str, Any]]


@pytest.fixture
def make_app(
    base_env: dict[str, str], corpus_ingested: None
) -> Callable[..., tuple[APIGatewayHttpResolver, Container]]:
    """A fresh container and app (a "cold start") with configuration overrides."""

    def build(env: dict[str, str] | None = None, **kwargs: Any) -> tuple[APIGatewayHttpResolver, Container]:
        container = Container(load_settings({**base_env, **(env or {})}), **kwargs)
        return create_app(container), container

    return build


@pytest.fixture
def call() -> Callable[[APIGatewayHttpResolver, dict[str, Any]], dict[str, Any]]:
    def invoke(app: APIGatewayHttpResolver, event: dict[str, Any]) -> dict[str, Any]:
        return app.resolve(event, lambda_context())

    return invoke


@pytest.fixture
def lambda_module(base_env: dict[str, str], corpus_ingested: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Lambda entry module, imported (cold start) with the integration configuration."""
    for key, value in base_env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("dnd_rag.handlers.api", None)
    return importlib.import_module("dnd_rag.handlers.api")


@pytest.fixture
def unique_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def corpus_files() -> list[Path]:
    return document_paths([CORPUS])


@pytest.fixture
def receiver() -> Iterator[tuple[str, ReceiverState]]:
    """A webhook receiver (tests/fakes/webhook_receiver.py) for ALERT_WEBHOOK_URL: its URL and state."""
    server, state = start_webhook_receiver()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/dnd-rag", state
    state.release.set()
    server.shutdown()


@pytest.fixture
def sns_topic(aws_endpoint):
    """A topic in the emulator with an SQS queue subscribed: what SNS published, read back."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def published():
        messages = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(message)
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    return topic, published
