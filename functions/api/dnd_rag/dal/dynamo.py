"""The DynamoDB client and the single-table key design shared by every store.

Keys (pk / sk):
  TOKEN#<sha256(token)> / AUTH          validation cache (expires_at = TTL)
  USER#<user_id>        / LIMITS        token bucket + daily count + recent request ids (dal/limits/rate_limit.py)
  IP#<ip or /64>        / LIMITS        the same, counting failed sign-ins per client network
  BUDGET#<yyyy-mm-dd>   / TOTAL         the day's money: spent, open holds, per-model ledger (dal/money/budget.py)
  LEDGER#<yyyy-mm-dd>   / USER#<id>     a user's daily usage ledger
  LEDGER#<yyyy-mm-dd>   / CHARGE#<id>   what one request was charged (makes the ledger write exactly-once)
Every item that stops mattering carries ``expires_at`` (epoch seconds) so TTL removes it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dnd_rag.errors import StoreUnavailableError

# One retry budget per request (SPEC §4), so that every wait fits the request's deadline:
# - the SDK sends each call at most twice (``total_max_attempts``: the first send and one retry,
#   botocore's standard mode: throttles back off rand() * 1 s, 5xx rand() * 50 ms);
# - ``with_retries`` re-sends only what the SDK cannot judge: a transaction conflict (never retried
#   by botocore) and a 500 on an idempotent write (a lost answer), at most RETRY_ATTEMPTS times with
#   waits capped at RETRY_CAP_SECONDS; never a throttle: a throttled item is hot, more sends make it
#   hotter, and the caller gets 503 ``service_unavailable`` + Retry-After at once.
# Worst case per operation: a throttle 2 sends, ~1 s; a 5xx 2 x 5 = 10 fast sends, < 2 s of waits; an
# endpoint that never answers 2 x (1 s connect + 3 s read) = 8 s, and that failure ends the request:
# inside the 27 s a request may work, so the caller gets our 503, never API Gateway's own. A connect in
# the same region takes milliseconds; the read keeps room for a loaded (serialized) local emulator.
CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2})


# Answers after which an idempotent write is sent again by ``with_retries``: a conflict (the item was
# in another transaction; botocore never retries it) and a 500 (maybe applied, answer lost: the
# write's condition names the request, so a second application is refused, not counted).
TRANSIENT_CODES = frozenset({"TransactionConflictException", "InternalServerError"})
TRANSIENT_CANCELLATIONS = frozenset({"TransactionConflict"})
# Throttling: answered 503 with a short Retry-After (DynamoDB's per-item ceiling is per second).
THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})
THROTTLED_RETRY_AFTER = 2
RETRY_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.025
RETRY_CAP_SECONDS = 0.4  # all waits together stay under a second: far inside the request deadline


def is_transient(exc: ClientError) -> bool:
    code = exc.response["Error"]["Code"]
    if code in TRANSIENT_CODES:
        return True
    if code == "TransactionCanceledException":
        reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons", [])}
        return bool(reasons & TRANSIENT_CANCELLATIONS) and "ConditionalCheckFailed" not in reasons
    return False


def with_retries[T](
    call: Callable[[], T],
    attempts: int = RETRY_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """``call()``, sent again after a transient refusal with full-jitter backoff.

    Only for writes that are idempotent (their condition names the request's own id), so a
    write that was applied but whose answer was lost cannot be counted twice."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
        sleep(jitter() * min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt))
    raise AssertionError("unreachable")


def number(value: int | float) -> dict[str, str]:
    """A DynamoDB number attribute value (whole numbers only: ms, nano-dollars, counts, epochs)."""
    return {"N": str(int(value))}


def int_value(item: dict[str, Any], name: str) -> int:
    """A number attribute of ``item`` as an int; 0 when absent."""
    return int(item.get(name, {}).get("N", 0))


def update_item(client: Any, table: str, key: dict[str, Any], operation: str, **kwargs: Any) -> dict[str, Any]:
    """One idempotent UpdateItem, re-sent after transient refusals (``with_retries``); store
    failures become StoreUnavailableError, a refused condition is re-raised as ClientError."""
    with store_errors(operation):
        response: dict[str, Any] = with_retries(lambda: client.update_item(TableName=table, Key=key, **kwargs))
    return response


def try_update_item(
    client: Any, table: str, key: dict[str, Any], operation: str, **kwargs: Any
) -> tuple[bool, dict[str, Any] | None]:
    """A conditional ``update_item``: (applied, the item after it, or, if refused, as found)."""
    try:
        response = update_item(
            client,
            table,
            key,
            operation,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **kwargs,
        )
    except ClientError as exc:
        return False, exc.response.get("Item")
    return True, response["Attributes"]


@cache
def dynamodb_client() -> Any:
    """One client per container (endpoint and region come from the standard AWS variables)."""
    return boto3.client("dynamodb", config=CLIENT_CONFIG)


@contextmanager
def store_errors(operation: str, expected: tuple[str, ...] = ("ConditionalCheckFailedException",)) -> Iterator[None]:
    """Turn transport and service failures into StoreUnavailableError (503, fail closed).

    ``expected`` error codes (a refused condition, a cancelled transaction) are answers, not
    outages: they are re-raised for the caller to handle."""
    try:
        yield
    except ClientError as exc:
        if exc.response["Error"]["Code"] in expected:
            raise
        raise _unavailable(operation, exc.response["Error"]["Code"]) from None
    except BotoCoreError as exc:
        raise _unavailable(operation, type(exc).__name__) from None


def _unavailable(operation: str, code: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        "The service is temporarily unavailable. Please retry shortly.",
        retry_after=THROTTLED_RETRY_AFTER if code in THROTTLE_CODES else 5,
        reason=f"dynamodb {operation}: {code}",
    )
