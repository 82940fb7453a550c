"""The DynamoDB client and the single-table key design shared by every store.

Keys (pk / sk):
  TOKEN#<sha256(token)> / AUTH          validation cache (expires_at = TTL)
  USER#<user_id>        / LIMITS        token bucket + daily count (rate-limit issue)
  IP#<ip>               / AUTHFAIL      failed-auth bucket per client IP
  BUDGET#<yyyy-mm-dd>   / TOTAL         spent + reserved micro-dollars for the UTC day
  BUDGET#<yyyy-mm-dd>   / RES#<id>      one in-flight reservation (expires)
  LEDGER#<yyyy-mm-dd>   / USER#<id> | MODEL#<model>   daily usage ledgers
Every item that stops mattering carries ``expires_at`` (epoch seconds) so TTL removes it.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def number(value: int | float) -> dict[str, str]:
    """A DynamoDB number attribute value (whole numbers only: ms, nano-dollars, counts, epochs)."""
    return {"N": str(int(value))}


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
