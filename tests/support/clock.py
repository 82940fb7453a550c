"""An injectable clock for tests that travel in time (refills, midnight, lease expiry)."""

from datetime import UTC, datetime

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
