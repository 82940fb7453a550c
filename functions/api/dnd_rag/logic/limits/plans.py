"""Which limits apply to a user: the defaults, overridden per plan by PLAN_LIMITS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from dnd_rag.models.limits import Policy, UserLimits
from dnd_rag.pricing import usd_to_nanos

DEFAULT_PLAN = "default"
# How many passages a query may ask for (each one is prompt tokens, i.e. money): the default plan
# 20 of the 50 the API accepts at most; PLAN_LIMITS[plan].max_k sets a plan's own (1..50).
DEFAULT_MAX_K = 20
NO_USER_LIMITS = UserLimits(daily_nanos=None, max_in_flight=2)  # no cap; MAX_IN_FLIGHT_PER_USER's default


class PlanOverride(Protocol):
    capacity: int | None
    refill_rate: float | None
    daily_limit: int | None
    daily_usd: Decimal | None
    max_in_flight: int | None
    max_k: int | None


class PlanBook:
    def __init__(
        self,
        default: Policy,
        overrides: Mapping[str, PlanOverride],
        user_default: UserLimits = NO_USER_LIMITS,
        default_max_k: int = DEFAULT_MAX_K,
    ) -> None:
        self._default = default
        self._user_default = user_default
        self._default_max_k = default_max_k
        self._max_k = {name: override.max_k for name, override in overrides.items() if override.max_k is not None}
        self._policies = {
            name: replace(
                default,
                **{
                    field: value
                    for field in ("capacity", "refill_rate", "daily_limit")
                    if (value := getattr(override, field)) is not None
                },
            )
            for name, override in overrides.items()
        }
        self._user_limits = {
            name: UserLimits(
                usd_to_nanos(override.daily_usd) if override.daily_usd is not None else user_default.daily_nanos,
                override.max_in_flight if override.max_in_flight is not None else user_default.max_in_flight,
            )
            for name, override in overrides.items()
        }

    def policy(self, plan: str | None) -> tuple[str, Policy]:
        """(plan name, policy); a plan without overrides (or no plan) gets the default policy."""
        name = plan or DEFAULT_PLAN
        return name, self._policies.get(name, self._default)

    def max_k(self, plan: str | None) -> int:
        """The most passages a query of this plan may ask for."""
        return self._max_k.get(plan or DEFAULT_PLAN, self._default_max_k)

    def user_limits(self, plan: str | None) -> UserLimits:
        """The user's dollar cap and in-flight limit; a plan without overrides gets the defaults."""
        return self._user_limits.get(plan or DEFAULT_PLAN, self._user_default)
