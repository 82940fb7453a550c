"""make dev checks every port before starting anything, names the busy one and the variable that
moves it, and never says "ready" for a port it does not own; the ingester reads the same ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from infra.local.processes import free_port, owns_listener, port_in_use
from infra.local.stack import Stack, local_environment, port_problems
from tests.support.servers import REPO_ROOT, python_env

PORTS = ("LOCAL_API_PORT", "LOCAL_AWS_PORT", "CHROMA_PORT", "LOCAL_AUTH_PORT")


@contextmanager
def listening() -> Iterator[int]:
    """A port something else (this test) listens on, as AirPlay does on 5000."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def free_ports() -> dict[str, str]:
    return {name: str(free_port()) for name in PORTS}


@pytest.mark.parametrize("variable", PORTS)
def test_make_dev_exits_within_seconds_naming_a_busy_port_and_its_variable(tmp_path, variable):
    with listening() as busy:
        env = python_env({**free_ports(), variable: str(busy), "LOCAL_DATA_DIR": str(tmp_path)})
        started = time.monotonic()

        result = subprocess.run(
            [sys.executable, "-m", "infra.local.stack"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert f"stack: port {busy} is in use — set {variable} (or put it in .env)" in result.stderr
    assert "ready" not in result.stdout  # nothing was started
    assert not (tmp_path / "aws-emulator.log").exists()


def test_two_parts_on_one_port_are_refused():
    port = str(free_port())
    env = {**free_ports(), "LOCAL_API_PORT": port, "CHROMA_PORT": port}

    assert port_problems(env) == [f"LOCAL_API_PORT and CHROMA_PORT are both {port}: give each its own port"]
    assert port_problems({**free_ports(), "LOCAL_AUTH_PORT": "http"}) == [
        "LOCAL_AUTH_PORT='http' is not a port (1-65535)"
    ]


def test_a_port_taken_after_the_check_is_never_reported_ready(tmp_path):
    # A child that never listens, on a port someone else took meanwhile: it answers, but not from us
    stack = Stack({"LOCAL_DATA_DIR": str(tmp_path)})
    with listening() as taken:
        try:
            with pytest.raises(SystemExit, match=f"port {taken} is in use — set LOCAL_API_PORT"):
                stack.start("api", [sys.executable, "-c", "import time; time.sleep(60)"], taken)
        finally:
            stack.stop()


def test_who_listens_on_a_port_is_told_apart():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with listening() as port:
            assert port_in_use(port)
            assert owns_listener(os.getpid(), port) is True
            assert owns_listener(child.pid, port) is False
    finally:
        child.kill()
        child.wait()
    assert not port_in_use(free_port())


def test_the_ingester_reads_the_stacks_ports_from_dotenv(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("CHROMA_PORT=8613\nLOCAL_AWS_PORT=4613\n")
    for name in (*PORTS, "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)

    env = local_environment(dict(os.environ), dotenv)

    assert env["CHROMA_PORT"] == "8613"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4613"
