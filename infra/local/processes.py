"""Starting local servers as child processes and waiting until they listen (stack, tests, bench)."""

from __future__ import annotations

import os
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


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on ``host:port`` (it answers), or a server could not bind it there."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket() as candidate:
        # as our servers bind (SO_REUSEADDR): a closed connection's TIME_WAIT is not "in use"
        candidate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            candidate.bind((host, port))
        except OSError:
            return True
    return False


def owns_listener(pid: int, port: int) -> bool | None:
    """Whether the socket listening on TCP ``port`` belongs to process ``pid`` or one of its
    descendants; None where the system cannot tell (no /proc: macOS)."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table, encoding="ascii") as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    # local_address is HEXIP:HEXPORT; state 0A is LISTEN
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
    except OSError:
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for process in _family(pid):
        try:
            descriptors = os.listdir(f"/proc/{process}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{process}/fd/{descriptor}") in sockets:
                    return True
            except OSError:
                continue
    return False


def _family(pid: int) -> set[int]:
    """``pid`` and its descendants (from /proc/<pid>/stat's parent ids)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    family = {pid}
    grew = True
    while grew:
        children = {child for child, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    return family


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
