"""Starting local servers as child processes and waiting until they listen (stack, tests, bench)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local.template import REPO_ROOT


class StartupError(RuntimeError):
    """A child process exited or never listened."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 90.0,
    log: Path | None = None,
    host: str = "127.0.0.1",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StartupError(f"{process.args!r} exited with code {process.returncode}{_tail(log)}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise StartupError(f"nothing listened on {host}:{port} within {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return f"\n--- last lines of {log} ---\n{log.read_text(errors='replace')[-4000:]}"


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running(
    command: list[str], port: int, log: Path, env: dict[str, str], timeout: float = 90.0, stop_timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output to ``log``) for the duration of the block, once it listens on ``port``.

    On exit it is sent SIGTERM and given ``stop_timeout`` seconds to stop its own children."""
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=output)
    try:
        wait_for_port(port, process, timeout, log)
        yield process
    finally:
        stop(process, stop_timeout)
