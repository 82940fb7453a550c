"""Start and stop the real local servers (emulator, Chroma, stack) for the test tiers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "functions" / "api")])
    env.update(extra or {})
    return env


@contextmanager
def running(
    command: list[str], port: int, log: Path, env: dict[str, str] | None = None, timeout: float = 90.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; fail with its log if it never listens on ``port``."""
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env or python_env(), stdout=output, stderr=output)
    try:
        try:
            wait_for_port(port, process, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- {log} ---\n{log.read_text(errors='replace')[-4000:]}") from None
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def emulator_command(port: int) -> list[str]:
    return [sys.executable, "-m", "infra.local.aws_emulator", "--port", str(port)]


def chroma_command(port: int, data_dir: Path) -> list[str]:
    chroma = os.environ.get("CHROMA_BIN") or str(REPO_ROOT / ".venv-chroma" / "bin" / "chroma")
    return [chroma, "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
