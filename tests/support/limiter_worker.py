"""A separate "container" for the cross-process limiter test: N threads try to admit one key at
the same moment; prints how many were admitted, and how many were answered 503 (store
unavailable). Run as a module with AWS_ENDPOINT_URL set."""

from __future__ import annotations

import sys
import threading
import time

from dnd_rag.dal.dynamo import dynamodb_client
from dnd_rag.dal.limits.rate_limit import DynamoLimitStore
from dnd_rag.errors import DailyLimitExceededError, RateLimitedError, ServiceError
from dnd_rag.logic.limits.rate_limit import Policy, RateLimiter


def main() -> None:
    table, key, threads, capacity, daily, start_at = sys.argv[1:7]
    limiter = RateLimiter(DynamoLimitStore(dynamodb_client(), table))
    policy = Policy(int(capacity), 1e-6, int(daily))
    admitted = unavailable = 0
    lock = threading.Lock()

    def attempt() -> None:
        nonlocal admitted, unavailable
        time.sleep(max(0.0, float(start_at) - time.time()))
        try:
            # one arrival time for every thread, as if they came at the same instant: with each its
            # own clock reading, one read before the first admission is (rightly) short by a few ms
            limiter.admit(key, policy, float(start_at))
        except (RateLimitedError, DailyLimitExceededError):  # 429: not admitted
            return
        except ServiceError as exc:  # 503 (a slow machine's store timed out): given back, not admitted
            print(f"unavailable: {exc.reason}", file=sys.stderr)
            with lock:
                unavailable += 1
            return
        with lock:
            admitted += 1

    workers = [threading.Thread(target=attempt) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(admitted, unavailable)


if __name__ == "__main__":
    main()
