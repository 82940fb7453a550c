"""The ingester by hand: one clear line when Chroma is down; where each file goes by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.scripts.ingest import default_collection
from tests.support.servers import REPO_ROOT, free_port, python_env


def test_with_chroma_down_one_line_names_host_and_port_and_asks_if_make_dev_runs(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nSomething.\n")
    port = free_port()  # nothing listens there

    result = subprocess.run(
        [sys.executable, "-m", "infra.scripts.ingest", str(notes)],
        cwd=REPO_ROOT,
        env=python_env({"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(port)}),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"ingest: cannot reach Chroma at http://127.0.0.1:{port} — is `make dev` running? "
        "(CHROMA_HOST and CHROMA_PORT say where, in the environment or .env)"
    ]


def test_every_file_gets_its_own_collection_except_the_sample_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert default_collection(tmp_path / "My Book.md", "dnd_rules") == "my_book"
    assert default_collection(Path("Monster Manual.pdf"), "dnd_rules") == "monster_manual"
    assert default_collection(REPO_ROOT / "infra" / "corpus" / "beholder.md", "dnd_rules") == "dnd_rules"
    assert default_collection(Path("infra/corpus/combat.md"), "sample") == "sample"  # relative to the repo
