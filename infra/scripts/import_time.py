"""Cold-start cost of the Lambda handler: wall time to import it in a fresh interpreter.

Prints the median of several runs for the handler module (what every cold start pays) and for
the lazily imported parts that the first query pays once per container (Chroma client, OpenAI SDK).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS = 5
TARGETS = {
    "handler (dnd_rag.handlers.api)": "import dnd_rag.handlers.api",
    "first query: chromadb client": "import dnd_rag.providers.chroma_store",
    "first query: openai SDK": "import dnd_rag.providers.openai_provider",
}
SNIPPET = "import time; t = time.perf_counter(); {stmt}; print((time.perf_counter() - t) * 1000)"


def measure(statement: str) -> float:
    env = {
        **os.environ,
        "AUTH_API_URL": "http://127.0.0.1:8081",
        "TABLE_NAME": "dnd-rag-local",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "functions" / "api")]),
    }
    samples = []
    for _ in range(RUNS):
        output = subprocess.run(
            [sys.executable, "-c", SNIPPET.format(stmt=statement)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(float(output.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    print(f"import time, median of {RUNS} fresh interpreters (Python {sys.version.split()[0]}):")
    for label, statement in TARGETS.items():
        print(f"  {label:34s} {measure(statement):8.1f} ms")


if __name__ == "__main__":
    main()
