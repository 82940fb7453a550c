"""The global daily budget: hold money before every paid call, settle to what could be billed.

All amounts are integer nano-dollars. The day's budget is split over shards (logic/money/shards.py)
whose limits add up to it; each shard keeps ``committed`` = spent + its open holds, and a hold is
opened or grown only by a conditional write that keeps the shard's ``committed <= limit``, so no
interleaving of requests can commit more than the budget, and what OpenAI can bill never exceeds
what was committed (SPEC §4).

A hold carries a lease longer than any request can live. A hold whose lease has ended belongs to
a dead request: the next request that sees it reclaims it, at the cost its owner recorded if it
got that far, else in full (an orphan), because the dead request may have been billed.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from dnd_rag.errors import BudgetExceededError, ServiceError
from dnd_rag.logic.common.clock import day_end, day_start, month_end, next_midnight, utc_day
from dnd_rag.logic.common.concurrently import together
from dnd_rag.logic.money.month import MonthBudget, cap_in_order, month_of
from dnd_rag.logic.money.shards import ShardPicker, even_split, merge_shards, shard_count, split_override
from dnd_rag.logic.operations.forecast import Forecast, forecast
from dnd_rag.logic.ports import BudgetStore
from dnd_rag.models.limits import UserLimits
from dnd_rag.models.money import EXHAUSTED_PERCENT, WARNING_PERCENT, BudgetTotals, Charge, HoldEntry
from dnd_rag.observability import logger, metrics
from dnd_rag.pricing import usd_for_display

__all__ = ["Budget", "BudgetTotals", "Charge", "Hold", "budget_info", "percentage"]

LEASE_SECONDS = 60  # twice the Lambda timeout (29 s): a live request always settles before
ORPHAN_GRACE_SECONDS = 600  # how long a late settle may still correct an orphan charge down
IN_FLIGHT_RETRY_AFTER = 5  # seconds: running queries settle within the request deadline
SWEEP_PER_REQUEST = 3  # expired holds one request reclaims at most (bounds its extra latency)
SWEEP_PER_RUN = 200  # expired holds one run of the scheduled sweeper reclaims at most
SHARD_TRIES = 3  # shards one hold tries before the request waits or is refused (each a round trip)


@dataclass(frozen=True)
class Hold:
    """An open reservation of one request."""

    day: str
    id: str
    amount: int
    user_id: str
    model: str
    shard: int = 0  # the shard of the day's budget it holds money on
    user_amount: int | None = None  # the user's hold of the same id (logic/money/wallet.py), if any
    user_limits: UserLimits | None = None  # the limits it was opened under


class MonthObserver(Protocol):
    def pending(self, month: str, budget: int) -> tuple[int, ...]:
        """The month's thresholds whose alert this container does not know delivered yet."""
        ...

    def observe(self, day: BudgetTotals, month: str, spent: int, budget: int, exhausted: bool) -> None:
        """Sees the month's spend (``spent``: its previous days' and ``day``'s); ``exhausted``: what
        the month leaves ``day`` has no room for the cheapest admissible query. Never raises."""
        ...


class BudgetObserver(Protocol):
    def observe(self, totals: BudgetTotals, exhausted: bool) -> None:
        """Sees states of a whole day's totals (``totals.day``); ``exhausted``: no shard of the day
        has room left for the cheapest admissible query known (or, before one is known, the day's
        spend reached its budget). Never raises."""
        ...


def percentage(spent: int, limit: int) -> float:
    return round(100 * spent / limit, 2) if limit else 100.0


def month_info(spent: int, budget: int) -> dict[str, float]:
    return {
        "monthly_total": usd_for_display(spent),
        "monthly_budget": usd_for_display(budget),
        "monthly_percentage": percentage(spent, budget),
    }


def budget_info(spent: int, limit: int) -> dict[str, float]:
    return {
        "daily_total": usd_for_display(spent),
        "daily_budget": usd_for_display(limit),
        "percentage": percentage(spent, limit),
    }


class Budget:
    def __init__(
        self,
        store: BudgetStore,
        limit: int,
        clock: Callable[[], float],
        observer: BudgetObserver | None = None,
        lease_seconds: float = LEASE_SECONDS,
        effective_limit: Callable[[str, int], int] | None = None,
        shards: int = 1,
        holds_per_shard: int | None = None,
        min_shard: int = 0,
        override_shards: Callable[[str], tuple[int, ...]] | None = None,
        month: MonthBudget | None = None,
        month_observer: MonthObserver | None = None,
        month_shards: Callable[[str], tuple[int, ...]] | None = None,
    ) -> None:
        self._month_shards = month_shards  # day -> the split an operator's lowered month left it
        self._store = store
        self._month = month  # the month's cap on each day (logic/money/month.py); None: no monthly budget
        self._month_observer = month_observer
        self._configured_limit = limit
        self._effective_limit = effective_limit
        self._clock = clock
        self._observer = observer
        self._lease_seconds = lease_seconds
        self._shards = shard_count(limit, shards, min_shard)
        self._holds_per_shard = holds_per_shard
        self._override_shards = override_shards
        self._picker = ShardPicker()
        self._smallest_query: int | None = None  # cheapest admissible query seen by this container
        self._expired_orphans: dict[tuple[str, int], tuple[str, ...]] = {}  # dropped by the next hold there
        self._clean_days: set[str] = set()  # past days this container saw holding no hold
        self._alerts_seen: dict[str, dict[int, int]] = {}  # day -> threshold -> budget it went out for

    @property
    def limit(self) -> int:
        """Today's budget (what reports show)."""
        return self.limit_for(utc_day(self._clock()))

    @property
    def shard_count(self) -> int:
        return self._shards

    def day_budget(self, day: str) -> int:
        """``day``'s own budget: ``effective_limit(day, configured)`` (an operator's override for that
        day) when given, else the configured one."""
        if self._effective_limit is None:
            return self._configured_limit
        return self._effective_limit(day, self._configured_limit)

    def limit_for(self, day: str) -> int:
        """``day``'s effective budget: its own, capped by what its month leaves it (the sum of its
        shards' limits). Every decision about a hold uses its own day's."""
        return sum(self.shard_limits(day))

    def shard_limits(self, day: str) -> tuple[int, ...]:
        """Each shard's share of ``day``'s effective budget; they add up to it. An operator's override
        for the day carries its own split (what each shard had committed when it was set). When the
        month leaves the day less, the first shards keep their share (``cap_in_order``)."""
        base = self._own_shard_limits(day)
        lowered = self._month_shards(day) if self._month_shards is not None else ()
        if len(lowered) == self._shards:  # an operator lowered the month today: its split
            base = lowered
        room = self.month_room(day)
        return base if room is None or room >= sum(base) else cap_in_order(base, room)

    def _own_shard_limits(self, day: str) -> tuple[int, ...]:
        explicit = self._override_shards(day) if self._override_shards is not None else ()
        return explicit if len(explicit) == self._shards else even_split(self.day_budget(day), self._shards)

    def month_split(self, day: str, month_budget: int) -> tuple[int, ...]:
        """The shard limits of ``day`` when an operator sets its month's budget to ``month_budget`` now
        and that leaves the day less than its own budget (empty otherwise, or with one shard): each
        shard keeps what it committed and gets a share of the rest (``split_override``), as a day's
        override does, so the lowered month is not overshot by shards holding more than a share."""
        if self._shards == 1 or self._month is None:
            return ()
        room = max(0, month_budget - self._month.committed_before(day, self.shard_limits))
        if room >= sum(self._own_shard_limits(day)):
            return ()
        states = self._store.read_shards(day)
        return split_override(room, [states[n].committed if n in states else 0 for n in range(self._shards)])

    def month_room(self, day: str) -> int | None:
        """What ``day``'s month leaves it (None: no monthly budget)."""
        return None if self._month is None else self._month.room(day, self.shard_limits)

    def period_of(self, day: str) -> str:
        """``month`` when what the month leaves ``day`` is less than the day's own budget, else ``day``."""
        room = self.month_room(day)
        return "month" if room is not None and room < self.day_budget(day) else "day"

    def month_standing(self, day: str, spent_today: int) -> tuple[int, int] | None:
        """(what ``day``'s month spent, ``spent_today`` for ``day`` itself; its budget), None without one."""
        budget = None if self._month is None else self._month.budget(month_of(day))
        if self._month is None or budget is None:
            return None
        return self._month.committed_before(day) + spent_today, budget

    def override_split(self, day: str, budget: int) -> tuple[int, ...]:
        """The shard limits for ``budget`` set by an operator now (empty with one shard); never more
        than what the month leaves the day."""
        if self._shards == 1:
            return ()
        room = self.month_room(day)
        states = self._store.read_shards(day)
        committed = [states[n].committed if n in states else 0 for n in range(self._shards)]
        return split_override(budget if room is None else min(budget, room), committed)

    def open(
        self, user_id: str, model: str, amount: int, hold_id: str | None = None, now: float | None = None
    ) -> tuple[Hold | None, BudgetTotals]:
        """Hold ``amount`` of today's budget for a new request, on the first of a few shards that
        can cover it: (hold or None if refused, the shard's totals, or the day's when refused).

        A store error never leaves the hold behind: whatever raised after the write may have been
        applied (a lost response), so the hold is given back before the error goes on."""
        now = self._clock() if now is None else now
        day = utc_day(now)
        hold_id = hold_id or uuid.uuid4().hex
        limits = self.shard_limits(day)
        tried: list[int] = []

        def attempt(shard: int) -> tuple[bool, BudgetTotals]:
            entry = HoldEntry(amount, now + self._lease_seconds, user_id, model, shard)
            return self._store.try_reserve(
                day,
                hold_id,
                entry,
                limits[shard] - amount,
                next_midnight(now),
                self._expired_orphans.get((day, shard), ()),
                shard=shard,
                max_holds=self._holds_per_shard,
            )

        granted, totals, shard = False, BudgetTotals(day, 0, 0), 0
        try:
            for shard in self._picker.order(day, limits, amount, self._holds_per_shard or 10**9)[:SHARD_TRIES]:
                tried.append(shard)
                if len(tried) == 1 and self._yesterday_unswept(now):  # alongside: no round trip added
                    (granted, totals), _ = together(partial(attempt, shard), partial(self.sweep_yesterday, now))
                else:
                    granted, totals = attempt(shard)
                self._picker.note(totals)
                if self._sweep(day, totals, now):  # dead requests' holds were settled: the state moved
                    if granted:
                        totals = self._store.read_shard(day, shard)
                    else:
                        granted, totals = attempt(shard)
                    self._picker.note(totals)
                self._remember_orphans(totals, now)
                if granted:
                    break
            if not granted and self._shards > 1:  # the refusal is judged on the whole day
                totals = self._store.read_totals(day)
        except BaseException:
            for shard_tried in tried:
                self._give_back(day, hold_id, amount, shard_tried)
            raise
        self._observe(totals)
        return (Hold(day, hold_id, amount, user_id, model, shard) if granted else None), totals

    def resize(self, hold: Hold, amount: int) -> tuple[Hold | None, BudgetTotals]:
        """Grow (or shrink) an open hold to ``amount`` on its shard: (the new hold or None if
        refused, the shard's totals)."""
        limit = self.shard_limits(hold.day)[hold.shard]
        granted, totals = self._store.try_resize(
            hold.day, hold.id, hold.amount, amount, limit - (amount - hold.amount), shard=hold.shard
        )
        self._picker.note(totals)
        return (replace(hold, amount=amount) if granted else None), totals

    def available_to(self, hold: Hold, totals: BudgetTotals) -> int:
        """The most ``hold`` could grow to on its shard, as of ``totals`` (that shard's)."""
        if totals.shard != hold.shard:
            totals = self._store.read_shard(hold.day, hold.shard)
        return self.shard_limits(hold.day)[hold.shard] - totals.committed + hold.amount

    def settle(self, hold: Hold, charge: Charge) -> BudgetTotals:
        """Replace the hold by what the request was really charged (ledgers included); the whole
        day as of this settle. With several shards the day's other shards are read alongside (no
        round trip added) and the settled shard is taken as the settle left it."""
        now = self._clock()

        def settle() -> BudgetTotals:
            return self._store.settle(
                hold.day,
                hold.id,
                hold.amount,
                charge,
                now,
                next_midnight(now),
                user_hold=hold.user_amount,
                shard=hold.shard,
            )

        if self._shards == 1:
            totals = day = settle()
        else:
            totals, others = together(settle, partial(self._read_shards_quietly, hold.day))
            day = (
                merge_shards(hold.day, list({**others, hold.shard: totals}.values())) if others is not None else totals
            )
        self._picker.note(totals)
        if self._is_day(day):
            self._forecast_metric(day, now)
        self._observe(totals)
        return day

    def _read_shards_quietly(self, day: str) -> dict[int, BudgetTotals] | None:
        """The day's shards, or None when they cannot be read (the settle itself must not fail for it)."""
        try:
            return self._store.read_shards(day)
        except ServiceError:
            return None

    def forecast(self, totals: BudgetTotals, now: float) -> Forecast:
        """When the budget of ``totals``' day runs out at the current burn rate (logic/operations/forecast.py)."""
        return forecast(totals.spend_curve, now, self.limit_for(totals.day), totals.spent)

    def release(self, hold: Hold) -> None:
        """Give back a hold that paid for nothing (the request failed before any billable call).

        The hold is released at whatever amount it has: a resize whose answer was lost may have
        grown it although the caller saw an error."""
        if self._store.release(hold.day, hold.id, hold.amount, shard=hold.shard):
            return
        entry = self._store.read_shard(hold.day, hold.shard).holds.get(hold.id)
        if entry is not None and entry.amount != hold.amount:
            self._store.release(hold.day, hold.id, entry.amount, shard=hold.shard)

    def _give_back(self, day: str, hold_id: str, amount: int, shard: int) -> None:
        """Release a hold that may or may not exist, after a store error; never raises."""
        try:
            self._store.release(day, hold_id, amount, shard=shard)
        except Exception as exc:  # its lease ends; the reclaim then charges it in full
            logger.error("could not give back a hold after a store error", extra={"hold": hold_id, "reason": str(exc)})

    def note_smallest_query(self, cost: int) -> None:
        """Record the cost of the cheapest query that could still be admitted (degradation floors)."""
        if self._smallest_query is None or cost < self._smallest_query:
            self._smallest_query = cost

    def spent_out(self, totals: BudgetTotals, smallest_query: int) -> bool:
        """True when no wait can help: no shard of ``totals``' day could fit ``smallest_query`` even
        if every running query released its hold (a shard's crumbs cannot be pooled)."""
        if self._is_day(totals) and self._shards == 1:
            return totals.spent + smallest_query > self.limit_for(totals.day)
        shards = self._store.read_shards(totals.day)
        limits = self.shard_limits(totals.day)
        return all(limit - (shards[n].spent if n in shards else 0) < smallest_query for n, limit in enumerate(limits))

    def refusal(self, totals: BudgetTotals, smallest_query: int) -> BudgetExceededError:
        """The 503 for a request whose cheapest form does not fit: ``spent`` when it could not fit
        even if every running query released its hold, otherwise ``in_flight``."""
        now = self._clock()
        self.note_smallest_query(smallest_query)
        spent_out = self.spent_out(totals, smallest_query)
        if not self._is_day(totals):
            totals = self._store.read_totals(totals.day)
        limit = self.limit_for(totals.day)
        info = budget_info(totals.spent, limit)
        metrics.add_metric(name="BudgetRefused", unit="Count", value=1)
        period = self.period_of(totals.day)
        month = self.month_standing(totals.day, totals.spent)
        if month is not None:
            info = {**info, **month_info(*month)}
        if spent_out:
            self._observe(totals)  # the totals' own day: never recorded under the day it is now
            if period == "month":
                return BudgetExceededError(
                    "The service has reached its monthly budget and is paused until the next month (UTC).",
                    cause="spent",
                    retry_after=max(1, math.ceil(month_end(month_of(totals.day)) - now)),
                    budget_info=info,
                    period=period,
                )
            return BudgetExceededError(
                "The service has reached its daily budget and is paused until midnight UTC.",
                cause="spent",
                retry_after=max(1, math.ceil(day_end(totals.day) - now)),  # 1 s once that day has ended
                budget_info=info,
            )
        return BudgetExceededError(
            f"The rest of this {period}'s budget is held by queries that are running now. Please retry shortly.",
            cause="in_flight",
            retry_after=IN_FLIGHT_RETRY_AFTER,
            budget_info=info,
            period=period,
        )

    def totals(self) -> BudgetTotals:
        """Today as a whole (every shard summed)."""
        return self._store.read_totals(utc_day(self._clock()))

    def reclaim_expired(self, day: str, hold_ids: list[str], now: float) -> list[str]:
        """Reclaim these holds where their lease ended on the day's budget (a user's expired holds,
        logic/money/user_budget.py), by the same path as the sweep; the ids that have no hold there."""
        totals = self._store.read_totals(day)
        missing = []
        for hold_id in hold_ids:
            entry = totals.holds.get(hold_id)
            if entry is None:
                missing.append(hold_id)
            elif entry.lease_until < now:
                self._reclaim(day, hold_id, entry, now)
        return missing

    def sweep(self, day: str, now: float, most: int = SWEEP_PER_RUN) -> int:
        """Reclaim every hold of ``day`` whose lease ended (at most ``most``): the scheduled
        sweeper's work, so an orphan of a quiet day is charged to its own day, model and user even
        when no query comes after it. Returns how many holds ``day`` still has."""
        totals = self._store.read_totals(day)
        expired = [(hold_id, entry) for hold_id, entry in totals.holds.items() if entry.lease_until < now]
        for hold_id, entry in expired[:most]:
            self._reclaim(day, hold_id, entry, now)
        remaining = self._store.read_totals(day) if expired else totals
        if day == utc_day(now):
            self._forecast_metric(remaining, now)
        if remaining.spent:  # a threshold a settle's shard could not show is seen here at the latest
            self._observe(remaining)
        return len(remaining.holds)

    def sweep_recent(self, now: float) -> dict[str, int]:
        """The scheduled sweep: yesterday's holds, then today's; how many holds each still has."""
        days = (utc_day(now - 86_400), utc_day(now))
        left = {day: self.sweep(day, now) for day in days}
        if left[days[0]] == 0:
            self._clean_days = {days[0]}
        return left

    def sweep_yesterday(self, now: float) -> None:
        """On the query path: once every hold of yesterday's has outlived its lease, reclaim a few
        per request until yesterday holds none (then this container stops looking). Never raises."""
        if not self._yesterday_unswept(now):
            return
        yesterday = utc_day(now - 86_400)
        try:
            if self.sweep(yesterday, now, most=SWEEP_PER_REQUEST) == 0:
                self._clean_days = {yesterday}
        except ServiceError as exc:
            logger.warning("could not sweep yesterday's holds", extra={"reason": str(exc)})

    def _yesterday_unswept(self, now: float) -> bool:
        """True once yesterday's leases have all ended, until this container saw it hold no hold."""
        return utc_day(now - 86_400) not in self._clean_days and now - day_start(now) > self._lease_seconds

    def _sweep(self, day: str, totals: BudgetTotals, now: float) -> bool:
        """Reclaim a few holds whose lease ended; True if any money changed hands. Best effort: a
        store error here is housekeeping that failed, never the request's own failure."""
        expired = [(hold_id, entry) for hold_id, entry in totals.holds.items() if entry.lease_until < now]
        reclaimed = False
        for hold_id, entry in expired[:SWEEP_PER_REQUEST]:
            try:
                reclaimed = self._reclaim(day, hold_id, entry, now) or reclaimed
            except ServiceError as exc:
                logger.warning("could not reclaim an expired hold", extra={"hold": hold_id, "reason": str(exc)})
                break
        return reclaimed

    def _reclaim(self, day: str, hold_id: str, entry: HoldEntry, now: float) -> bool:
        """Charge one expired hold (and the user's hold of the same id) in both books."""
        booked = self._store.reclaim(day, hold_id, entry, now, now + ORPHAN_GRACE_SECONDS, day_end(day))
        if booked:
            metrics.add_metric(name="HoldReclaimed", unit="Count", value=1)
            metrics.add_metric(name="QueryCostMicroUsd", unit="Count", value=booked / 1000)
            logger.warning("reclaimed the hold of a dead request", extra={"hold": hold_id, "amount": entry.amount})
        return booked > 0

    def _remember_orphans(self, totals: BudgetTotals, now: float) -> None:
        if totals.shard is None:
            return
        expired = tuple(sorted(o for o, grace_end in totals.orphans.items() if grace_end < now))[:10]
        self._expired_orphans[(totals.day, totals.shard)] = expired
        if len(self._expired_orphans) > 1024:  # old days'
            self._expired_orphans = {(totals.day, totals.shard): expired}

    def _forecast_metric(self, totals: BudgetTotals, now: float) -> None:
        """The spend moved: the run-out forecast with it (the alarm's metric)."""
        metrics.add_metric(
            name="BudgetRunOutHoursBeforeMidnight", unit="None", value=self.forecast(totals, now).hours_before_midnight
        )

    def _is_day(self, totals: BudgetTotals) -> bool:
        """True when ``totals`` describe the whole day: summed, or the only shard."""
        return totals.shard is None or self._shards == 1

    def _observe(self, totals: BudgetTotals) -> None:
        """Alerts judge the whole day. A shard's state is enough to know a threshold cannot have
        been crossed: the day's spend reaches 80 % (or leaves no room for the cheapest query) only
        if some shard's does. Only then is the whole day read."""
        if self._observer is None and self._month_observer is None:
            return
        if self._shards == 1:
            shards = {0: totals}
        else:
            if totals.shard is not None and not self._may_cross(totals):
                return
            try:
                shards = self._store.read_shards(totals.day)
            except ServiceError as exc:  # the next settle or the scheduled sweep looks again
                logger.warning("could not read the day's budget for its alerts", extra={"reason": str(exc)})
                return
        day = merge_shards(totals.day, list(shards.values()))
        exhausted = self._exhausted(day.day, shards)
        by_month = self.period_of(day.day) == "month"
        if self._observer is not None:
            self._alerts_seen[day.day] = dict(day.alerts_sent)
            # the day's 100 % is the day's own budget running out, not the month's (its own alert)
            self._observer.observe(day, exhausted and not by_month)
        month = self.month_standing(day.day, day.spent)
        if self._month_observer is not None and month is not None:
            self._month_observer.observe(day, month_of(day.day), *month, exhausted and by_month)

    def _exhausted(self, day: str, shards: dict[int, BudgetTotals]) -> bool:
        """No shard has room for the cheapest admissible query (its crumbs cannot be pooled)."""
        smallest = self._smallest_query
        limits = self.shard_limits(day)
        spent = [shards[n].spent if n in shards else 0 for n in range(len(limits))]
        if smallest is None:
            return sum(spent) >= sum(limits)
        return all(limit - used < smallest for limit, used in zip(limits, spent, strict=True))

    def _month_may_cross(self, shard: BudgetTotals, limit: int, day_limit: int) -> bool:
        """Whether the month's 80 % or 100 % may have been reached, judged as ``_may_cross`` judges
        the day's: today's spend reaches what the month's 80 % leaves it only if some shard's share does."""
        if self._month_observer is None or self._month is None:
            return False
        month = month_of(shard.day)
        budget = self._month.budget(month)
        pending = () if budget is None else self._month_observer.pending(month, budget)
        if budget is None or not pending:
            return False
        left = -(-budget * WARNING_PERCENT // 100) - self._month.committed_before(shard.day)  # to 80 %, today
        warning = WARNING_PERCENT in pending and (left <= 0 or shard.spent * day_limit >= left * limit)
        exhausted = EXHAUSTED_PERCENT in pending and self.period_of(shard.day) == "month"
        return warning or (exhausted and limit - shard.spent < (self._smallest_query or 1))

    def _may_cross(self, shard: BudgetTotals) -> bool:
        assert shard.shard is not None
        limit = self.shard_limits(shard.day)[shard.shard]
        own = self.day_budget(shard.day)  # what the day's alerts were sent for (its own budget)
        effective = self.limit_for(shard.day)  # the shards' limits' sum: below ``own`` when the month caps
        sent = self._alerts_seen.get(shard.day, {})
        # some shard's spend reaches its share of 80 % of ``own`` when the day's does
        warning = sent.get(WARNING_PERCENT) != own and shard.spent * 100 * effective >= own * WARNING_PERCENT * limit
        smallest = self._smallest_query or 1
        by_day = effective >= own  # the month does not cap the day: the day's 100 % is the day's own
        exhausted = by_day and sent.get(EXHAUSTED_PERCENT) != own and limit - shard.spent < smallest
        return warning or exhausted or self._month_may_cross(shard, limit, effective)
