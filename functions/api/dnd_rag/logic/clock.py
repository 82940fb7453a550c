"""UTC day arithmetic. Everything that resets "daily" uses these, with time from one injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_day(now: float) -> str:
    """The UTC calendar day of epoch-seconds ``now``, as YYYY-MM-DD (sorts like the dates)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def next_midnight(now: float) -> float:
    """Epoch seconds of the next UTC midnight after ``now``."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
