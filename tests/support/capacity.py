"""Read and steer the local AWS emulator's DynamoDB capacity meter from a test (infra/local/aws_emulator.py)."""

from __future__ import annotations

from typing import Any

import httpx

ZERO = {"wcu": 0, "rcu": 0, "throttled": 0}


class EmulatorCapacity:
    """The emulator's ``/_emulator/capacity`` control route."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def snapshot(self) -> dict[str, Any]:
        """``{"items": {"<pk>|<sk>": {"wcu", "rcu", "throttled"}}, "total": {...}, "item_wcu_per_second": n}``."""
        return self._call("GET")

    def item(self, key: str) -> dict[str, float]:
        """What the item ``"<pk>|<sk>"`` consumed since the last reset (zeros if nothing)."""
        items: dict[str, dict[str, float]] = self.snapshot()["items"]
        return items.get(key, dict(ZERO))

    def total(self) -> dict[str, float]:
        total: dict[str, float] = self.snapshot()["total"]
        return total

    def reset(self) -> dict[str, Any]:
        """Zero every counter (the throttle setting stays)."""
        return self._call("DELETE")

    def set_item_wcu_per_second(self, limit: float, key_prefix: str = "") -> dict[str, Any]:
        """The per-item write ceiling (0: off), on the items whose ``<pk>|<sk>`` starts with
        ``key_prefix`` ("": every item)."""
        return self._call("POST", {"item_wcu_per_second": limit, "key_prefix": key_prefix})

    def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(method, self.endpoint + "/_emulator/capacity", json=body, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
