"""Fake servers the tests run, and a developer may run by hand from the repository root
(``.venv/bin/python -m tests.fakes.openai_server --port 8099``, README "Try it").

The Lambda package lives in ``functions/api`` (the fake OpenAI reads its price file): put it on the
path so that works without exporting PYTHONPATH (pytest and the Makefile set it; a no-op then).
"""

import sys
from pathlib import Path

_LAMBDA_CODE = str(Path(__file__).resolve().parents[2] / "functions" / "api")
if _LAMBDA_CODE not in sys.path:
    sys.path.append(_LAMBDA_CODE)
