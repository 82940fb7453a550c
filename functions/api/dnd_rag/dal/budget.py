"""The daily budget, its alert claims and the usage ledgers in DynamoDB.

Items (all expire with TTL a few days after their UTC day):
  BUDGET#<day> / TOTAL       committed, spent (nano-dollars), one ``res_<id>`` = [amount, lease]
                             per open reservation, ``alert_<T>_sent`` / ``alert_<T>_claim``
  LEDGER#<day> / USER#<id>   requests, prompt/completion/embedding tokens, cost
  LEDGER#<day> / MODEL#<m>   the same per model
Reservations live in the TOTAL item so that reserving is one conditional UpdateItem; settling is
one transaction (TOTAL + both ledgers).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import number, store_errors
from dnd_rag.logic.budget import BudgetTotals, Charge
from dnd_rag.logic.ports import LedgerRow

KEEP_SECONDS = 3 * 86_400
RESERVATION_PREFIX = "res_"
LEDGER_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "embedding_tokens", "cost")


def _total_key(day: str) -> dict[str, Any]:
    return {"pk": {"S": f"BUDGET#{day}"}, "sk": {"S": "TOTAL"}}


def _totals(item: dict[str, Any] | None) -> BudgetTotals:
    item = item or {}
    sent = frozenset(int(name.split("_")[1]) for name in item if name.startswith("alert_") and name.endswith("_sent"))
    return BudgetTotals(
        spent=int(item.get("spent", {}).get("N", 0)),
        committed=int(item.get("committed", {}).get("N", 0)),
        alerts_sent=sent,
    )


def _refused(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class DynamoBudgetStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, operation: str, day: str, **kwargs: Any) -> dict[str, Any]:
        with store_errors(operation):
            return self._client.update_item(TableName=self._table, Key=_total_key(day), **kwargs)

    # --- reservations ---------------------------------------------------------------------------

    def try_reserve(
        self, day: str, reservation_id: str, amount: int, headroom: int, lease_until: float, expires_at: float
    ) -> tuple[bool, BudgetTotals]:
        if headroom < 0:  # larger than the whole budget: nothing to ask the store
            return False, self.read_totals(day)
        try:
            response = self._update(
                "UpdateItem budget reserve",
                day,
                UpdateExpression="SET #res = :entry, expires_at = :expires ADD committed :amount, spent :zero",
                ConditionExpression="attribute_not_exists(committed) OR committed <= :headroom",
                ExpressionAttributeNames={"#res": RESERVATION_PREFIX + reservation_id},
                ExpressionAttributeValues={
                    ":entry": {"L": [number(amount), number(lease_until)]},
                    ":amount": number(amount),
                    ":zero": number(0),
                    ":headroom": number(headroom),
                    ":expires": number(expires_at + KEEP_SECONDS),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            return False, _totals(exc.response.get("Item"))
        return True, _totals(response["Attributes"])

    def release(self, day: str, reservation_id: str, amount: int) -> None:
        """Remove one reservation and its hold; a no-op if it is already gone."""
        try:
            self._update(
                "UpdateItem budget release",
                day,
                UpdateExpression="REMOVE #res ADD committed :minus",
                ConditionExpression="attribute_exists(#res)",
                ExpressionAttributeNames={"#res": RESERVATION_PREFIX + reservation_id},
                ExpressionAttributeValues={":minus": number(-amount)},
            )
        except ClientError as exc:
            if not _refused(exc):
                raise

    def _total_item(self, day: str) -> dict[str, Any]:
        with store_errors("GetItem budget"):
            return self._client.get_item(TableName=self._table, Key=_total_key(day), ConsistentRead=True).get(
                "Item", {}
            )

    def release_expired(self, day: str, now: float) -> int:
        released = 0
        for name, value in self._total_item(day).items():
            if name.startswith(RESERVATION_PREFIX):
                amount, lease_until = (int(part["N"]) for part in value["L"])
                if lease_until < now:
                    self.release(day, name.removeprefix(RESERVATION_PREFIX), amount)
                    released += 1
        return released

    def settle(self, day: str, reservation_id: str, reserved: int, charge: Charge, expires_at: float) -> None:
        ledgers = [
            self._ledger_update(day, f"USER#{charge.user_id}", charge, expires_at),
            self._ledger_update(day, f"MODEL#{charge.model}", charge, expires_at),
        ]
        total = {
            "TableName": self._table,
            "Key": _total_key(day),
            "UpdateExpression": "REMOVE #res ADD committed :delta, spent :cost, requests :one",
            "ConditionExpression": "attribute_exists(#res)",
            "ExpressionAttributeNames": {"#res": RESERVATION_PREFIX + reservation_id},
            "ExpressionAttributeValues": {
                ":delta": number(charge.cost - reserved),
                ":cost": number(charge.cost),
                ":one": number(1),
            },
        }
        try:
            with store_errors("TransactWriteItems budget settle", expected=("TransactionCanceledException",)):
                self._client.transact_write_items(TransactItems=[{"Update": total}, *ledgers])
        except ClientError:
            # The lease ran out and the reservation was released meanwhile: charge the cost anyway.
            late = {
                "TableName": self._table,
                "Key": _total_key(day),
                "UpdateExpression": "ADD committed :cost, spent :cost, requests :one",
                "ExpressionAttributeValues": {":cost": number(charge.cost), ":one": number(1)},
            }
            with store_errors("TransactWriteItems budget late settle"):
                self._client.transact_write_items(TransactItems=[{"Update": late}, *ledgers])

    def _ledger_update(self, day: str, sort_key: str, charge: Charge, expires_at: float) -> dict[str, Any]:
        usage = charge.usage
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": f"LEDGER#{day}"}, "sk": {"S": sort_key}},
                "UpdateExpression": "SET expires_at = :expires ADD requests :one, prompt_tokens :prompt, "
                "completion_tokens :completion, embedding_tokens :embedding, cost :cost",
                "ExpressionAttributeValues": {
                    ":expires": number(expires_at + KEEP_SECONDS),
                    ":one": number(1),
                    ":prompt": number(usage.prompt_tokens),
                    ":completion": number(usage.completion_tokens),
                    ":embedding": number(usage.embedding_tokens),
                    ":cost": number(charge.cost),
                },
            }
        }

    def read_totals(self, day: str) -> BudgetTotals:
        return _totals(self._total_item(day))

    # --- alert claims ---------------------------------------------------------------------------

    def claim_alert(self, day: str, threshold: int, now: float, claim_until: float, minimum_spent: int) -> bool:
        try:
            self._update(
                "UpdateItem alert claim",
                day,
                UpdateExpression="SET #claim = :until",
                ConditionExpression="attribute_exists(spent) AND spent >= :minimum AND attribute_not_exists(#sent) "
                "AND (attribute_not_exists(#claim) OR #claim < :now)",
                ExpressionAttributeNames={"#claim": f"alert_{threshold}_claim", "#sent": f"alert_{threshold}_sent"},
                ExpressionAttributeValues={
                    ":until": number(claim_until),
                    ":now": number(now),
                    ":minimum": number(minimum_spent),
                },
            )
        except ClientError as exc:
            if _refused(exc):
                return False
            raise
        return True

    def mark_alert_sent(self, day: str, threshold: int, now: float) -> None:
        self._update(
            "UpdateItem alert sent",
            day,
            UpdateExpression="SET #sent = :now REMOVE #claim",
            ExpressionAttributeNames={"#sent": f"alert_{threshold}_sent", "#claim": f"alert_{threshold}_claim"},
            ExpressionAttributeValues={":now": number(now)},
        )

    def drop_alert_claim(self, day: str, threshold: int) -> None:
        self._update(
            "UpdateItem alert drop",
            day,
            UpdateExpression="REMOVE #claim",
            ExpressionAttributeNames={"#claim": f"alert_{threshold}_claim"},
        )


def _row(item: dict[str, Any]) -> LedgerRow:
    name = item["sk"]["S"].split("#", 1)[1]
    return LedgerRow(name, *(int(item.get(field, {}).get("N", 0)) for field in LEDGER_FIELDS))


class DynamoLedgers:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _query(self, day: str, prefix: str) -> list[LedgerRow]:
        rows: list[LedgerRow] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"LEDGER#{day}"}, ":prefix": {"S": prefix}},
        }
        while True:
            with store_errors("Query ledgers"):
                page = self._client.query(**request)
            rows.extend(_row(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return rows
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def top_users(self, day: str, limit: int) -> list[LedgerRow]:
        return sorted(self._query(day, "USER#"), key=lambda row: (-row.cost, row.name))[:limit]

    def models(self, day: str) -> list[LedgerRow]:
        return sorted(self._query(day, "MODEL#"), key=lambda row: (-row.cost, row.name))

    def user(self, day: str, user_id: str) -> LedgerRow | None:
        key = {"pk": {"S": f"LEDGER#{day}"}, "sk": {"S": f"USER#{user_id}"}}
        with store_errors("GetItem ledger"):
            item = self._client.get_item(TableName=self._table, Key=key).get("Item")
        return _row(item) if item else None
