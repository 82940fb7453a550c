"""Counts the DynamoDB round trips of a piece of work the way SPEC §7 does: sequential steps.

Calls that overlap in time (sent together, ``dnd_rag.logic.common.concurrently.together``) are one step;
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


def sequential(calls: list[Call]) -> int:
    """Sequential round trips: the longest chain of calls each made after the previous one ended
    (earliest end first finds it). A call alongside another adds no step; merging overlaps
    instead would undercount when one long call overlaps two consecutive ones."""
    count, free_at = 0, float("-inf")
    for call in sorted(calls, key=lambda c: c.ended):
        if call.started >= free_at:
            count += 1
            free_at = call.ended
    return count


class RoundTripRecorder:
    def __init__(self, client: Any, recording: bool = False) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._open = threading.local()
        self._recording = recording
        self._events = client.meta.events
        self._events.register("before-call.dynamodb", self._before)
        self._events.register("after-call.dynamodb", self._after)
        self._events.register("after-call-error.dynamodb", self._after)

    @property
    def count(self) -> int:
        """Calls recorded so far."""
        return len(self.calls)

    def close(self) -> None:
        """Stop listening (the client goes on being used)."""
        self._recording = False
        self._events.unregister("before-call.dynamodb", self._before)
        self._events.unregister("after-call.dynamodb", self._after)
        self._events.unregister("after-call-error.dynamodb", self._after)

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

    def sequential(self) -> int:
        """Sequential round trips of every call recorded (see ``sequential``)."""
        return sequential(self.calls)

    def steps(self) -> list[list[str]]:
        """The calls grouped into sequential steps: each step's calls overlapped in time."""
        groups: list[list[Call]] = []
        for call in sorted(self.calls, key=lambda c: c.started):
            if groups and call.started < max(c.ended for c in groups[-1]):
                groups[-1].append(call)
            else:
                groups.append([call])
        return [sorted(c.operation for c in group) for group in groups]
