"""Run two independent calls at the same time, so a request waits for the slower, not the sum.

Used where two DynamoDB round trips do not depend on each other (a user's limit and the global
budget, the answer cache and the admission): SPEC §7 counts sequential round trips. boto3 clients
are thread-safe. The second call runs on a thread of its own, never on a shared bounded pool:
calls nest (the wallet runs both books together, and one book may run a sweep beside its own
write), and nested waits on a bounded pool deadlock once its workers all wait on queued work.
A thread costs ~0.1 ms, far below the round trip it overlaps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future


def together[A, B](first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Both results, once both calls have ended. If either raised, the first one's exception
    (else the second's) is raised after both ended: nothing keeps running unobserved. A call
    whose success must be undone when the other fails should return its outcome, not raise."""
    future: Future[B] = Future()

    def run_second() -> None:
        try:
            future.set_result(second())
        except BaseException as exc:
            future.set_exception(exc)

    thread = threading.Thread(target=run_second, name="concurrently", daemon=True)
    thread.start()
    try:
        result = first()
    except BaseException:
        thread.join()
        raise
    return result, future.result()
