"""Developer scripts, run from the repository root as ``python -m infra.scripts.<name>``.

The Lambda package lives in ``functions/api``; put it on the path so the scripts run by hand
without exporting PYTHONPATH (the Makefile exports it too; this is a no-op then).
"""

import sys
from pathlib import Path

_LAMBDA_CODE = str(Path(__file__).resolve().parents[2] / "functions" / "api")
if _LAMBDA_CODE not in sys.path:
    sys.path.append(_LAMBDA_CODE)
