"""Which rate-limit policy applies to a user: the default, overridden per plan by PLAN_LIMITS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from dnd_rag.models.limits import Policy

DEFAULT_PLAN = "default"


class PlanOverride(Protocol):
    capacity: int | None
    refill_rate: float | None
    daily_limit: int | None


class PlanBook:
    def __init__(self, default: Policy, overrides: Mapping[str, PlanOverride]) -> None:
        self._default = default
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

    def policy(self, plan: str | None) -> tuple[str, Policy]:
        """(plan name, policy); a plan without overrides (or no plan) gets the default policy."""
        name = plan or DEFAULT_PLAN
        return name, self._policies.get(name, self._default)
