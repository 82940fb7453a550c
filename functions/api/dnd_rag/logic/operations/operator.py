"""The operator's run-time controls (SPEC §3 operator routes): who may use them, budget override,
pause and resume, block and unblock, reset a user, and the audit trail of all of them.

Authorization (``authorize``) is role admin *and* not blocked, the block list read fresh from the
store on every operator request — never this container's copy of the controls, which may be up to
CONTROLS_REFRESH_SECONDS old: a blocked operator's leaked token must not unblock itself meanwhile.
An operator cannot unblock or reset themselves. Every refusal is an audit entry (action
``denied``), as every change is.

A change is computed from the controls as read and written only if nobody changed them since
(the store's version condition), together with its audit entry; a refused write is computed
again from the newer state, so two operators acting at once both get their change.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from dnd_rag.errors import (
    ForbiddenError,
    InvalidRequestError,
    ServiceError,
    StoreUnavailableError,
    UserBlockedError,
)
from dnd_rag.logic.common.clock import iso, month_end, next_midnight, utc_day
from dnd_rag.logic.limits.rate_limit import RateLimiter
from dnd_rag.logic.operations.controls import ControlsCache, budget_override, effective_budget, month_override_for
from dnd_rag.logic.ports import ControlStore, UserSpendReset
from dnd_rag.logic.query import user_key
from dnd_rag.models.controls import AuditEntry, BudgetOverride, Controls, MonthOverride, Pause
from dnd_rag.models.domain import User
from dnd_rag.observability import hashed_user_id, logger, metrics
from dnd_rag.pricing import usd_for_display

# The block list lives in one item (400 KB at most): 2,000 ids of up to 128 characters stay
# under 300 KB. More blocked users than that is a job for the auth API, not a kill switch.
MAX_BLOCKED_USERS = 2000
CHANGE_ATTEMPTS = 10  # writes refused because another operator changed the controls meanwhile
BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS = 0.02, 0.5  # full jitter; all waits together stay under 3 s

Edit = Callable[[Controls, float], tuple[Controls, dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class Change:
    controls: Controls  # as they are after the change
    entry: AuditEntry
    daily_budget: int  # today's effective budget, nano-dollars
    budget_override: int | None  # today's operator budget, if one applies
    monthly_budget: int | None = None  # this month's budget (None: no monthly budget)
    month_override: int | None = None  # this month's operator budget, if one applies


class OperatorService:
    def __init__(
        self,
        store: ControlStore,
        cache: ControlsCache,
        limiter: RateLimiter,
        configured_budget: int,
        clock: Callable[[], float],
        spend_reset: UserSpendReset | None = None,
        on_action: Callable[[AuditEntry], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shard_split: Callable[[str, int], tuple[int, ...]] | None = None,
        configured_month_budget: int | None = None,
        month_split: Callable[[str, int], tuple[int, ...]] | None = None,
    ) -> None:
        self._configured_month_budget = configured_month_budget
        self._month_split = month_split  # (day, month budget) -> the day's shard limits it leaves, if lowered
        self._shard_split = shard_split  # (day, budget) -> each shard's limit, from what each committed
        self._store = store
        self._cache = cache
        self._limiter = limiter
        self._configured_budget = configured_budget
        self._clock = clock
        self._spend_reset = spend_reset
        self._on_action = on_action
        self._sleep = sleep

    def effective_budget(self, controls: Controls, now: float) -> int:
        return effective_budget(controls, now, self._configured_budget)

    def month_budget(self, controls: Controls, now: float) -> int | None:
        """This month's budget: the operator's override for it, else the configured one (None: none)."""
        override = month_override_for(controls, utc_day(now)[:7])
        return override if override is not None else self._configured_month_budget

    def authorize(self, who: User, attempt: str, request_id: str) -> None:
        """Let ``who`` use an operator route (``attempt``: "PUT /api/admin/budget"), or raise 403
        ``forbidden`` (no role admin) / ``user_blocked`` (blocked by an operator), audited. The block
        list is read from the store (one consistent GetItem), never from this container's copy."""
        if not who.is_admin:
            self._deny(who, attempt, request_id, ForbiddenError("This route is for operators (role admin)."))
        if who.id in self._store.read().blocked:
            blocked = UserBlockedError("Your access to this service has been blocked by an operator.")
            self._deny(who, attempt, request_id, blocked)

    def _not_themselves(self, who: User, user_id: str, action: str, request_id: str) -> None:
        if user_id == who.id:
            self._deny(
                who,
                f"{action} themselves",
                request_id,
                ForbiddenError(f"An operator cannot {action} themselves; ask another operator."),
            )

    def _deny(self, who: User, attempt: str, request_id: str, error: ServiceError) -> NoReturn:
        """Write the refusal to the audit trail, then raise it (a refusal stays a refusal if the
        trail cannot be written: logged, never turned into a 503 or a pass)."""
        now = self._clock()
        entry = AuditEntry(uuid.uuid4().hex, now, who.id, "denied", attempt, {}, {"error": error.code}, request_id)
        metrics.add_metric(name="OperatorDenied", unit="Count", value=1)
        logger.warning(
            "operator route denied",
            extra={"who": hashed_user_id(who.id), "attempt": attempt, "error": error.code},
        )
        try:
            self._store.record(entry)
        except ServiceError as exc:
            logger.error("could not audit an operator route denial", extra={"reason": exc.reason})
        raise error

    def set_budget(self, who: User, nanos: int | None, request_id: str, monthly: int | None = None) -> Change:
        """Today's global budget is ``nanos`` until the next UTC midnight, and (when given) this
        month's is ``monthly`` until the month ends; one change, one audit entry."""

        def edit(current: Controls, now: float) -> tuple[Controls, dict[str, Any], dict[str, Any]]:
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            changed, today = current, utc_day(now)
            if nanos is not None:
                before["daily_budget_usd"] = usd_for_display(self.effective_budget(current, now))
                after.update({"daily_budget_usd": usd_for_display(nanos), "until": iso(next_midnight(now))})
                previous = current.budget_override
                # the previous day's override outlives midnight while that day's late holds settle
                earlier = previous if previous is not None and previous.day != today else current.earlier_override
                shards = self._shard_split(today, nanos) if self._shard_split is not None else ()
                changed = replace(
                    changed, budget_override=BudgetOverride(today, nanos, shards), earlier_override=earlier
                )
                if changed.month_override is not None:  # the day's new split already fits what the month leaves
                    changed = replace(changed, month_override=replace(changed.month_override, day="", shard_limits=()))
            if monthly is not None:
                month = today[:7]
                month_before = self.month_budget(current, now)
                before["monthly_budget_usd"] = usd_for_display(month_before) if month_before is not None else None
                after.update({"monthly_budget_usd": usd_for_display(monthly), "month_until": iso(month_end(month))})
                split = self._month_split(today, monthly) if self._month_split is not None else ()
                changed = replace(changed, month_override=MonthOverride(month, monthly, today if split else "", split))
            return changed, before, after

        return self._change(who, "budget", "budget", request_id, edit)

    def pause(self, who: User, reason: str, request_id: str) -> Change:
        def edit(current: Controls, now: float) -> tuple[Controls, dict[str, Any], dict[str, Any]]:
            return replace(current, paused=Pause(reason, who.id, now)), _pause_state(current), _paused(reason)

        return self._change(who, "pause", "service", request_id, edit)

    def resume(self, who: User, request_id: str) -> Change:
        def edit(current: Controls, now: float) -> tuple[Controls, dict[str, Any], dict[str, Any]]:
            return replace(current, paused=None), _pause_state(current), {"paused": False}

        return self._change(who, "resume", "service", request_id, edit)

    def block(self, who: User, user_id: str, request_id: str) -> Change:
        def edit(current: Controls, now: float) -> tuple[Controls, dict[str, Any], dict[str, Any]]:
            if user_id not in current.blocked and len(current.blocked) >= MAX_BLOCKED_USERS:
                raise InvalidRequestError(
                    f"At most {MAX_BLOCKED_USERS} users can be blocked at once; unblock some first."
                )
            blocked = current.blocked | {user_id}
            return replace(current, blocked=blocked), _blocked(current, user_id), {"blocked": True}

        return self._change(who, "block", user_id, request_id, edit)

    def unblock(self, who: User, user_id: str, request_id: str) -> Change:
        self._not_themselves(who, user_id, "unblock", request_id)

        def edit(current: Controls, now: float) -> tuple[Controls, dict[str, Any], dict[str, Any]]:
            blocked = current.blocked - {user_id}
            return replace(current, blocked=blocked), _blocked(current, user_id), {"blocked": False}

        return self._change(who, "unblock", user_id, request_id, edit)

    def reset_user(self, who: User, user_id: str, request_id: str) -> Change:
        """Refill the user's bucket, zero today's count and (when wired) today's dollar use.

        The audit entry is written first: if the reset then fails, the trail shows an attempt
        (the operator got a 503 and retries; a reset is idempotent), never a silent change."""
        self._not_themselves(who, user_id, "reset", request_id)
        now = self._clock()
        day = utc_day(now)
        state = self._limiter.state(user_key(User(id=user_id)))
        count = state.count if state is not None and state.day == day else 0
        entry = AuditEntry(
            uuid.uuid4().hex,
            now,
            who.id,
            "reset",
            user_id,
            {"daily_count": count},
            {"daily_count": 0, "bucket": "full", "dollar_use_reset": self._spend_reset is not None},
            request_id,
        )
        self._store.record(entry)
        self._limiter.reset(user_key(User(id=user_id)))
        if self._spend_reset is not None:
            self._spend_reset.reset_spend(day, user_id)
        self._done(entry)
        return self._outcome(self._cache.current(now), entry, now)

    def record_action(self, who: User, action: str, target: str, after: dict[str, Any], request_id: str) -> AuditEntry:
        """Audit an action that changes no control (a spend export with raw user ids) as every
        change is: the entry written first (a failed write is a 503 and nothing is done), then the
        ``OperatorAction`` metric, the ``operator action`` log line and the ``operator_action`` event."""
        entry = AuditEntry(uuid.uuid4().hex, self._clock(), who.id, action, target, {}, after, request_id)
        self._store.record(entry)
        self._done(entry)
        return entry

    def audit(self, limit: int) -> list[AuditEntry]:
        return self._store.audit(limit)

    def _change(self, who: User, action: str, target: str, request_id: str, edit: Edit) -> Change:
        current = self._store.read()
        for attempt in range(CHANGE_ATTEMPTS):
            now = self._clock()
            changed, before, after = edit(current, now)
            entry = AuditEntry(uuid.uuid4().hex, now, who.id, action, target, before, after, request_id)
            changed = replace(changed, version=current.version + 1, last_audit_id=entry.id)
            if self._store.replace(current.version, changed, entry):
                return self._applied(changed, entry, now)
            current = self._store.read()
            backoff = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
            self._sleep(random.random() * backoff)  # noqa: S311 - jitter, not a secret
        raise StoreUnavailableError(
            "Other operators are changing the controls right now. Please retry.",
            retry_after=1,
            reason=f"{CHANGE_ATTEMPTS} control writes refused by newer versions",
        )

    def _applied(self, controls: Controls, entry: AuditEntry, now: float) -> Change:
        self._cache.adopt(controls, now)  # this container sees its own change at once
        self._done(entry)
        return self._outcome(controls, entry, now)

    def _outcome(self, controls: Controls, entry: AuditEntry, now: float) -> Change:
        month = utc_day(now)[:7]
        return Change(
            controls,
            entry,
            self.effective_budget(controls, now),
            budget_override(controls, now),
            self.month_budget(controls, now),
            month_override_for(controls, month),
        )

    def _done(self, entry: AuditEntry) -> None:
        metrics.add_metric(name="OperatorAction", unit="Count", value=1)
        logger.info(  # user ids only hashed in logs, the acting operator's and the target user's alike
            "operator action",
            extra={
                "action": entry.action,
                "target": _loggable(entry.action, entry.target),
                "who": hashed_user_id(entry.who),
                "audit_id": entry.id,
            },
        )
        if self._on_action is None:
            return
        try:
            self._on_action(entry)
        except Exception:  # a notification must never undo or fail the change
            logger.exception("operator action notification failed", extra={"audit_id": entry.id})


USER_ACTIONS = frozenset({"block", "unblock", "reset"})  # whose target is a user id


def _loggable(action: str, target: str) -> str:
    """``target`` as a log line may carry it: a user id hashed; "service", "budget" and a denied
    attempt ("PUT /api/admin/budget", "unblock themselves") carry none."""
    return hashed_user_id(target) if action in USER_ACTIONS else target


def _pause_state(current: Controls) -> dict[str, Any]:
    if current.paused is None:
        return {"paused": False}
    return {"paused": True, "reason": current.paused.reason, "by": current.paused.by}


def _paused(reason: str) -> dict[str, Any]:
    return {"paused": True, "reason": reason}


def _blocked(current: Controls, user_id: str) -> dict[str, Any]:
    return {"blocked": user_id in current.blocked}
