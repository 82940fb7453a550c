"""Switch the local AWS emulator's DynamoDB fault injection from a test (infra/local/aws_emulator.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


class EmulatorFaults:
    """The emulator's ``/_emulator/faults`` and ``/_emulator/operations`` control routes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def set(self, rules: list[dict[str, Any]], seed: int = 0, transaction_window_ms: int = 0) -> dict[str, Any]:
        """Replace the fault configuration (and zero the counters); returns the emulator's status."""
        body = {"seed": seed, "transaction_window_ms": transaction_window_ms, "rules": rules}
        return self._call("POST", "/_emulator/faults", body)

    def clear(self) -> None:
        """No more faults, no transaction window; the counters stay readable until the next ``set``."""
        self._call("DELETE", "/_emulator/faults")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/faults")

    def injected(self) -> dict[str, dict[str, int]]:
        """``{fault: {operation: count}}`` since the last ``set``."""
        injected: dict[str, dict[str, int]] = self.status()["injected"]
        return injected

    def total_injected(self) -> int:
        return sum(sum(per_operation.values()) for per_operation in self.injected().values())

    def operations(self) -> list[dict[str, str]]:
        """Every distinct ``{"service", "operation"}`` the emulator has seen since it started."""
        operations: list[dict[str, str]] = self._call("GET", "/_emulator/operations")["operations"]
        return operations

    @contextmanager
    def injecting(
        self, rules: list[dict[str, Any]], seed: int = 0, transaction_window_ms: int = 0
    ) -> Iterator[EmulatorFaults]:
        self.set(rules, seed=seed, transaction_window_ms=transaction_window_ms)
        try:
            yield self
        finally:
            self.clear()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(method, self.endpoint + path, json=body, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
