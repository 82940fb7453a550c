"""UTC day arithmetic. Everything that resets "daily" uses these, with time from one injectable clock."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta


def utc_day(now: float) -> str:
    """The UTC calendar day of epoch-seconds ``now``, as YYYY-MM-DD (sorts like the dates)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def next_midnight(now: float) -> float:
    """Epoch seconds of the next UTC midnight after ``now``."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight that began ``now``'s day."""
    return next_midnight(now) - 86_400


def day_end(day: str) -> float:
    """Epoch seconds of the UTC midnight that ends ``day`` (YYYY-MM-DD)."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp()


def month_end(month: str) -> float:
    """Epoch seconds of the UTC midnight that ends ``month`` (YYYY-MM): the start of the next one."""
    start = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    return (
        start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    ).timestamp()


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


GATEWAY_TIMEOUT_SECONDS = 30.0  # HTTP API's integration timeout, counted from the request's arrival


def seconds_to_answer(lambda_remaining: float, arrived_at: float | None, now: float, margin: float) -> float:
    """How long a request may still work: the smaller of what the Lambda has left and what API
    Gateway still waits (30 s from ``arrived_at``, its ``requestContext.timeEpoch``: a cold start's
    init phase is already spent from it), less ``margin`` to settle and answer."""
    if arrived_at is not None and not now - 2 * GATEWAY_TIMEOUT_SECONDS < arrived_at <= now + 5:
        # no gateway waits on a request that arrived over a minute ago, or in the future: not an
        # arrival time (sam local's v2 events carry seconds where API Gateway sends milliseconds)
        arrived_at = None
    gateway_remaining = math.inf if arrived_at is None else arrived_at + GATEWAY_TIMEOUT_SECONDS - now
    return min(lambda_remaining, gateway_remaining) - margin


class Deadline:
    """A point in monotonic time by which a request must be answered (API Gateway waits 30 s)."""

    def __init__(self, seconds_from_now: float) -> None:
        self._at = time.monotonic() + seconds_from_now

    def remaining(self) -> float:
        return self._at - time.monotonic()
