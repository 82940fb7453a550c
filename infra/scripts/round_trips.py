"""Counts the DynamoDB round trips of a piece of work the way SPEC §7 does: sequential steps.

Calls that overlap in time (sent together, ``dnd_rag.logic.concurrently.together``) are one step;
each call is timed from botocore's ``before-call`` to its ``after-call`` (or ``after-call-error``),
so SDK retries stay inside their call. Used by ``make bench`` and the round-trip tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    operation: str
    started: float
    ended: float


class RoundTripRecorder:
    def __init__(self, client: Any) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._open = threading.local()
        self._recording = False
        events = client.meta.events
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)
        events.register("after-call-error.dynamodb", self._after)

    def start(self) -> None:
        with self._lock:
            self.calls.clear()
            self._recording = True

    def stop(self) -> None:
        self._recording = False

    def _before(self, model: Any, **_: Any) -> None:
        self._open.call = (model.name, time.perf_counter())

    def _after(self, **_: Any) -> None:
        name, started = getattr(self._open, "call", (None, 0.0))
        self._open.call = None
        if name is not None and self._recording:
            with self._lock:
                self.calls.append(Call(name, started, time.perf_counter()))

    def steps(self) -> list[list[str]]:
        """The calls grouped into sequential steps: each step's calls overlapped in time."""
        groups: list[list[Call]] = []
        for call in sorted(self.calls, key=lambda c: c.started):
            if groups and call.started < max(c.ended for c in groups[-1]):
                groups[-1].append(call)
            else:
                groups.append([call])
        return [sorted(c.operation for c in group) for group in groups]
