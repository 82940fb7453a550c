"""Values of the rate limiter shared by the logic, its ports and the DAL (no behaviour here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class Policy:
    capacity: int
    refill_rate: float  # tokens per second
    daily_limit: int

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / self.refill_rate))


@dataclass(frozen=True)
class UserLimits:
    """A user's own money and concurrency limits (USER_DAILY_BUDGET_USD, MAX_IN_FLIGHT_PER_USER, per plan)."""

    daily_nanos: int | None  # the user's daily dollar cap in nano-dollars; None = no cap
    max_in_flight: int  # queries of the user running at once


@dataclass(frozen=True)
class BucketState:
    """What the store holds for one key."""

    tat_ms: int
    day: str
    count: int
    # request id -> admission time (ms) of the recent admissions; None for an item written before
    # admissions were named (it has no map yet: the next admission starts it)
    ids: Mapping[str, int] | None = field(default_factory=dict)


class Shape(Enum):
    """Which of the three conditional writes an admission attempts (see logic/limits/rate_limit.py)."""

    NEW_DAY = "new_day"
    FULL = "full"
    DRAINING = "draining"
