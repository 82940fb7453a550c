"""Rate-limit state in DynamoDB: one item per key, changed only by conditional UpdateItem.

Item: pk=<key> (``USER#id`` / ``IP#addr``), sk=LIMITS, ``tat`` (ms), ``day`` (YYYY-MM-DD),
``daily_count``, ``ids`` (map: request id -> admission time in ms, of the recent admissions; see
logic/limits/rate_limit.py), ``expires_at`` (TTL: two days after the day it describes).

Every write names its request: an admission sets ``ids.<id>`` on condition that it is absent, a
refund removes it on condition that it is present. A write re-sent by the SDK (or by
``with_retries``) after its answer was lost is therefore refused, never applied twice, and the
refusal's item (ALL_OLD) shows the caller its own id. Items written before ids existed have no
map: their next admission starts it (``SET ids = :mine`` on condition ``attribute_not_exists(ids)``),
as ``SET ids.<id>`` on a missing map is a ValidationException, not a refusal.

Size: an id costs about 45 bytes (a 32-character uuid and a millisecond time), and the map holds
the last two minutes' admissions, so an item stays under 1 KB (one WCU a write) up to ~20 of them:
the default policy's burst of 15 fits.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import number, store_errors, try_update_item, update_item
from dnd_rag.logic.common.clock import next_midnight, utc_day
from dnd_rag.models.limits import BucketState, Policy, Shape

SORT_KEY = "LIMITS"
KEEP_SECONDS = 2 * 86_400


def _state(item: dict[str, Any] | None) -> BucketState | None:
    if not item or "tat" not in item:
        return None
    ids = {request_id: int(at["N"]) for request_id, at in item["ids"]["M"].items()} if "ids" in item else None
    return BucketState(tat_ms=int(item["tat"]["N"]), day=item["day"]["S"], count=int(item["daily_count"]["N"]), ids=ids)


class DynamoLimitStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @staticmethod
    def _key(key: str) -> dict[str, Any]:
        return {"pk": {"S": key}, "sk": {"S": SORT_KEY}}

    def try_consume(
        self,
        key: str,
        shape: Shape,
        policy: Policy,
        now: float,
        request_id: str,
        drop: tuple[str, ...] = (),
        first_id: bool = False,
    ) -> tuple[bool, BucketState | None]:
        now_ms = int(now * 1000)
        interval = policy.interval_ms
        names = {"#day": "day"}
        values: dict[str, Any] = {":one": number(1), ":today": {"S": utc_day(now)}}
        if shape is Shape.NEW_DAY:
            # The day's map starts with this admission alone (yesterday's ids go with yesterday).
            # A resend is refused: the first attempt left the item on today.
            values |= {
                ":tat": number(now_ms + interval),
                ":mine": {"M": {request_id: number(now_ms)}},
                ":expires": number(next_midnight(now) + KEEP_SECONDS),
            }
            return self._try_update(
                key,
                "SET tat = :tat, #day = :today, daily_count = :one, ids = :mine, expires_at = :expires",
                "attribute_not_exists(pk) OR #day < :today",
                names,
                values,
            )
        values[":limit"] = number(policy.daily_limit)
        values[":now"] = number(now_ms)
        if first_id:  # an item written before admissions were named: this admission starts its map
            record, unrecorded = "ids = :mine", "attribute_not_exists(ids)"
            values[":mine"] = {"M": {request_id: number(now_ms)}}
            remove = ""
        else:
            record, unrecorded = "ids.#rid = :now", "attribute_not_exists(ids.#rid)"
            names["#rid"] = request_id
            drop = tuple(old for old in drop if old != request_id)  # the paths of one write must not overlap
            names |= {f"#old{n}": old for n, old in enumerate(drop)}
            # ids no request needs any more (removing one that is already gone is a no-op)
            remove = " REMOVE " + ", ".join(f"ids.#old{n}" for n in range(len(drop))) if drop else ""
        if shape is Shape.FULL:
            update = f"SET tat = :tat, daily_count = daily_count + :one, {record}"
            condition = "#day = :today AND tat <= :now"
            values[":tat"] = number(now_ms + interval)
        else:
            update = f"SET tat = tat + :interval, daily_count = daily_count + :one, {record}"
            condition = "#day = :today AND tat > :now AND tat <= :max_tat"
            values |= {":interval": number(interval), ":max_tat": number(now_ms + (policy.capacity - 1) * interval)}
        condition += f" AND daily_count < :limit AND {unrecorded}"
        return self._try_update(key, update + remove, condition, names, values)

    def _try_update(
        self, key: str, update: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> tuple[bool, BucketState | None]:
        applied, item = try_update_item(
            self._client,
            self._table,
            self._key(key),
            "UpdateItem limits",
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return applied, _state(item)

    def refund(self, key: str, day: str, interval_ms: int, request_id: str) -> BucketState | None:
        """Undo admission ``request_id`` of ``day``: once (a resent refund finds its id gone and is
        refused), and a no-op once the day has rolled over or the key was reset."""
        try:
            response = update_item(
                self._client,
                self._table,
                self._key(key),
                "UpdateItem limits refund",
                ReturnValues="ALL_NEW",
                UpdateExpression="SET tat = tat - :interval, daily_count = daily_count - :one REMOVE ids.#rid",
                ConditionExpression="attribute_exists(ids.#rid) AND #day = :day",
                ExpressionAttributeNames={"#day": "day", "#rid": request_id},
                ExpressionAttributeValues={":interval": number(interval_ms), ":one": number(1), ":day": {"S": day}},
            )
        except ClientError:  # refused: refunded already, another day, or reset (update_item raises nothing else)
            return None
        return _state(response.get("Attributes"))

    def forget(self, key: str, day: str, request_id: str) -> None:
        """Drop admission ``request_id`` of ``day`` from the map, keeping its token and count: it
        is final. Refused (a no-op) when the id is gone already or the day rolled over."""
        try:
            update_item(
                self._client,
                self._table,
                self._key(key),
                "UpdateItem limits settle",
                UpdateExpression="REMOVE ids.#rid",
                ConditionExpression="attribute_exists(ids.#rid) AND #day = :day",
                ExpressionAttributeNames={"#day": "day", "#rid": request_id},
                ExpressionAttributeValues={":day": {"S": day}},
            )
        except ClientError:  # refused: settled already, another day, or reset
            return

    def read(self, key: str) -> BucketState | None:
        with store_errors("GetItem limits"):
            item = self._client.get_item(TableName=self._table, Key=self._key(key), ConsistentRead=True).get("Item")
        return _state(item)

    def reset(self, key: str) -> None:
        """Delete the key's item: the next admission starts a fresh day (full bucket, count 0)."""
        with store_errors("DeleteItem limits"):
            self._client.delete_item(TableName=self._table, Key=self._key(key))
