"""The Lambda image that ``sam local`` runs the function in: AWS's when it can be had, else one built here.

On a machine that reaches AWS's public registry, ``sam local`` uses ``public.ecr.aws/lambda/python``
as usual. Where nothing can be pulled (this project's CI, offline laptops), a Lambda-compatible
image is built from what the package registries serve: a Debian trixie root filesystem
(``mmdebstrap``; its ``python3`` is 3.13, the function's runtime), the runtime interface client
and boto3 from PyPI, and ``/var/runtime/bootstrap`` (see ``lambda_image/``). SAM adds its own
runtime interface emulator on top, as it does to AWS's image. The image is tagged with a hash of
its inputs, so it is built once and reused until they change.

    python -m infra.local.runtime_image [--arch x86_64|arm64] [--local]   # prints the image to use
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RUNTIME = "python3.13"
PYTHON_VERSION = "3.13"
DEBIAN_SUITE = "trixie"  # the Debian release whose python3 is the runtime's version
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
IMAGE_DIR = Path(__file__).resolve().parent / "lambda_image"
LOCAL_REPOSITORY = "dnd-rag/lambda-python3.13"
IMAGE_LABEL = "org.dnd-rag.lambda-image"  # set in lambda_image/Dockerfile
PULL_TIMEOUT_SECONDS = float(os.environ.get("SAM_LOCAL_PULL_TIMEOUT", "120"))
# Lambda architecture -> (Debian architecture, pip platform tag)
PLATFORMS = {"x86_64": ("amd64", "manylinux2014_x86_64"), "arm64": ("arm64", "manylinux2014_aarch64")}
# Debian packages of the image: the interpreter, the C++ runtime of the runtime interface client, CA
# certificates for HTTPS (OpenAI, hosted Chroma).
PACKAGES = "python3,libstdc++6,ca-certificates"
# Bump when build_local_image changes what goes into the image (part of the image's tag).
BUILD_FORMAT = 1
# Documentation and translations are dead weight in a runtime image.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


@dataclass(frozen=True)
class InvokeImage:
    """What ``sam local`` is told: an image to use (None: SAM's default, already pulled)."""

    name: str | None
    source: str  # "aws" or "local"


def aws_image(arch: str) -> str:
    """The image SAM itself uses for a zip function of this runtime (samcli.local.docker.lambda_image)."""
    return f"public.ecr.aws/lambda/python:{PYTHON_VERSION}-{arch}"


def docker_cli() -> str:
    """The docker CLI (it honours DOCKER_HOST and the current context, as SAM does)."""
    found = shutil.which("docker")
    if not found:
        raise SystemExit("docker CLI not found: install Docker (or `make docker-engine` on a Linux box as root)")
    return found


def docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker_cli(), *args], check=check, capture_output=True, text=True, timeout=timeout)


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


def engine_arch() -> str:
    """The Docker engine's architecture as Lambda names it (what runs natively, without qemu)."""
    machine = docker("info", "--format", "{{.Architecture}}").stdout.strip()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


def pulled_aws_image(arch: str) -> bool:
    """AWS's image is here or can be pulled now (one attempt, bounded: offline machines say no fast)."""
    name = aws_image(arch)
    if image_exists(name):
        return True
    print(f"runtime-image: pulling {name} ...", flush=True)
    try:
        result = docker("pull", name, check=False, timeout=PULL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"runtime-image: no answer pulling {name} within {PULL_TIMEOUT_SECONDS:.0f}s", flush=True)
        return False
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        print(f"runtime-image: cannot pull {name} ({reason})", flush=True)
        return False
    return True


