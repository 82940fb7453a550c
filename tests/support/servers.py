"""Start and stop the real local servers (emulator, Chroma, stack) for the test tiers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infra.local.processes import free_port, running, wait_for_port
from infra.local.template import REPO_ROOT

__all__ = ["REPO_ROOT", "chroma_command", "emulator_command", "free_port", "python_env", "running", "wait_for_port"]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus the import paths of the repo and the Lambda code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "functions" / "api")])
    env.update(extra or {})
    return env


def emulator_command(port: int) -> list[str]:
    return [sys.executable, "-m", "infra.local.aws_emulator", "--port", str(port)]


def chroma_command(port: int, data_dir: Path) -> list[str]:
    chroma = os.environ.get("CHROMA_BIN") or str(REPO_ROOT / ".venv-chroma" / "bin" / "chroma")
    return [chroma, "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
