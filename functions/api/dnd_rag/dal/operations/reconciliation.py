"""The reconciliation results in DynamoDB (logic/operations/reconciliation.py).

Items:
  RECONCILIATION / <yyyy-mm-dd>   one per reconciled UTC day: ``books``, ``billed``, ``tolerance``
                                  (nano-dollars), ``reconciled_at``, ``final``, ``alert_sent``, and
                                  ``models`` (JSON: per model both sides' tokens, requests and cost).
                                  Kept as long as the day's books (403 days, dal/money/budget.py).

One partition, one item a day (at most ~400 live): a range of days is one Query, written once an
hour by the scheduled job, read by the operator route. Nothing on a query's path touches it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from dnd_rag.dal.dynamo import int_value, number, store_errors
from dnd_rag.dal.money.budget import BOOKS_KEEP_SECONDS
from dnd_rag.logic.common.clock import day_end
from dnd_rag.logic.operations.reconciliation import DayReconciliation, ModelLine, ModelUsage

RECONCILIATION_PK = "RECONCILIATION"


def _key(day: str) -> dict[str, Any]:
    return {"pk": {"S": RECONCILIATION_PK}, "sk": {"S": day}}


def _item(result: DayReconciliation) -> dict[str, Any]:
    models = [
        {"model": line.model, "books": asdict(line.books), "billed": asdict(line.billed)} for line in result.models
    ]
    return {
        **_key(result.day),
        "books": number(result.books),
        "billed": number(result.billed),
        "tolerance": number(result.tolerance),
        "reconciled_at": number(result.reconciled_at),
        "final": {"BOOL": result.final},
        "alert_sent": {"BOOL": result.alert_sent},
        "models": {"S": json.dumps(models, separators=(",", ":"))},
        "expires_at": number(int(day_end(result.day)) + BOOKS_KEEP_SECONDS),
    }


def _result(item: dict[str, Any]) -> DayReconciliation:
    lines = [
        ModelLine(row["model"], ModelUsage(**row["books"]), ModelUsage(**row["billed"]))
        for row in json.loads(item["models"]["S"])
    ]
    return DayReconciliation(
        item["sk"]["S"],
        lines,
        books=int_value(item, "books"),
        billed=int_value(item, "billed"),
        tolerance=int_value(item, "tolerance"),
        reconciled_at=float(item["reconciled_at"]["N"]),
        alert_sent=item.get("alert_sent", {}).get("BOOL", False),
        final=item.get("final", {}).get("BOOL", False),
    )


class DynamoReconciliationStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, result: DayReconciliation) -> None:
        """Replace the day's result (the job is its only writer; a rerun writes the newer one)."""
        with store_errors("PutItem reconciliation"):
            self._client.put_item(TableName=self._table, Item=_item(result))

    def get(self, day: str) -> DayReconciliation | None:
        with store_errors("GetItem reconciliation"):
            item = self._client.get_item(TableName=self._table, Key=_key(day), ConsistentRead=True).get("Item")
        return _result(item) if item else None

    def between(self, start: str, end: str) -> list[DayReconciliation]:
        results: list[DayReconciliation] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :start AND :end",
            "ExpressionAttributeValues": {
                ":pk": {"S": RECONCILIATION_PK},
                ":start": {"S": start},
                ":end": {"S": end},
            },
        }
        while True:
            with store_errors("Query reconciliation"):
                page = self._client.query(**request)
            results.extend(_result(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return results
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
