"""The operator controls on the hot path: a per-container copy of the one control record.

Every query checks the kill switch and the block list. Reading them from DynamoDB per query would
add a round trip, so each container keeps a copy and re-reads it once it is ``refresh_seconds``
old (at most 5 s, so every container sees an operator's change within 5 s, SPEC §3). With a fresh
copy the check costs nothing. With a stale one, the re-read runs at the same time as the limiter's
admission (``together``), so it adds no sequential round trip; if the new copy says paused or
blocked, the admission is given back (a rejection consumes nothing).

A re-read that fails fails the query closed (503 ``service_unavailable``, the admission given
back), as every other store failure does: serving from an old copy could keep a paused service
or a blocked user going for as long as DynamoDB is unreachable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from dnd_rag.errors import ServiceError, ServicePausedError, UserBlockedError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.common.concurrently import together
from dnd_rag.logic.ports import ControlStore
from dnd_rag.models.controls import Controls

PAUSED_RETRY_AFTER = 60  # seconds: an operator's pause usually lasts minutes


def check(controls: Controls, user_id: str) -> None:
    """Raise what ``controls`` say about a query of ``user_id``: paused, blocked, or nothing."""
    if controls.paused is not None:
        raise ServicePausedError(
            "The service is paused by an operator. Please retry later.",
            retry_after=PAUSED_RETRY_AFTER,
            reason=f"paused: {controls.paused.reason}",
        )
    if user_id in controls.blocked:
        raise UserBlockedError("Your access to this service has been blocked by an operator.")


def override_for(controls: Controls, day: str) -> int | None:
    """The budget an operator set for ``day``, in nano-dollars; None if there is none for it."""
    for override in (controls.budget_override, controls.earlier_override):
        if override is not None and override.day == day:
            return override.nanos
    return None


def override_shard_limits(controls: Controls, day: str) -> tuple[int, ...]:
    """How the override for ``day`` splits over the shards (empty: evenly, or no override)."""
    for override in (controls.budget_override, controls.earlier_override):
        if override is not None and override.day == day:
            return override.shard_limits
    return ()


def month_override_for(controls: Controls, month: str) -> int | None:
    """The month's budget an operator set for ``month`` (YYYY-MM), in nano-dollars; None if none."""
    override = controls.month_override
    return override.nanos if override is not None and override.month == month else None


def budget_override(controls: Controls, now: float) -> int | None:
    """Today's budget set by an operator, in nano-dollars; None if there is none for today."""
    return override_for(controls, utc_day(now))


def budget_for_day(controls: Controls, day: str, configured: int) -> int:
    """``day``'s global budget: the operator's override for that day, else ``configured``. A hold
    is always judged against its own day's budget, also after midnight (SPEC §4 "Days end")."""
    override = override_for(controls, day)
    return configured if override is None else override


def effective_budget(controls: Controls, now: float, configured: int) -> int:
    """Today's global budget: the operator's override for today, else ``configured``."""
    return budget_for_day(controls, utc_day(now), configured)


class ControlsCache:
    def __init__(self, store: ControlStore, clock: Callable[[], float], refresh_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._copy = Controls()
        self._read_at = -math.inf  # when the copy was read (the start of the read)

    def fresh(self, now: float) -> bool:
        return now - self._read_at < self._refresh_seconds

    def refresh(self, now: float) -> Controls:
        controls = self._store.read()
        self.adopt(controls, now)
        return controls

    def current(self, now: float) -> Controls:
        """The copy, re-read first if it is stale (one GetItem at most every ``refresh_seconds``)."""
        return self._copy if self.fresh(now) else self.refresh(now)

    def known(self) -> Controls:
        """The copy as it is, never re-read (for values read again and again within one request)."""
        return self._copy

    def adopt(self, controls: Controls, now: float) -> None:
        """Take ``controls`` as the copy read at ``now`` (a change this container just made); never
        goes back to an older version."""
        if controls.version >= self._copy.version or not self.fresh(now):
            self._copy, self._read_at = controls, now

    def shard_limits(self, day: str) -> tuple[int, ...]:
        return override_shard_limits(self._copy, day)

    def budget_limit(self, day: str, configured: int) -> int:
        """``day``'s effective global budget: the operator's override for that day, else ``configured``."""
        return budget_for_day(self._copy, day, configured)

    def month_override(self, month: str) -> int | None:
        """``month``'s budget set by an operator (nano-dollars), None when none applies to it."""
        return month_override_for(self._copy, month)

    def month_shard_limits(self, day: str) -> tuple[int, ...]:
        """How the month's override splits what it leaves ``day`` over the shards (empty: no split)."""
        override = self._copy.month_override
        return override.shard_limits if override is not None and override.day == day else ()

    def guard[T](self, user_id: str, admit: Callable[[], T], undo: Callable[[T], None]) -> T:
        """``admit()`` unless the service is paused or ``user_id`` blocked (then nothing is consumed).

        Fresh copy: checked first, no I/O. Stale copy: re-read while ``admit`` runs; an admission
        the new copy forbids (or that a failed re-read cannot vouch for) is ``undo``ne."""
        now = self._clock()
        if self.fresh(now):
            check(self._copy, user_id)
            return admit()

        def attempt() -> T | ServiceError:
            try:
                return admit()
            except ServiceError as exc:  # returned, so that it surfaces after the re-read
                return exc

        def reread() -> Controls | ServiceError:
            try:
                return self.refresh(now)
            except ServiceError as exc:
                return exc

        outcome, controls = together(attempt, reread)
        try:
            if isinstance(controls, ServiceError):
                raise controls  # fail closed
            check(controls, user_id)  # paused or blocked wins over a rate-limit refusal
        except ServiceError:
            if not isinstance(outcome, ServiceError):
                undo(outcome)
            raise
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome
