#!/usr/bin/env bash
# Prints the interpreter for the virtualenvs: Python 3.12 (Lambda's runtime) when this machine
# has it, on PATH or under pyenv; otherwise python3 (>= 3.11 works; the runtime stays 3.12).
for candidate in "${PYTHON:-}" python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python >= 3.11 found" >&2
exit 1
