"""The local stack's one clock: ``LOCAL_CLOCK_START=<ISO-8601 UTC instant>`` for ``make dev``.

The stack turns the instant into an offset from the wall clock once, when it starts, and passes
it to every child as ``LOCAL_CLOCK_OFFSET_SECONDS``: the function's clock (``Container.clock``),
the gateway's ``requestContext.time``/``timeEpoch`` and the ingester's corpus-version stamps all
add it, so every process reads the same shifted time, running at real speed. Watching a day end
by hand: ``LOCAL_CLOCK_START=2030-01-01T23:59:00Z make dev``. The function refuses both variables
when ``STAGE`` is prod (settings.py), and so does the stack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

START_VARIABLE = "LOCAL_CLOCK_START"
OFFSET_VARIABLE = "LOCAL_CLOCK_OFFSET_SECONDS"
EXAMPLE = "2030-01-01T23:59:00Z"


class ClockStartError(ValueError):
    """LOCAL_CLOCK_START is not a UTC instant, or the stage is prod."""


def parse_start(text: str) -> datetime:
    """The UTC instant ``text`` names (``Z`` or ``+00:00``); anything else is refused."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ClockStartError(f"{START_VARIABLE}={text!r} is not an ISO-8601 instant like {EXAMPLE}") from None
    if instant.utcoffset() != timedelta(0):
        raise ClockStartError(
            f"{START_VARIABLE}={text!r} is not a UTC instant: end it with Z or +00:00, like {EXAMPLE}"
        )
    return instant.astimezone(UTC)


def clock_environment(env: dict[str, str], now: float | None = None) -> datetime | None:
    """Set ``LOCAL_CLOCK_OFFSET_SECONDS`` in ``env`` from its ``LOCAL_CLOCK_START`` (the stack calls
    this once, before starting anything); the start instant, or None when the clock is the real one."""
    text = env.get(START_VARIABLE, "").strip()
    if not text:
        return None
    if env.get("STAGE", "").strip().lower() == "prod":
        raise ClockStartError(f"{START_VARIABLE} is for the local stack only; unset it when STAGE is prod")
    start = parse_start(text)
    env[OFFSET_VARIABLE] = repr(start.timestamp() - (time.time() if now is None else now))
    return start


def offset_seconds(environ: Mapping[str, str] | None = None) -> float:
    """What this process adds to the wall clock (0 unless started by a stack with LOCAL_CLOCK_START)."""
    value = (os.environ if environ is None else environ).get(OFFSET_VARIABLE, "").strip()
    return float(value) if value else 0.0


def local_time() -> float:
    """Epoch seconds on the local stack's clock."""
    return time.time() + offset_seconds()


def local_now() -> datetime:
    return datetime.fromtimestamp(local_time(), UTC)
