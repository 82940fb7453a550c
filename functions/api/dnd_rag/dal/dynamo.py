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

# Fail fast: a limiter that hangs is worse than one that says 503. An endpoint that refuses costs
# ~0.5 s in all (measured through sam local); one that never answers at most 3 x (1 s connect + 3 s
# read) plus backoff per operation, and the first failed operation ends the request: well inside the
# function's 29 s, so the caller gets our 503, never API Gateway's own 502/504. A connect in the
# same region takes milliseconds; the read keeps room for a loaded (serialized) local emulator.
CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 3})


# Answers DynamoDB gives when a write could not run *now*; the write was not applied and is safe
# to send again. botocore retries the throttling and 5xx ones itself (standard mode) but never
# TransactionConflictException, nor a transaction cancelled because of a conflict.
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)
TRANSIENT_CANCELLATIONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
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
        retry_after=5,
        reason=f"dynamodb {operation}: {code}",
    )
