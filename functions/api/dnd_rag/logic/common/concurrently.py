"""Run two independent calls at the same time, so a request waits for the slower, not the sum.

Used where two DynamoDB round trips do not depend on each other (a user's limit and the global
budget, the answer cache and the admission): SPEC §7 counts sequential round trips. boto3 clients
are thread-safe; the pool is per container and small because a Lambda container serves one
request at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="concurrently")


def together[A, B](first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Both results, once both calls have ended. If either raised, the first one's exception
    (else the second's) is raised after both ended: nothing keeps running unobserved. A call
    whose success must be undone when the other fails should return its outcome, not raise."""
    future = _POOL.submit(second)
    try:
        result = first()
    except BaseException:
        wait([future])
        raise
    return result, future.result()
