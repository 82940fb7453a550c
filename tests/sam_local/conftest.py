"""The e2e contract tier through ``sam local start-api`` on the built function (``make e2e-sam``; Docker).

``infra/local/sam_local.py`` is started as ``make sam-local`` starts it, on free ports and its own
data directory: ``sam build``, the Lambda image, the services on the Docker bridge, SAM's API
emulator in front of the runtime interface emulator and client.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.local.sam_local import SAM_STOP_SECONDS
from tests.support.servers import free_port, python_env, running

INHERITED = ("AWS_ENDPOINT_URL", "AUTH_API_URL", "OPENAI_API_KEY", "LLM_PROVIDER", "EMBEDDING_PROVIDER", "CORS_ORIGINS")
# First run on a new machine: image (~90 s) + sam build (~60 s) + SAM's own image layer.
STARTUP_TIMEOUT_SECONDS = 1200
REPORT = re.compile(r"REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: (?P<duration>[\d.]+) ms")


@pytest.fixture(scope="session")
def sam_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sam-local-log") / "sam-local.log"


@pytest.fixture(scope="session")
def sam_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sam-local")


@pytest.fixture(scope="session")
def sam_url(sam_data_dir: Path, sam_log: Path) -> Iterator[str]:
    data_dir = sam_data_dir
    port = free_port()
    settings = {name: str(free_port()) for name in ("LOCAL_AWS_PORT", "CHROMA_PORT", "LOCAL_AUTH_PORT")}
    env = python_env(
        {
            **settings,
            "SAM_LOCAL_PORT": str(port),
            "LOCAL_DATA_DIR": str(data_dir),
            "SAM_LOCAL_BUILD_DIR": str(data_dir / "build"),
            "TABLE_NAME": "dnd-rag-e2e-sam",
        }
    )
    for inherited in INHERITED:
        env.pop(inherited, None)  # configured by sam_local itself, as on a fresh clone
    command = [sys.executable, "-m", "infra.local.sam_local"]
    stop_timeout = SAM_STOP_SECONDS + 30  # sam local removes its container, then images are pruned
    with running(command, port, sam_log, env, STARTUP_TIMEOUT_SECONDS, stop_timeout) as process:
        yield f"http://127.0.0.1:{port}"
        assert process.poll() is None, "sam local stopped during the tests"
    LOGS.append(sam_log)


LOGS: list[Path] = []
SUMMARY_LINES = ("runtime-image: built", "runtime-image: using", "sam-local: sam build", "sam-local: ready")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The runtime interface emulator's REPORT lines: the first invocation (init included) and the rest."""
    for log in LOGS:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(SUMMARY_LINES):
                terminalreporter.write_line(line)
        reports = [match.groupdict() for match in REPORT.finditer(text)]
        if reports:
            durations = [round(float(r["duration"])) for r in reports]
            terminalreporter.write_line(
                f"sam local: {len(reports)} invocations through the runtime interface emulator; "
                f"Duration (ms) in order: {durations}"
            )


@pytest.fixture(scope="session")
def client(sam_url: str) -> Iterator[httpx.Client]:
    # SAM's emulator allows 30 s; the first invocation also creates the execution environment.
    with httpx.Client(base_url=sam_url, timeout=60) as http:
        yield http
