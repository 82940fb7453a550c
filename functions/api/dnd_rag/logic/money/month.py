"""The month's budget (MONTHLY_BUDGET_USD) as a cap on each of its days (SPEC §4 "Scale").

The month has no counter of its own: a month item every query writes would be a second hot item
(and the conditional write that keeps a month below its budget would have to touch it). Instead
the month constrains the day: a day's effective budget is the smaller of its own (configured, or
an operator's override for the day) and what the month leaves it — the month's budget (or its
override) less what the month's previous days committed. The day's shards split that effective
budget as they split any day's budget, so every hold stays one conditional write on one shard, and
the month cannot be overshot: each day is capped by what the month had left before it.

The previous days are read, never written on the query path. A day before yesterday is closed: its
``committed`` (spent plus any hold still open, which can only settle down) is read once per
container (one Query per day; the first request of a container reads them in parallel) and kept.
Yesterday may still move just after midnight — a running query grows its hold against yesterday's
budget, orphans are swept and charged in full — so a shard of yesterday that has open holds counts
at its limit (what those holds may grow to), and yesterday is read again every ``refresh_seconds``
until it holds none. Every value only falls as days settle, so a stale copy is a conservative one:
a day's effective budget only rises during the day (unless an operator lowers the month), and the
shards' limits (``cap_in_order``) only rise with it, so containers that see different values still
never commit more than the largest of them allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dnd_rag.errors import ServiceError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.models.money import BudgetTotals
from dnd_rag.observability import logger

REFRESH_SECONDS = 5.0  # how old this container's copy of yesterday may get while it still holds holds
PARALLEL_READS = 8  # days read at once when a container first needs the month's previous days


class ShardReader(Protocol):
    def read_shards(self, day: str) -> dict[int, BudgetTotals]: ...


def month_of(day: str) -> str:
    """``YYYY-MM`` of a ``YYYY-MM-DD`` day."""
    return day[:7]


def days_before(day: str) -> list[str]:
    """The days of ``day``'s month before it (none on the 1st)."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return [(start - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(start.day - 1, 0, -1)]


def cap_in_order(limits: tuple[int, ...], cap: int) -> tuple[int, ...]:
    """Shard limits adding up to ``cap`` (less than their sum): the first shards keep their limits,
    the next gets what is left, the rest none. Each shard's limit only rises with ``cap`` (safe
    when containers see different caps), and only one shard is left with crumbs."""
    capped, left = [], max(0, cap)
    for limit in limits:
        take = min(limit, left)
        capped.append(take)
        left -= take
    return tuple(capped)


def _yesterday_bound(shards: dict[int, BudgetTotals], limits: tuple[int, ...]) -> int:
    """Yesterday's commitments at most: a shard with open holds at what they may grow to."""
    total = 0
    for n, totals in shards.items():
        limit = limits[n] if n < len(limits) else totals.committed
        total += max(totals.committed, limit) if totals.open_holds else totals.committed
    return total


class MonthBudget:
    def __init__(
        self,
        store: ShardReader,
        configured: int | None,
        override: Callable[[str], int | None],
        clock: Callable[[], float],
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._store = store
        self._configured = configured
        self._override = override  # month -> an operator's budget for it
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._closed: dict[str, int] = {}  # day -> committed, for days that can no longer grow
        self._recent: dict[str, tuple[float, dict[int, BudgetTotals]]] = {}  # yesterday: (read at, shards)

    def budget(self, month: str) -> int | None:
        """``month``'s budget: an operator's override for it, else the configured one; None: no monthly budget."""
        override = self._override(month)
        return override if override is not None else self._configured

    def room(self, day: str, limits_of: Callable[[str], tuple[int, ...]]) -> int | None:
        """What ``day``'s month leaves ``day``: its budget less what the days before committed
        (yesterday's open holds at what they may grow to, ``limits_of`` its shard limits); None: no cap."""
        budget = self.budget(month_of(day))
        if budget is None:
            return None
        return max(0, budget - self.committed_before(day, limits_of))

    def committed_before(self, day: str, limits_of: Callable[[str], tuple[int, ...]] | None = None) -> int:
        """What the days of ``day``'s month before it committed. With ``limits_of``, yesterday's
        shards that still have open holds count at their limits (the cap's rule); without, as they
        are (what reports show)."""
        before = days_before(day)
        if not before:
            return 0
        yesterday = utc_day(self._clock() - 86_400)
        self._read_closed([d for d in before if d != yesterday])
        total = sum(self._closed[d] for d in before if d != yesterday)
        if yesterday in before:
            shards = self._yesterday(yesterday)
            if shards is None:
                total += self._closed[yesterday]
            elif limits_of is None:
                total += sum(t.committed for t in shards.values())
            else:
                total += _yesterday_bound(shards, limits_of(yesterday))
        return total

    def _read_closed(self, days: list[str]) -> None:
        missing = [d for d in days if d not in self._closed]
        if not missing:
            return
        if len(missing) == 1:
            read = {missing[0]: self._committed(missing[0])}
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(missing))) as pool:
                read = dict(zip(missing, pool.map(self._committed, missing), strict=True))
        with self._lock:
            self._closed.update(read)

    def _committed(self, day: str) -> int:
        return sum(t.committed for t in self._store.read_shards(day).values())

    def _yesterday(self, day: str) -> dict[int, BudgetTotals] | None:
        """Yesterday's shards while it still has holds (re-read every ``refresh_seconds``), or None
        once it holds none (then it is closed: ``_closed[day]``)."""
        if day in self._closed:
            return None
        now = time.monotonic()
        seen = self._recent.get(day)
        if seen is None or now - seen[0] >= self._refresh_seconds:
            try:
                shards = self._store.read_shards(day)
            except ServiceError as exc:
                if seen is None:
                    raise
                logger.warning(
                    "could not read yesterday's budget again; keeping the older copy", extra={"reason": str(exc)}
                )
                return seen[1]
            if not any(t.open_holds for t in shards.values()):
                with self._lock:
                    self._closed[day] = sum(t.committed for t in shards.values())
                    self._recent.pop(day, None)
                return None
            with self._lock:
                self._recent = {day: (now, shards)}
            return shards
        return seen[1]
