"""``make dev``'s terminal is for people: a line per request (no JSON, no EMF), and Ctrl-C stops
everything quietly with a one-line summary. Measured on the real stack, its output captured as a
terminal shows it, Ctrl-C sent as a terminal sends it (SIGINT to the foreground process group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import INHERITED
from tests.support.servers import REPO_ROOT, free_port, python_env

QUESTIONS = [
    "What is a beholder?",
    "How does a red dragon fight?",
    "What can a fighter do at 9th level?",
    "How do spell slots work?",
    "What is a white dragon's breath?",
]


def wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text(errors="replace").splitlines()
        if any(text in line for line in lines):
            return lines
        assert process.poll() is None, path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n{path.read_text(errors='replace')[-3000:]}")


def test_twenty_queries_print_at_most_25_lines_and_ctrl_c_exits_with_a_one_line_summary(tmp_path):
    ports = {name: str(free_port()) for name in ("LOCAL_AWS_PORT", "CHROMA_PORT", "LOCAL_AUTH_PORT", "LOCAL_API_PORT")}
    env = python_env({**ports, "LOCAL_DATA_DIR": str(tmp_path / "data"), "TABLE_NAME": "dnd-rag-terminal"})
    for inherited in (*INHERITED, "LOG_FORMAT"):
        env.pop(inherited, None)  # as on a fresh clone
    terminal = tmp_path / "terminal.txt"
    with terminal.open("wb") as output:
        stack = subprocess.Popen(
            [sys.executable, "-m", "infra.local.stack"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a foreground process group of its own, as in a terminal
        )
    try:
        shown = len(wait_for(terminal, "stack: ready", stack, timeout=180))

        # 20 queries: two users, each question twice (misses, then cache hits)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['LOCAL_API_PORT']}", timeout=30) as client:
            for round_ in range(2):
                for user in ("dev-alice", "dev-bob"):
                    for question in QUESTIONS:
                        response = client.post(
                            "/api/query",
                            json={"question": f"{question} ({user})"},
                            headers={"Authorization": f"Bearer {user}"},
                        )
                        assert response.status_code == 200, (round_, response.text)

        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C
        code = stack.wait(timeout=60)
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()

    text = terminal.read_text(errors="replace")
    lines = text.splitlines()[shown:]
    assert code == 0
    assert "Traceback" not in text
    assert len(lines) <= 25, "\n".join(lines)
    queries = [line for line in lines if line.startswith("POST /api/query 200 ")]
    assert len(queries) == 20
    assert sum(" cache=hit $0" in line for line in queries) == 10
    assert {line.split()[3] for line in queries} == {"alice", "bob"}  # names, never tokens
    assert "dev-alice" not in "\n".join(lines)
    assert not [line for line in lines if line.lstrip().startswith("{")]  # no JSON, no EMF
    assert lines[-1].startswith("stack: stopped after ")
    assert "20 requests (20 x 200)" in lines[-1]
