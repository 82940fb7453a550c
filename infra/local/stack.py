"""``make dev``: the whole stack on 127.0.0.1, until Ctrl-C.

Starts the serialized AWS emulator (4566), Chroma (8060), the dev auth server (8081), prepares
the table and SES identities, ingests the sample corpus on first run, and serves the API (5000)
from template.yaml's routes. Every port and setting can be overridden by the environment or
``.env``; the environment wins over ``.env``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from dotenv import dotenv_values

from infra.local.aws_guard import ENDPOINT, RealAwsError, use_local_aws
from infra.local.clock import START_VARIABLE, ClockStartError, clock_environment
from infra.local.processes import StartupError, owns_listener, port_in_use, stop, wait_for_port
from infra.local.template import REPO_ROOT

READY_TIMEOUT_SECONDS = 90
# What each part of the stack listens on, and the variable that moves it (environment or .env).
PORT_VARIABLES = {
    "api": "LOCAL_API_PORT",
    "aws-emulator": "LOCAL_AWS_PORT",
    "chroma": "CHROMA_PORT",
    "auth": "LOCAL_AUTH_PORT",
}


def busy_message(port: int | str, variable: str) -> str:
    return f"port {port} is in use — set {variable} (or put it in .env)"


def port_problems(env: dict[str, str], host: str = "127.0.0.1") -> list[str]:
    """Every port the stack would listen on that it cannot have, one line each: checked before
    anything starts, so a busy port is named at once instead of failing half-way."""
    problems: list[str] = []
    owners: dict[int, str] = {}
    for variable in PORT_VARIABLES.values():
        value = env[variable]
        if not value.isdigit() or not 0 < int(value) < 65536:
            problems.append(f"{variable}={value!r} is not a port (1-65535)")
        elif int(value) in owners:
            problems.append(f"{owners[int(value)]} and {variable} are both {value}: give each its own port")
        else:
            owners[int(value)] = variable
    for port, variable in owners.items():
        if port_in_use(port, host):
            problems.append(busy_message(port, variable))
    return problems


def configured_environment(base: dict[str, str], dotenv: Path = REPO_ROOT / ".env") -> dict[str, str]:
    """What the user configured: ``.env`` under the real environment ``base``, no defaults."""
    env = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
    env.update(base)
    return env


def local_environment(base: dict[str, str], dotenv: Path = REPO_ROOT / ".env") -> dict[str, str]:
    """The environment of every child: ``.env`` under the real environment, then local defaults."""
    env = configured_environment(base, dotenv)
    aws_port = env.setdefault("LOCAL_AWS_PORT", "4566")
    auth_port = env.setdefault("LOCAL_AUTH_PORT", "8081")
    env.setdefault("LOCAL_API_PORT", "5000")
    env.setdefault("LOCAL_DATA_DIR", str(REPO_ROOT / ".local"))
    defaults = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "dnd-rag-local",
        "AUTH_API_URL": f"http://127.0.0.1:{auth_port}",
        "CHROMA_HOST": "127.0.0.1",
        "CHROMA_PORT": "8060",
        "CORS_ORIGINS": "http://localhost:3000,http://127.0.0.1:3000",
        "ALERT_EMAIL": "ops@example.com",
        "ALERT_FROM": "alerts@example.com",
        "POWERTOOLS_SERVICE_NAME": "dnd_rag",
        "POWERTOOLS_METRICS_NAMESPACE": "DndRag",
        "ANONYMIZED_TELEMETRY": "False",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    paths = [str(REPO_ROOT), str(REPO_ROOT / "functions" / "api"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def chroma_command(env: dict[str, str], data_dir: Path, host: str = "127.0.0.1") -> list[str]:
    chroma = env.get("CHROMA_BIN") or str(REPO_ROOT / ".venv-chroma" / "bin" / "chroma")
    if not Path(chroma).exists():
        raise SystemExit(f"stack: Chroma server not found at {chroma}; run `make install` first")
    return [chroma, "run", "--path", str(data_dir / "chroma"), "--host", host, "--port", env["CHROMA_PORT"]]


class Stack:
    """Child processes listening on ``host`` (127.0.0.1 for ``make dev``), stopped in reverse order."""

    def __init__(self, env: dict[str, str], host: str = "127.0.0.1") -> None:
        self.env = env
        self.host = host
        self.data_dir = Path(env["LOCAL_DATA_DIR"])
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], port: int, quiet: bool = False) -> None:
        log = self.data_dir / f"{name}.log" if quiet else None
        output = log.open("ab") if log else None
        # Its own process group: Ctrl-C reaches the stack alone, which stops every child quietly.
        process = subprocess.Popen(command, env=self.env, cwd=REPO_ROOT, stdout=output, stderr=output, process_group=0)
        self.children.append(process)
        try:
            wait_for_port(port, process, READY_TIMEOUT_SECONDS, log, host=self.host)
        except StartupError as exc:
            raise SystemExit(f"stack: {name} did not start: {exc}") from None
        if owns_listener(process.pid, port) is False:  # something else took the port since the check
            raise SystemExit(f"stack: {name} did not start: {busy_message(port, PORT_VARIABLES.get(name, 'its port'))}")
        print(f"stack: {name} ready on http://{self.host}:{port}", flush=True)

    def start_services(self) -> None:
        """What the API needs (AWS emulator, Chroma, dev auth), with the table, identities and corpus ready.

        The API itself is not started: ``make dev`` serves it in-process, ``make sam-local`` through
        ``sam local start-api``. The setup steps reach the services through ``AWS_ENDPOINT_URL`` and
        ``CHROMA_HOST`` in ``self.env``."""
        python = sys.executable
        env = self.env
        self.start(
            "aws-emulator",
            [python, "-m", "infra.local.aws_emulator", "--host", self.host, "--port", env["LOCAL_AWS_PORT"]],
            int(env["LOCAL_AWS_PORT"]),
            quiet=True,
        )
        chroma = chroma_command(env, self.data_dir, self.host)
        self.start("chroma", chroma, int(env["CHROMA_PORT"]), quiet=True)
        self.start(
            "auth",
            [python, "-m", "infra.local.auth_server", "--host", self.host, "--port", env["LOCAL_AUTH_PORT"]],
            int(env["LOCAL_AUTH_PORT"]),
        )
        self.run_step([python, "-m", "infra.local.bootstrap"])
        self.run_step(
            [python, "-m", "infra.scripts.ingest", "--if-empty", "--yes", str(REPO_ROOT / "infra" / "corpus")]
        )

    def run_step(self, command: list[str]) -> None:
        subprocess.run(command, env=self.env, cwd=REPO_ROOT, check=True, process_group=0)

    def stop(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.terminate()  # all at once: shutting down takes as long as the slowest
        for process in reversed(self.children):
            stop(process)


def main() -> int:
    env = local_environment(dict(os.environ))
    try:
        # its own emulator only, whatever AWS profile or keys the shell carries
        use_local_aws(env, "stack", hint=f"; unset {ENDPOINT} (make dev starts its own on LOCAL_AWS_PORT)")
        clock_start = clock_environment(env)  # once, before anything starts: one clock for every child
    except (ClockStartError, RealAwsError) as exc:
        print(f"stack: {exc}" if isinstance(exc, ClockStartError) else exc, file=sys.stderr, flush=True)
        return 2
    stack = Stack(env)
    busy = port_problems(env, stack.host)
    if busy:
        for line in busy:
            print(f"stack: {line}", file=sys.stderr, flush=True)
        return 2
    if clock_start is not None:
        print(f"stack: the local clock starts at {clock_start:%Y-%m-%dT%H:%M:%SZ} ({START_VARIABLE}), real speed")
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    # make dev's terminal is for people: a line per request (LOG_FORMAT=json: the JSON logs and EMF)
    env.setdefault("LOG_FORMAT", "human")
    summary = stack.data_dir / "api-summary.txt"
    summary.unlink(missing_ok=True)
    env["LOCAL_API_SUMMARY_FILE"] = str(summary)
    started = time.monotonic()

    def shutdown(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGHUP, shutdown)  # a closed terminal: the children are in groups of their own
    try:
        stack.start_services()
        stack.start(
            "api", [python, "-m", "infra.local.api_server", "--port", env["LOCAL_API_PORT"]], int(env["LOCAL_API_PORT"])
        )
        print(
            f"stack: ready. Try: curl -H 'Authorization: Bearer dev-alice' -H 'Content-Type: application/json' "
            f'-d \'{{"question":"What is a beholder?"}}\' http://127.0.0.1:{env["LOCAL_API_PORT"]}/api/query',
            flush=True,
        )
        while all(process.poll() is None for process in stack.children):
            time.sleep(0.5)
        print("stack: a component stopped; shutting down", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        stack.stop()
        if sys.stdout.isatty():
            print()  # past the terminal's ^C
        answered = summary.read_text(encoding="utf-8") if summary.exists() else "no requests"
        print(f"stack: stopped after {_duration(time.monotonic() - started)}: {answered}", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"stack: setup step failed ({exc})", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


if __name__ == "__main__":
    sys.exit(main())
