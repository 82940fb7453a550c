"""The gateway probe behind a slow cold start: importing this module takes IMPORT_SECONDS."""

import time

IMPORT_SECONDS = 1.5
time.sleep(IMPORT_SECONDS)

from tests.support.gateway_probe_handler import lambda_handler  # noqa: E402

__all__ = ["lambda_handler"]
