"""A test-only Lambda handler for the local gateway's tests (tests/integration/test_local_gateway.py).

The request body (JSON) says what to do, in this order:
- ``tick_file``: start a background thread that counts every 50 ms and writes the count to that
  file, and leave it running after the handler returns (as an alert delivery on a pool would);
- ``sleep``: seconds to sleep before answering;
- ``raise``: raise instead of answering (an unhandled exception);
- ``headers``: headers to add to the answer (CORS headers of its own, say).
The answer reports the container (``pid``), the most invocations this container ever ran at
once, the ticker's count, when the invocation ran, the event's ``timeEpoch`` and the container's
``CORS_BY_GATEWAY``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
_in_flight = 0
_most_in_flight = 0
_ticks = 0


def _tick(path: Path) -> None:
    global _ticks
    while True:
        time.sleep(0.05)
        with _LOCK:
            _ticks += 1
            count = _ticks
        partial = path.with_suffix(".partial")
        partial.write_text(str(count))
        partial.replace(path)  # atomic: a reader never sees half a number


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _in_flight, _most_in_flight
    started = time.time()
    with _LOCK:
        _in_flight += 1
        _most_in_flight = max(_most_in_flight, _in_flight)
    try:
        body = json.loads(event.get("body") or "{}")
        if body.get("tick_file"):
            threading.Thread(target=_tick, args=(Path(body["tick_file"]),), daemon=True).start()
        time.sleep(float(body.get("sleep", 0)))
        if body.get("raise"):
            raise RuntimeError("the probe was asked to fail")
        with _LOCK:
            answer = {
                "pid": os.getpid(),
                "most_in_flight": _most_in_flight,
                "ticks": _ticks,
                "started": started,
                "ended": time.time(),
                "time_epoch_ms": event["requestContext"]["timeEpoch"],
                "remaining_ms": context.get_remaining_time_in_millis(),
                "cors_by_gateway": os.environ.get("CORS_BY_GATEWAY"),
            }
    finally:
        with _LOCK:
            _in_flight -= 1
    headers = {"content-type": "application/json", **body.get("headers", {})}
    return {"statusCode": 200, "headers": headers, "body": json.dumps(answer)}
