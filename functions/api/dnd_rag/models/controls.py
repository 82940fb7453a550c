"""Values of the operator controls shared by the logic, its ports and the DAL (no behaviour here).

The controls are one record (SPEC §3 operator routes): the kill switch, today's budget override
and the blocked users, with a ``version`` that every change increments (the store only accepts a
change made from the version it read, so two operators never lose each other's update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pause:
    reason: str
    by: str  # the operator's user id
    at: float  # epoch seconds


@dataclass(frozen=True)
class BudgetOverride:
    """Today's global budget, set by an operator; it counts only while ``day`` is today (UTC)."""

    day: str  # YYYY-MM-DD
    nanos: int
    # each shard's share of ``nanos`` (logic/money/shards.py ``split_override``); empty: an even split
    shard_limits: tuple[int, ...] = ()


@dataclass(frozen=True)
class MonthOverride:
    """The month's global budget, set by an operator; it counts only while ``month`` is this month (UTC)."""

    month: str  # YYYY-MM
    nanos: int
    # when it leaves ``day`` (the day it was set) less than the day's own budget: each shard's share
    # of what it leaves (``split_override``, from what each had committed); empty: none needed
    day: str = ""
    shard_limits: tuple[int, ...] = ()


@dataclass(frozen=True)
class Controls:
    version: int = 0
    paused: Pause | None = None
    budget_override: BudgetOverride | None = None
    # The override of an earlier day, kept when an operator sets a new day's: holds of that day
    # still running after midnight are judged against their own day's budget (SPEC §4 "Days end").
    earlier_override: BudgetOverride | None = None
    blocked: frozenset[str] = frozenset()
    month_override: MonthOverride | None = None
    last_audit_id: str = ""  # the audit entry of the change that made this version


@dataclass(frozen=True)
class AuditEntry:
    """One operator action: who, when, what, and the state before and after it."""

    id: str
    at: float  # epoch seconds
    who: str
    action: str  # budget, pause, resume, block, unblock, reset
    target: str  # what it applies to: "service", "budget" or a user id
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
