"""``make sam-local``: the built function behind ``sam local start-api``, until Ctrl-C.

``sam build`` for the Docker engine's architecture, the supporting services of ``make dev`` (AWS
emulator, Chroma, dev auth) listening where the function's container reaches them (the default
bridge's gateway on Linux; 127.0.0.1 through ``host.docker.internal`` on Docker Desktop), and
``sam local start-api`` on 127.0.0.1:${SAM_LOCAL_PORT:-3001} with a Lambda image from
``infra.local.runtime_image``. Ctrl-C (or SIGTERM) stops everything it started.

Overrides: ``SAM_LOCAL_BIND_HOST`` (where the services listen), ``SAM_LOCAL_CONTAINER_HOST`` (how
the container names that address), ``SAM_LOCAL_ARCH``, ``SAM_LOCAL_IMAGE=local`` (never pull), plus
every setting of ``make dev`` (``.env``, ``LOCAL_*_PORT``, ``LOCAL_DATA_DIR``...).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import boto3

from infra.local import runtime_image
from infra.local.stack import Stack, local_environment
from infra.local.template import REPO_ROOT, load_template

READY_TIMEOUT_SECONDS = float(os.environ.get("SAM_LOCAL_READY_TIMEOUT", "300"))
FUNCTION = "ApiFunction"
LOCAL_OPENAI_KEY_PARAMETER = "/dnd-rag/local/openai-api-key"


def docker_answers() -> bool:
    try:
        return runtime_image.docker("info", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def is_docker_desktop() -> bool:
    name = runtime_image.docker("info", "--format", "{{.OperatingSystem}}").stdout
    return "Docker Desktop" in name


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge (what a container on it reaches the host by)."""
    inspected = json.loads(runtime_image.docker("network", "inspect", "bridge").stdout)[0]
    for config in inspected["IPAM"]["Config"] or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
        if config.get("Subnet"):
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))  # Docker's default gateway
    raise SystemExit("sam-local: Docker's bridge network has no address; set SAM_LOCAL_BIND_HOST")


def addresses() -> tuple[str, str]:
    """(where the services listen, how the function's container reaches them)."""
    bind = os.environ.get("SAM_LOCAL_BIND_HOST")
    container = os.environ.get("SAM_LOCAL_CONTAINER_HOST")
    if not bind:
        # Docker Desktop forwards host.docker.internal to the host's loopback; a Linux engine
        # routes the bridge's gateway to the host, where nothing else of ours listens.
        bind = "127.0.0.1" if is_docker_desktop() else bridge_gateway()
    if not container:
        container = "host.docker.internal" if bind == "127.0.0.1" else bind
    return bind, container


def sam_command() -> str:
    return os.environ.get("SAM_CLI") or str(REPO_ROOT / ".venv-sam" / "bin" / "sam")


def build(arch: str, build_dir: Path, env: dict[str, str]) -> Path:
    """``sam build`` of the function and its layer for ``arch``; returns the built template."""
    started = time.monotonic()
    # sam build wants the runtime's interpreter (python3.13) on PATH, as `make build` gives it.
    python = subprocess.run([REPO_ROOT / "infra" / "scripts" / "find_python.sh"], capture_output=True, text=True)
    env = {**env, "PATH": os.pathsep.join([str(Path(python.stdout.strip()).parent), env.get("PATH", "")])}
    command = [
        sam_command(), "build", "--template-file", str(REPO_ROOT / "template.yaml"), "--build-dir", str(build_dir),
        "--parameter-overrides", f"Architecture={arch}",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=env)
    print(f"sam-local: sam build ({arch}) took {time.monotonic() - started:.0f}s", flush=True)
    return build_dir / "template.yaml"


def function_environment(env: dict[str, str], container_host: str) -> dict[str, dict[str, str]]:
    """``--env-vars``: the local settings, for the variables the template declares (sam local passes no other)."""
    declared = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    values = {name: env[name] for name in declared if name in env}
    openai = bool(env.get("OPENAI_API_KEY"))
    values.update(
        {
            "AWS_ENDPOINT_URL": f"http://{container_host}:{env['LOCAL_AWS_PORT']}",
            "AUTH_API_URL": f"http://{container_host}:{env['LOCAL_AUTH_PORT']}",
            "CHROMA_HOST": container_host,
            "CHROMA_PORT": env["CHROMA_PORT"],
            "CHROMA_SSL": "false",
            # The key reaches the function as in AWS: from the (emulated) SSM parameter it names.
            "OPENAI_API_KEY_PARAMETER": LOCAL_OPENAI_KEY_PARAMETER if openai else "",
            "CHROMA_API_KEY_PARAMETER": "",
            # the template's default is the stack's own alarm topic, which a local stack does not have
            "ALERT_SNS_TOPIC_ARN": env.get("ALERT_SNS_TOPIC_ARN", ""),
            "LLM_PROVIDER": env.get("LLM_PROVIDER") or ("openai" if openai else "offline"),
            "EMBEDDING_PROVIDER": env.get("EMBEDDING_PROVIDER") or ("openai" if openai else "offline"),
        }
    )
    return {FUNCTION: values}


