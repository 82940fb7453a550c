#!/usr/bin/env bash
# `make docker-engine`: make sure a Docker engine answers, for `make sam-local` / `make e2e-sam`.
# If one answers already (Docker Desktop, a system service, DOCKER_HOST), nothing is done. Otherwise,
# on a headless Linux box as root, installs Debian's docker.io and starts dockerd in the background:
# vfs storage (works inside containers and on any filesystem) and no iptables rules, because
# `sam local` only needs the default bridge and published ports on 127.0.0.1 (the userland proxy).
set -euo pipefail
LOG_DIR="${LOCAL_DATA_DIR:-$(pwd)/.local}"
WAIT_SECONDS="${DOCKER_ENGINE_WAIT:-60}"

if docker info >/dev/null 2>&1; then
  echo "docker-engine: an engine already answers ($(docker info --format '{{.Name}} {{.ServerVersion}}'))"
  exit 0
fi
if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
  echo "docker-engine: no engine answers; start Docker Desktop (macOS/Windows) or the docker service, or run this as root on Linux" >&2
  exit 1
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "docker-engine: DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local engine in its place" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "docker-engine: no dockerd and no apt-get; install Docker" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
mkdir -p "$LOG_DIR"
# setsid: the engine outlives this make target (and its Ctrl-C); `kill $(cat .local/dockerd.pid)` stops it.
setsid dockerd --storage-driver vfs --iptables=false --ip-masq=false >"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
echo $! >"$LOG_DIR/dockerd.pid"
for _ in $(seq "$WAIT_SECONDS"); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: dockerd started (pid $(cat "$LOG_DIR/dockerd.pid"), log $LOG_DIR/dockerd.log)"
    exit 0
  fi
  kill -0 "$(cat "$LOG_DIR/dockerd.pid")" 2>/dev/null || break
  sleep 1
done
echo "docker-engine: dockerd did not answer within ${WAIT_SECONDS}s; last lines of $LOG_DIR/dockerd.log:" >&2
tail -n 20 "$LOG_DIR/dockerd.log" >&2
exit 1
