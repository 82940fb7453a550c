"""Run the README's shell commands, in order, against a local stack, and check what they print.

    python -m infra.scripts.readme_commands [--readme README.md] [--list] [--keep-going]

What runs: every fenced ```bash / ```sh block of the README, top to bottom, unless the line just
before its fence is an HTML comment ``<!-- not run: <why> -->`` (deploy commands, ``make test``,
examples with paths the reader must fill in). Each command (lines joined over a trailing ``\\``,
an open quote, or a trailing ``|``/``&&``/``||``) runs in ``bash`` from the repository root and
must exit 0.

Special commands:
- ``[NAME=value ...] make dev`` starts the stack with those settings, as the reader would in
  another terminal: the stack that was running is stopped first (Ctrl-C), the new one runs in the
  background and the next command runs once ``$API/health`` answers. Its settings may name
  earlier assignments (``OPENAI_BASE_URL=$FAKE_OPENAI/v1``). Before the first command
  that needs one, a plain ``make dev`` is started.
- ``NAME=value`` alone (one shell word: ``API=...``, ``XP='{...}'``) is kept and set again for every
  later command.

Expected output: a comment ``# → text`` at the end of a command's last line. ``text`` is cut at
``...`` (or ``…``) into fragments that must appear in this order in what the command printed
(stdout and stderr; runs of whitespace count as one space). In a fragment, ``~N`` stands for a
whole number within 30 % of N (``# → ~30 200 ~370 503``).

The stack gets free ports for LOCAL_API_PORT, LOCAL_AWS_PORT, LOCAL_AUTH_PORT and CHROMA_PORT (and
FAKE_OPENAI_PORT for the fake OpenAI the README starts by hand) and
a temporary LOCAL_DATA_DIR; every command sees them in its environment, which is why the README
writes its URLs as ``$API`` (``API=http://127.0.0.1:${LOCAL_API_PORT:-5000}``) and
``${LOCAL_AWS_PORT:-4566}``. Settings that would change what the commands print (OpenAI keys,
AWS profiles, budgets...) are removed from the inherited environment; a ``.env`` file is not
(``make dev`` reads it): the runner warns when one exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from infra.local.processes import free_port
from infra.local.template import REPO_ROOT

FENCE = re.compile(r"^```(bash|sh)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:.*-->\s*$")
MAKE_DEV = re.compile(r"^((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)make dev\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=", re.DOTALL)
CONTINUES = ("\\", "|", "&&", "||")
# the stack's ports, and the fake OpenAI's that the README starts by hand (FAKE_OPENAI_PORT)
PORTS = ("LOCAL_API_PORT", "LOCAL_AWS_PORT", "LOCAL_AUTH_PORT", "CHROMA_PORT", "FAKE_OPENAI_PORT")
# Inherited settings that would change what the README's commands print.
DROPPED_PREFIXES = ("AWS_", "CHROMA_", "LOCAL_", "OPENAI_", "ALERT_", "BUDGET_", "TOKEN_", "DAILY_", "ANSWER_")
DROPPED = {
    "AUTH_API_URL",
    "CORS_ORIGINS",
    "LLM_PROVIDER",
    "EMBEDDING_PROVIDER",
    "EMBEDDING_MODEL",
    "TABLE_NAME",
    "PLAN_LIMITS",
    "USER_DAILY_BUDGET_USD",
    "MAX_IN_FLIGHT_PER_USER",
    "MAX_COMPLETION_TOKENS",
    "CONTROLS_REFRESH_SECONDS",
    "RETRIEVAL_ENTITY_QUERIES",
    "IP_AUTH_FAILURE_CAPACITY",
    "IP_AUTH_FAILURE_REFILL_RATE",
    "STAGE",
}
BASH = shutil.which("bash") or "/bin/bash"
COMMAND_TIMEOUT_SECONDS = 300
STACK_TIMEOUT_SECONDS = 240
ABOUT = 0.3  # ~N: within 30 % of N


@dataclass
class Command:
    text: str
    line: int  # 1-based line of the README where it starts
    expected: str | None = None

    @property
    def code(self) -> str:
        parts, quote = [], None
        for line in self.text.splitlines():
            code, _, quote = split_comment(line, quote)
            parts.append(code)
        return "\n".join(parts).strip()

    @property
    def title(self) -> str:
        first = self.text.strip().splitlines()[0]
        return first if len(first) <= 100 else first[:97] + "..."


def split_comment(line: str, quote: str | None) -> tuple[str, str | None, str | None]:
    """(code, comment or None, quote still open at the end of the line) of one shell line."""
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip(), None
    return line.rstrip(), None, quote


def commands(readme: str) -> list[Command]:
    """The commands of every runnable bash/sh block, in order."""
    found: list[Command] = []
    lines = readme.splitlines()
    previous = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if FENCE.match(line.strip()):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if not NOT_RUN.match(previous.strip()):
                found.extend(_block(lines[index + 1 : end], index + 2))
            index = end + 1
            previous = ""
            continue
        if line.strip():
            previous = line
        index += 1
    return found


def _block(lines: list[str], first_line: int) -> list[Command]:
    result: list[Command] = []
    current: list[str] = []
    start = 0
    quote: str | None = None
    expected: str | None = None
    for offset, line in enumerate(lines):
        code, comment, quote = split_comment(line, quote)
        if not current and not code.strip():
            continue  # a blank or comment-only line between commands
        if not current:
            start = first_line + offset
        current.append(line)
        if comment and comment.startswith("→"):
            expected = comment[1:].strip()
        stripped = code.strip()
        if quote is None and not stripped.endswith(CONTINUES):
            result.append(Command("\n".join(current), start, expected))
            current, expected = [], None
    if current:
        raise SystemExit(f"README line {start}: a command does not end inside its block")
    return result


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _fragment_pattern(fragment: str) -> tuple[re.Pattern[str], list[int]]:
    abouts: list[int] = []
    parts = []
    for piece in re.split(r"(~\d+)", _normalise(fragment)):
        if piece.startswith("~") and piece[1:].isdigit():
            abouts.append(int(piece[1:]))
            parts.append(r"(\d+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts)), abouts


def mismatch(expected: str, output: str) -> str | None:
    """Why ``output`` does not show ``expected`` (fragments in order, ``~N`` about N), or None."""
    text = _normalise(output)
    position = 0
    for fragment in (f.strip() for f in re.split(r"\.\.\.|…", expected)):
        if not fragment:
            continue
        pattern, abouts = _fragment_pattern(fragment)
        for match in pattern.finditer(text, position):
            values = [int(group) for group in match.groups()]
            if all(abs(value - about) <= ABOUT * about for value, about in zip(values, abouts, strict=True)):
                position = match.end()
                break
        else:
            return f"expected {fragment!r} (after position {position} of the output)"
    return None


def runner_environment(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in DROPPED and not name.startswith(DROPPED_PREFIXES)
    }
    env.update({name: str(free_port()) for name in PORTS})
    env["LOCAL_DATA_DIR"] = str(data_dir)
    env.pop("PYTHONPATH", None)  # the Makefile and `make dev` set their own
    return env


@dataclass
class Stack:
    """The `make dev` the README's commands run against, restarted when a command asks to."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] | None = field(default=None)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['LOCAL_API_PORT']}"

    def start(self, command: str, settings: dict[str, str]) -> None:
        if self.process is not None and self.settings == settings:
            return  # already running with these settings
        self.stop()
        with self.log.open("ab") as output:
            output.write(f"\n=== {command}\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                [BASH, "-c", command],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped like Ctrl-C stops it
            )
        self.settings = settings
        deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"`{command}` exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(f"`{command}`: {self.api}/health did not answer within {STACK_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process, self.settings = self.process, None, None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(line[:300] for line in text.splitlines()[-20:])


class StackError(RuntimeError):
    pass


def run(readme: Path, keep_going: bool, show: bool = False) -> int:
    found = commands(readme.read_text())
    if (REPO_ROOT / ".env").exists():
        print("readme: warning: .env exists and `make dev` reads it; its settings may change the results", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="readme-commands-") as temporary:
        data_dir = Path(temporary) / "local"
        env = runner_environment(data_dir)
        stack = Stack(env, Path(temporary) / "make-dev.log")
        ports = ", ".join(f"{name}={env[name]}" for name in PORTS)
        print(f"readme: {len(found)} commands from {readme.name}; stack on {ports}", flush=True)
        assignments: list[str] = []

        def interrupted(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupted)
        try:
            for number, command in enumerate(found, 1):
                started = time.monotonic()
                print(f"[{number}/{len(found)}] line {command.line}: {command.title}", flush=True)
                problem, output = _run_one(command, stack, assignments)
                if show and output:
                    print(_indent(_shorten(output, 600)), flush=True)
                took = time.monotonic() - started
                if problem is None:
                    print(f"    ok ({took:.1f} s)", flush=True)
                    continue
                failures += 1
                print(f"    FAILED ({took:.1f} s): {problem}", flush=True)
                if not keep_going:
                    break
        except KeyboardInterrupt:
            print("readme: interrupted", flush=True)
            failures += 1
        finally:
            if failures:
                print(f"--- last lines of `make dev`'s output ---\n{stack.tail()}", flush=True)
            stack.stop()
    print(f"readme: {'FAILED' if failures else 'passed'} ({failures} failing)", flush=True)
    return 1 if failures else 0


def _is_assignment(code: str) -> bool:
    """``NAME=value`` alone (one shell word, quotes allowed): kept for every later command."""
    try:
        words = shlex.split(code)
    except ValueError:
        return False
    return len(words) == 1 and ASSIGNMENT.match(words[0]) is not None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]}\n[...]\n{text[-limit // 2 :]}"


def _indent(text: str) -> str:
    return "\n".join(f"      {line}" for line in text.rstrip().splitlines())


def _run_one(command: Command, stack: Stack, assignments: list[str]) -> tuple[str | None, str]:
    """(what went wrong or None, what the command printed)."""
    code = command.code
    dev = MAKE_DEV.match(code)
    try:
        if dev:  # its settings may name earlier assignments (``OPENAI_BASE_URL=$FAKE_OPENAI/v1``)
            settings = dict(word.split("=", 1) for word in shlex.split(dev.group(1)))
            stack.start("\n".join([*assignments, code]), settings)
            return None, ""
        if stack.process is None:
            stack.start("make dev", {})
    except StackError as exc:
        return str(exc), ""
    script = "\n".join([*assignments, command.text])
    try:
        result = subprocess.run(
            [BASH, "-c", script],
            cwd=REPO_ROOT,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no exit within {COMMAND_TIMEOUT_SECONDS} s", ""
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        return f"exit code {result.returncode}; output:\n{_shorten(output, 3000)}", output
    if command.expected is not None:
        problem = mismatch(command.expected, output)
        if problem:
            return f"{problem}; output:\n{_shorten(output, 3000)}", output
    if _is_assignment(code):
        assignments.append(code)
    return None, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--list", action="store_true", help="print the commands that would run, and their expectations")
    parser.add_argument("--keep-going", action="store_true", help="run every command even after a failure")
    parser.add_argument("--show", action="store_true", help="print what each command printed")
    args = parser.parse_args(argv)
    if args.list:
        for command in commands(args.readme.read_text()):
            print(f"line {command.line}: {command.text}")
            if command.expected:
                print(f"    → {command.expected}")
        return 0
    return run(args.readme, args.keep_going, args.show)


if __name__ == "__main__":
    sys.exit(main())
