"""End-to-end tier: `infra/local/stack.py` started as `make dev` starts it, on free ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, python_env, running

INHERITED = (
    *("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),  # the session's (tests/conftest.py)
    *("AUTH_API_URL", "OPENAI_API_KEY", "LLM_PROVIDER", "EMBEDDING_PROVIDER", "CORS_ORIGINS"),
)


@contextmanager
def local_stack(data_dir: Path, environment: dict[str, str] | None = None, **settings: str) -> Iterator[str]:
    """The whole local stack on free ports; yields the API's base URL (its environment goes into
    ``environment`` when given, for commands run against it, such as the ingest CLI)."""
    ports = {name: str(free_port()) for name in ("LOCAL_AWS_PORT", "CHROMA_PORT", "LOCAL_AUTH_PORT", "LOCAL_API_PORT")}
    env = python_env({**ports, "LOCAL_DATA_DIR": str(data_dir), "TABLE_NAME": "dnd-rag-e2e"})
    for inherited in INHERITED:
        env.pop(inherited, None)  # the stack must configure itself, as on a fresh clone
    env.update(settings)
    if environment is not None:
        environment.update(env)
    api_port = int(ports["LOCAL_API_PORT"])
    with running(
        [sys.executable, "-m", "infra.local.stack"], api_port, data_dir / "stack.log", env=env, timeout=180
    ) as process:
        yield f"http://127.0.0.1:{api_port}"
        assert process.poll() is None, "the stack stopped during the tests"


@pytest.fixture(scope="session")
def browser_page_origin() -> str:
    """An origin the stack allows, where the CORS browser test serves its page."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The started stack's environment (filled in by ``stack_url``)."""
    return {}


@pytest.fixture(scope="session")
def stack_url(
    tmp_path_factory: pytest.TempPathFactory, browser_page_origin: str, stack_env: dict[str, str]
) -> Iterator[str]:
    origins = f"{browser_page_origin},http://localhost:3000"
    # The burst test sends one user's queries 8 at a time: the in-flight limit (default 2) has a
    # stack of its own (test_user_limits.py)
    with local_stack(
        tmp_path_factory.mktemp("stack"), stack_env, CORS_ORIGINS=origins, MAX_IN_FLIGHT_PER_USER="20"
    ) as url:
        yield url


@pytest.fixture(scope="session")
def client(stack_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack_url, timeout=30) as http:
        yield http
