#!/usr/bin/env bash
# Prints the interpreter for the virtualenvs: Python 3.13 (Lambda's runtime, SPEC §2) when this
# machine has it, on PATH or under pyenv; otherwise python3 (>= 3.12: the code uses PEP 695 generics;
# the runtime stays 3.13).
# The Makefile rebuilds a virtualenv when the interpreter this prints changes.
for candidate in "${PYTHON:-}" python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys, venv; assert sys.version_info >= (3, 12)' 2>/dev/null; then
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python >= 3.12 found" >&2
exit 1
