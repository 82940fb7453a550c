"""A user's own limits in DynamoDB: the daily dollar cap and the queries running at once.

They live on the user's ledger item ``LEDGER#<day> / USER#<id>`` (see dal/money/budget.py):
  ``uh_<id>``     = {a: amount, l: lease end, m: model} per open hold (same id as ``h_<id>`` on TOTAL)
  ``inflight``    = how many ``uh_`` holds are open (each write that adds or removes one moves it)
  ``ucommitted``  = the user's spend counted against the cap + every open hold of the user; kept
                    apart from the ledger's ``cost`` so an operator can forgive a day's cap use
                    without breaking the ledgers' reconciliation with the total.
Every write names its hold in its condition (a re-sent write is refused, then read as done). A hold
is closed by the settle's ledger transaction (dal/money/budget.py), by a release, or, when its lease
ended, by the global reclaim or (when it has no hold on TOTAL) by ``drop``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import int_value, number, store_errors, try_update_item, update_item
from dnd_rag.dal.money.budget import KEEP_SECONDS, USER_HOLD_PREFIX, user_ledger_key
from dnd_rag.errors import StoreUnavailableError
from dnd_rag.models.money import UserHoldEntry, UserTotals

RESET_ATTEMPTS = 5


def user_totals_from_item(item: dict[str, Any] | None) -> UserTotals:
    item = item or {}
    return UserTotals(
        committed=int_value(item, "ucommitted"),
        in_flight=int_value(item, "inflight"),
        holds={
            name.removeprefix(USER_HOLD_PREFIX): UserHoldEntry(
                int(value["M"]["a"]["N"]), float(value["M"]["l"]["N"]), value["M"].get("m", {}).get("S", "")
            )
            for name, value in item.items()
            if name.startswith(USER_HOLD_PREFIX)
        },
    )


class DynamoUserBudgetStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, operation: str, day: str, user_id: str, **kwargs: Any) -> dict[str, Any]:
        return update_item(self._client, self._table, user_ledger_key(day, user_id), operation, **kwargs)

    def _try_update(self, operation: str, day: str, user_id: str, **kwargs: Any) -> tuple[bool, UserTotals]:
        """A conditional UpdateItem: (applied, the item after it or, if refused, as found)."""
        applied, item = try_update_item(self._client, self._table, user_ledger_key(day, user_id), operation, **kwargs)
        return applied, user_totals_from_item(item)

    def try_open(
        self,
        day: str,
        user_id: str,
        hold_id: str,
        entry: UserHoldEntry,
        max_in_flight: int,
        headroom: int | None,
        expires_at: float,
        email: str | None = None,
    ) -> tuple[bool, UserTotals]:
        """Open the user's hold if fewer than ``max_in_flight`` are open and (with a cap)
        ``ucommitted <= headroom``: (granted, the user's totals after it or as found)."""
        if headroom is not None and headroom < 0:  # larger than the whole cap: nothing to ask
            return False, self.read(day, user_id)
        condition = "attribute_not_exists(#uh) AND (attribute_not_exists(inflight) OR inflight < :max)"
        values = {
            ":entry": {"M": {"a": number(entry.amount), "l": number(entry.lease_until), "m": {"S": entry.model}}},
            ":one": number(1),
            ":amount": number(entry.amount),
            ":max": number(max_in_flight),
            ":expires": number(expires_at + KEEP_SECONDS),
        }
        if headroom is not None:
            condition += " AND (attribute_not_exists(ucommitted) OR ucommitted <= :headroom)"
            values[":headroom"] = number(headroom)
        if email:  # who the user is, for the operator's views (the auth API's e-mail)
            values[":email"] = {"S": email[:254]}

        granted, totals = self._try_update(
            "UpdateItem user hold",
            day,
            user_id,
            UpdateExpression="SET #uh = :entry, expires_at = :expires"
            + (", email = :email" if email else "")
            + " ADD inflight :one, ucommitted :amount",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#uh": USER_HOLD_PREFIX + hold_id},
            ExpressionAttributeValues=values,
        )
        # refused: unless by our own write, applied once already, whose answer was lost
        return granted or hold_id in totals.holds, totals

    def try_resize(
        self, day: str, user_id: str, hold_id: str, old: int, new: int, headroom: int | None
    ) -> tuple[bool, UserTotals]:
        """Change the user's hold from ``old`` to ``new``; growing it needs ``ucommitted <= headroom``."""
        if new > old and headroom is not None and headroom < 0:
            return False, self.read(day, user_id)
        condition = "#uh.a = :old"
        values = {":old": number(old), ":new": number(new), ":delta": number(new - old)}
        if new > old and headroom is not None:
            condition += " AND ucommitted <= :headroom"
            values[":headroom"] = number(headroom)
        granted, totals = self._try_update(
            "UpdateItem user hold resize",
            day,
            user_id,
            UpdateExpression="SET #uh.a = :new ADD ucommitted :delta",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#uh": USER_HOLD_PREFIX + hold_id},
            ExpressionAttributeValues=values,
        )
        hold = totals.holds.get(hold_id)  # refused: unless by our own resize, applied once already
        return granted or (hold is not None and hold.amount == new), totals

    def release(self, day: str, user_id: str, hold_id: str, amount: int, expired_before: float | None = None) -> bool:
        """Close the user's hold without a charge (it paid for nothing); False if it is gone or
        changed (or, with ``expired_before``, still leased)."""
        condition = "#uh.a = :amount"
        values = {":minus": number(-amount), ":one_less": number(-1), ":amount": number(amount)}
        if expired_before is not None:
            condition += " AND #uh.l < :now"
            values[":now"] = number(expired_before)
        try:
            self._update(
                "UpdateItem user hold release",
                day,
                user_id,
                UpdateExpression="REMOVE #uh ADD inflight :one_less, ucommitted :minus",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#uh": USER_HOLD_PREFIX + hold_id},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _item(self, day: str, user_id: str) -> dict[str, Any]:
        with store_errors("GetItem user limits"):
            item: dict[str, Any] = self._client.get_item(
                TableName=self._table, Key=user_ledger_key(day, user_id), ConsistentRead=True
            ).get("Item", {})
        return item

    def read(self, day: str, user_id: str) -> UserTotals:
        return user_totals_from_item(self._item(day, user_id))

    def reset_spend(self, day: str, user_id: str) -> None:
        """Zero the user's cap use for ``day`` (open holds stay counted); the ledgers are untouched.

        The write is pinned to the state it read (``ucommitted`` and every open hold), so a hold
        opened, grown or settled in between makes it read and try again."""
        for _ in range(RESET_ATTEMPTS):
            item = self._item(day, user_id)
            if "ucommitted" not in item:
                return
            totals = user_totals_from_item(item)
            names, values = {}, {":old": number(totals.committed), ":held": number(totals.committed - totals.spent)}
            condition = ["ucommitted = :old"]
            for n, (hold_id, hold) in enumerate(totals.holds.items()):
                names[f"#h{n}"] = USER_HOLD_PREFIX + hold_id
                values[f":a{n}"] = number(hold.amount)
                condition.append(f"#h{n}.a = :a{n}")
            try:
                self._update(
                    "UpdateItem user spend reset",
                    day,
                    user_id,
                    UpdateExpression="SET ucommitted = :held",
                    ConditionExpression=" AND ".join(condition),
                    **({"ExpressionAttributeNames": names} if names else {}),
                    ExpressionAttributeValues=values,
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue
                raise
            return
        raise StoreUnavailableError(
            "The service is temporarily unavailable. Please retry shortly.",
            retry_after=5,
            reason="dynamodb UpdateItem user spend reset: the user's item kept changing",
        )