def local_tag(arch: str) -> str:
    """The local image's name: a hash of everything it is built from."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(repr((PYTHON_VERSION, DEBIAN_SUITE, PACKAGES, DPKG_EXCLUDES, BUILD_FORMAT)).encode())
    return f"{LOCAL_REPOSITORY}:{digest.hexdigest()[:12]}-{arch}"


def ensure_mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if os.geteuid() == 0 and apt_get:
        print("runtime-image: installing mmdebstrap (Debian package)", flush=True)
        subprocess.run([apt_get, "update", "-qq"], check=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = [apt_get, "install", "-y", "-qq", "--no-install-recommends", "mmdebstrap"]
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        found = shutil.which("mmdebstrap")
    if not found:
        raise SystemExit("runtime-image: mmdebstrap is needed to build the local Lambda image (apt install mmdebstrap)")
    return found


def build_local_image(arch: str, tag: str) -> None:
    """Root filesystem (Debian + runtime packages + bootstrap) as one tar, imported FROM scratch."""
    debian_arch, pip_platform = PLATFORMS[arch]
    mmdebstrap = ensure_mmdebstrap()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lambda-image-") as work:
        context = Path(work)
        runtime = context / "runtime"
        print(f"runtime-image: runtime packages for {pip_platform} ({IMAGE_DIR / 'requirements.txt'})", flush=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                "--target", str(runtime), "--only-binary=:all:", "--implementation", "cp",
                "--platform", pip_platform, "--python-version", PYTHON_VERSION,
                "-r", str(IMAGE_DIR / "requirements.txt"),
            ],
            check=True,
        )  # fmt: skip
        shutil.copy2(IMAGE_DIR / "bootstrap", runtime / "bootstrap")
        print(f"runtime-image: Debian {DEBIAN_SUITE} root filesystem ({debian_arch}, {PACKAGES})", flush=True)
        command = [
            mmdebstrap, "--quiet", "--mode=root", "--variant=essential", f"--architectures={debian_arch}",
            f"--include={PACKAGES}",
            *[f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES],
            # mmdebstrap runs hooks with the root filesystem's path as $1
            f'--customize-hook=mkdir -p "$1/var/task" "$1/opt" && cp -a {runtime} "$1/var/runtime"',
            # byte-compiled, as in the managed runtime: cold starts are not charged for compiling boto3
            '--customize-hook=chroot "$1" python3 -m compileall -q -j 0 /var/runtime',
            DEBIAN_SUITE, str(context / "rootfs.tar"), DEBIAN_MIRROR,
        ]  # fmt: skip
        subprocess.run(command, check=True)
        shutil.copy2(IMAGE_DIR / "Dockerfile", context / "Dockerfile")
        print(f"runtime-image: docker build -t {tag}", flush=True)
        platform = f"linux/{debian_arch}"
        subprocess.run([docker_cli(), "build", "--quiet", "--platform", platform, "-t", tag, str(context)], check=True)
    # A missing shared library shows here, not as a runtime that dies at its first invocation.
    check = "import runtime_client, awslambdaric, boto3, snapshot_restore_py"
    smoke = ["run", "--rm", "--entrypoint", "/usr/bin/python3", "-e", "PYTHONPATH=/var/runtime", tag, "-c", check]
    result = docker(*smoke, check=False)
    if result.returncode != 0:
        docker("image", "rm", tag, check=False)
        raise SystemExit(f"runtime-image: the built image cannot run the runtime client:\n{result.stderr}")
    remove_older_images(arch, keep=tag)
    size = docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    seconds = time.monotonic() - started
    print(f"runtime-image: built {tag} in {seconds:.0f}s ({int(size) / 1e6:.0f} MB)", flush=True)


def remove_older_images(arch: str, keep: str) -> None:
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", LOCAL_REPOSITORY).stdout.split()
    for name in listed:
        if name != keep and name.endswith(f"-{arch}"):
            docker("image", "rm", name, check=False)


def prune_derived_images() -> None:
    """Each `sam local` start derives a new image from ours (SAM adds its emulator and the layer);
    the replaced ones are left dangling. Only those carrying our label are removed."""
    docker("image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}", check=False)


def resolve(arch: str, force_local: bool = False) -> InvokeImage:
    """AWS's image if it is (or can be) here, else the local one, built on first use."""
    if not force_local and pulled_aws_image(arch):
        return InvokeImage(aws_image(arch), "aws")
    tag = local_tag(arch)
    if image_exists(tag):
        print(f"runtime-image: using {tag} (built earlier)", flush=True)
    else:
        build_local_image(arch, tag)
    return InvokeImage(tag, "local")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(PLATFORMS), help="default: the Docker engine's")
    parser.add_argument("--local", action="store_true", help="build/use the local image even if AWS's can be pulled")
    args = parser.parse_args()
    image = resolve(args.arch or engine_arch(), force_local=args.local)
    print(image.name)


if __name__ == "__main__":
    main()
