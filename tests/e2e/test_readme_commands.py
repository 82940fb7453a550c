"""The top-level README, run as written: every command of its bash blocks, in order, against
``make dev`` started as the README says (on free ports, which is why every command goes through
``$API``), each exiting 0 and printing what its ``# → ...`` comment says (infra/scripts/readme_commands.py)."""

import subprocess
import sys

import pytest

from tests.support.servers import REPO_ROOT, python_env

pytestmark = pytest.mark.e2e

TIMEOUT_SECONDS = 900  # ~2 min here: five stacks (the README restarts make dev with new settings) and 400 queries


def test_every_readme_command_runs_and_prints_what_the_readme_says(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "infra.scripts.readme_commands"],
        cwd=REPO_ROOT,
        env=python_env({"TMPDIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
