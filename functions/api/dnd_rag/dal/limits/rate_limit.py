"""Rate-limit state in DynamoDB: one item per key, changed only by conditional UpdateItem.

Item: pk=<key> (``USER#id`` / ``IP#addr``), sk=LIMITS, ``tat`` (ms), ``day`` (YYYY-MM-DD),
``daily_count``, ``expires_at`` (TTL: two days after the day it describes).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import number, store_errors
from dnd_rag.logic.common.clock import next_midnight, utc_day
from dnd_rag.models.limits import BucketState, Policy, Shape

SORT_KEY = "LIMITS"
KEEP_SECONDS = 2 * 86_400
_CONDITIONAL_FAILED = "ConditionalCheckFailedException"


def _state(item: dict[str, Any] | None) -> BucketState | None:
    if not item or "tat" not in item:
        return None
    return BucketState(tat_ms=int(item["tat"]["N"]), day=item["day"]["S"], count=int(item["daily_count"]["N"]))


class DynamoLimitStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @staticmethod
    def _key(key: str) -> dict[str, Any]:
        return {"pk": {"S": key}, "sk": {"S": SORT_KEY}}

    def try_consume(self, key: str, shape: Shape, policy: Policy, now: float) -> tuple[bool, BucketState | None]:
        now_ms = int(now * 1000)
        interval = policy.interval_ms
        today = utc_day(now)
        values: dict[str, Any] = {":one": number(1), ":limit": number(policy.daily_limit)}
        if shape is Shape.NEW_DAY:
            update = "SET tat = :tat, #day = :today, daily_count = :one, expires_at = :expires"
            condition = "attribute_not_exists(pk) OR #day < :today"
            values |= {
                ":tat": number(now_ms + interval),
                ":today": {"S": today},
                ":expires": number(next_midnight(now) + KEEP_SECONDS),
            }
            values.pop(":limit")
        elif shape is Shape.FULL:
            update = "SET tat = :tat, daily_count = daily_count + :one"
            condition = "#day = :today AND tat <= :now AND daily_count < :limit"
            values |= {":tat": number(now_ms + interval), ":today": {"S": today}, ":now": number(now_ms)}
        else:
            update = "SET tat = tat + :interval, daily_count = daily_count + :one"
            condition = "#day = :today AND tat > :now AND tat <= :max_tat AND daily_count < :limit"
            values |= {
                ":interval": number(interval),
                ":today": {"S": today},
                ":now": number(now_ms),
                ":max_tat": number(now_ms + (policy.capacity - 1) * interval),
            }
        try:
            with store_errors("UpdateItem limits"):
                response = self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#day": "day"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ClientError as exc:  # store_errors re-raises anything but a refused condition as 503
            return False, _state(exc.response.get("Item"))
        return True, _state(response.get("Attributes"))

    def refund(self, key: str, day: str, interval_ms: int) -> None:
        """Undo one admission of ``day``; a no-op once the day has rolled over."""
        try:
            with store_errors("UpdateItem limits refund"):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key),
                    UpdateExpression="SET tat = tat - :interval, daily_count = daily_count - :one",
                    ConditionExpression="#day = :day AND daily_count > :zero",
                    ExpressionAttributeNames={"#day": "day"},
                    ExpressionAttributeValues={
                        ":interval": number(interval_ms),
                        ":one": number(1),
                        ":zero": number(0),
                        ":day": {"S": day},
                    },
                )
        except ClientError:
            return

    def read(self, key: str) -> BucketState | None:
        with store_errors("GetItem limits"):
            item = self._client.get_item(TableName=self._table, Key=self._key(key), ConsistentRead=True).get("Item")
        return _state(item)

    def reset(self, key: str) -> None:
        """Delete the key's item: the next admission starts a fresh day (full bucket, count 0)."""
        with store_errors("DeleteItem limits"):
            self._client.delete_item(TableName=self._table, Key=self._key(key))
