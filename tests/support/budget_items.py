"""The day's budget as tests read it back from the table: every shard item (``BUDGET#<day>`` /
``TOTAL``, ``SHARD#<n>``) folded into one item-shaped dict, so a test's books do not depend on
which shard a query happened to hold on (logic/money/shards.py)."""

from __future__ import annotations

from typing import Any


def shard_items(dynamodb: Any, table: str, day: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"BUDGET#{day}"}},
        ConsistentRead=True,
    )["Items"]
    return [item for item in items if item["sk"]["S"] == "TOTAL" or item["sk"]["S"].startswith("SHARD#")]


def day_total(dynamodb: Any, table: str, day: str) -> dict[str, Any]:
    """Numbers summed over the shards (spent, committed, requests, the per-model ledger, the spend
    curve); holds, orphans and alert marks merged; {} when the day has no item."""
    folded: dict[str, Any] = {}
    for item in shard_items(dynamodb, table, day):
        for name, value in item.items():
            if name in ("pk", "sk", "expires_at"):
                folded.setdefault(name, value)
            elif "N" in value and not name.startswith(("h_", "o_", "alert_")):
                folded[name] = {"N": str(int(folded.get(name, {"N": "0"})["N"]) + int(value["N"]))}
            else:
                folded[name] = value
    return folded