def store_openai_key(env: dict[str, str]) -> None:
    key = env.get("OPENAI_API_KEY")
    if key:
        ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"])
        ssm.put_parameter(Name=LOCAL_OPENAI_KEY_PARAMETER, Value=key, Type="SecureString", Overwrite=True)


def start_api_command(
    template: Path, arch: str, image: runtime_image.InvokeImage, env_file: Path, port: str, cors_origins: str = ""
) -> list[str]:
    """SAM's API emulator answers CORS from the template's CorsConfiguration, whose origins are the
    parameter CorsOrigins: the local CORS_ORIGINS, as a deployed stack passes it to both."""
    overrides = f"Architecture={arch}" + (f" CorsOrigins={cors_origins}" if cors_origins else "")
    command = [
        sam_command(), "local", "start-api", "--template-file", str(template), "--host", "127.0.0.1",
        "--port", port, "--parameter-overrides", overrides, "--env-vars", str(env_file),
        "--warm-containers", "EAGER", "--skip-pull-image",
    ]  # fmt: skip
    if image.source == "local":
        command += ["--invoke-image", str(image.name)]
    return command


def wait_until_healthy(url: str, sam: subprocess.Popen[bytes]) -> float:
    """Seconds until ``GET /health`` through sam local answers 200 (the container's first invocation)."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_SECONDS:
        if sam.poll() is not None:
            raise SystemExit(f"sam-local: sam local start-api exited with code {sam.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=30) as response:  # noqa: S310 - our loopback URL
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"sam-local: {url}/health did not answer 200 within {READY_TIMEOUT_SECONDS:.0f}s")


# sam local removes its container on the way out: seconds with the vfs storage driver.
SAM_STOP_SECONDS = 30


def stop_sam(sam: subprocess.Popen[bytes]) -> None:
    """SIGTERM: sam local then removes the containers it started (SIGINT may be ignored by a
    process started in the background, SIGTERM is not)."""
    if sam.poll() is None:
        sam.terminate()
        try:
            sam.wait(timeout=SAM_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            sam.kill()
            sam.wait()


def main() -> int:
    if not docker_answers():
        print(
            "sam-local: no Docker engine answers (DOCKER_HOST or the default socket). Start Docker Desktop, "
            "or on a headless Linux box run `make docker-engine` as root.",
            file=sys.stderr,
        )
        return 1
    bind_host, container_host = addresses()
    base = dict(os.environ)
    base.setdefault("LOCAL_DATA_DIR", str(REPO_ROOT / ".local" / "sam-local"))
    env = local_environment(base)
    # The host-side setup steps (table, corpus) reach the services where they now listen.
    env["AWS_ENDPOINT_URL"] = f"http://{bind_host}:{env['LOCAL_AWS_PORT']}"
    env["AUTH_API_URL"] = f"http://{bind_host}:{env['LOCAL_AUTH_PORT']}"
    env["CHROMA_HOST"] = bind_host
    port = env.get("SAM_LOCAL_PORT", "3001")
    arch = env.get("SAM_LOCAL_ARCH") or runtime_image.engine_arch()
    stack = Stack(env, host=bind_host)
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    sam: subprocess.Popen[bytes] | None = None

    def shutdown(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    try:
        image = runtime_image.resolve(arch, force_local=env.get("SAM_LOCAL_IMAGE") == "local")
        template = build(arch, Path(env.get("SAM_LOCAL_BUILD_DIR") or REPO_ROOT / ".aws-sam" / f"local-{arch}"), env)
        stack.start_services()
        store_openai_key(env)
        env_file = stack.data_dir / "sam-env.json"
        env_file.write_text(json.dumps(function_environment(env, container_host), indent=2))
        # What `sam local invoke` needs to run the same function (tests/sam_local use it).
        state = {"template": str(template), "arch": arch, "image": image.name, "image_source": image.source}
        (stack.data_dir / "sam-local.json").write_text(json.dumps(state, indent=2))
        url = f"http://127.0.0.1:{port}"
        print(f"sam-local: sam local start-api on {url} (image {image.name or 'SAM default'})", flush=True)
        command = start_api_command(template, arch, image, env_file, port, env.get("CORS_ORIGINS", ""))
        sam = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
        seconds = wait_until_healthy(url, sam)
        print(f"sam-local: ready ({seconds:.1f}s to the first answer). Try:", flush=True)
        print(
            f"  curl -H 'Authorization: Bearer dev-alice' -H 'Content-Type: application/json' "
            f'-d \'{{"question":"How many experience points does a fighter need to become 9th level?"}}\' '
            f"{url}/api/query",
            flush=True,
        )
        while sam.poll() is None and all(child.poll() is None for child in stack.children):
            time.sleep(0.5)
        stopped = [p for p in [sam, *stack.children] if p.poll() is not None]
        names = ", ".join(f"{p.args[:3]!r} (exit {p.returncode})" for p in stopped)
        print(f"sam-local: stopped by itself: {names}; shutting down", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nsam-local: stopping", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"sam-local: step failed ({exc})", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()  # the services first (quick), so that nothing outlives a caller that waits less
        if sam is not None:
            stop_sam(sam)
            runtime_image.prune_derived_images()


if __name__ == "__main__":
    sys.exit(main())
