"""Cold start of the built function, measured through the Lambda runtime interface emulator.

Needs ``make sam-local`` running (its build, Lambda image, services and settings). Each sample is a
new execution environment: a fresh container of the same image with SAM's runtime interface
emulator, the built function at /var/task and the built layer at /opt, as ``sam local`` runs it.
It is invoked with ``GET /health``, then a first query, then warm queries, and the emulator's
REPORT lines give each invocation's Duration. The emulator does not run the init phase on its
own (it reports ``Init Duration: 0.05 ms``): init is inside the first invocation's Duration.

    make cold-start [SAMPLES=3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import samcli

from infra.local.api_server import build_event
from infra.local.processes import wait_for_port
from infra.local.runtime_image import docker
from infra.local.template import REPO_ROOT

HANDLER = "dnd_rag.handlers.api.lambda_handler"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
QUESTIONS = (
    "How many experience points does a fighter need to become 9th level?",
    "What is a beholder?",
    "How does a white dragon breathe?",
    "What is the armor class of a red dragon?",
    "How long does a fireball spell last?",
    "What happens on a critical hit?",
)
REPORT = re.compile(r"REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: (?P<ms>[\d.]+) ms")


def http_event(method: str, path: str, token: str | None = None, body: dict[str, Any] | None = None) -> bytes:
    headers = {"content-type": "application/json", "host": "127.0.0.1", "user-agent": "cold-start"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    raw = json.dumps(body).encode() if body is not None else b""
    route_key = f"{method} {path}"
    return json.dumps(build_event(method, path, "", headers, raw, route_key, {}, "127.0.0.1")).encode()


def container_environment(data_dir: Path) -> dict[str, str]:
    """The function's settings under sam local, plus what SAM gives every function (limits raised: many queries)."""
    env = json.loads((data_dir / "sam-env.json").read_text())["ApiFunction"]
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_HANDLER": HANDLER,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "29",
            "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_SERVICE_NAME": "dnd_rag",
            "POWERTOOLS_METRICS_NAMESPACE": "DndRag",
            "LOG_LEVEL": "WARNING",
            "TOKEN_BUCKET_CAPACITY": "1000",
            "DAILY_USER_REQUEST_LIMIT": "100000",
        }
    )
    return env


def invoke(port: int, event: bytes) -> dict[str, Any]:
    # Docker's port proxy accepts before the emulator in the container listens: retry a reset.
    for _ in range(50):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{INVOKE_PATH}", data=event, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
                return dict(json.loads(response.read()))
        except (ConnectionResetError, http.client.RemoteDisconnected):
            time.sleep(0.2)
    raise SystemExit("cold-start: the runtime interface emulator never answered")


def sample(state: dict[str, Any], env: dict[str, str], warm_queries: int) -> list[float]:
    """Durations (ms) of /health, the first query and ``warm_queries`` more, in one new environment."""
    build = Path(state["template"]).parent
    rie = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{state['arch']}"
    command = ["run", "-d", "--rm", "-p", "127.0.0.1::8080", "--entrypoint", "/var/rapid/aws-lambda-rie"]
    command += ["-v", f"{build / 'ApiFunction'}:/var/task:ro", "-v", f"{build / 'DependenciesLayer'}:/opt:ro"]
    command += ["-v", f"{rie}:/var/rapid/aws-lambda-rie:ro"]
    for name, value in env.items():
        command += ["-e", f"{name}={value}"]
    container = docker(*command, state["image"]).stdout.strip()
    try:
        port = int(docker("port", container, "8080/tcp").stdout.split()[0].rsplit(":", 1)[1])
        wait_for_port(port, timeout=60)
        events = [http_event("GET", "/health")]
        for n in range(warm_queries + 1):
            body = {"question": QUESTIONS[n % len(QUESTIONS)] + f" ({time.time_ns()})"}
            events.append(http_event("POST", "/api/query", "dev-bob", body))
        for event in events:
            answer = invoke(port, event)
            if answer.get("statusCode") != 200:
                raise SystemExit(f"cold-start: the function answered {answer}")
        time.sleep(0.5)  # the emulator writes REPORT after the response
        logs = docker("logs", container)
    finally:
        docker("stop", "-t", "2", container, check=False)
    durations = [float(match["ms"]) for match in REPORT.finditer(logs.stdout + logs.stderr)]
    if len(durations) != len(events):
        raise SystemExit(f"cold-start: {len(durations)} REPORT lines for {len(events)} invocations")
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=int(os.environ.get("SAMPLES", "3")))
    parser.add_argument("--warm", type=int, default=5, help="warm queries per environment")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".local" / "sam-local")
    args = parser.parse_args()
    state_file = args.data_dir / "sam-local.json"
    if not state_file.exists():
        raise SystemExit(f"cold-start: {state_file} not found; start `make sam-local` first")
    state = json.loads(state_file.read_text())
    env = container_environment(args.data_dir)
    runs = [sample(state, env, args.warm) for _ in range(args.samples)]
    health = [run[0] for run in runs]
    first = [run[1] for run in runs]
    warm = [duration for run in runs for duration in run[2:]]
    print(f"cold start through the runtime interface emulator ({state['image']}, {args.samples} environments):")
    print(f"  first invocation, GET /health (init + handler) ms: {[round(d) for d in health]}")
    print(f"  first query (lazy SDK imports, first connections) ms: {[round(d) for d in first]}")
    print(f"  warm queries ms: median {statistics.median(warm):.0f}, max {max(warm):.0f} ({len(warm)} invocations)")


if __name__ == "__main__":
    main()
