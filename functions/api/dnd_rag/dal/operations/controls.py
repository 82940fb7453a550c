"""The operator controls and their audit trail in DynamoDB.

Items:
  CONTROL / CURRENT           ``version``; ``paused`` = {reason, by, at} while paused; ``budget_day`` +
                              ``budget_nanos`` for today's budget override; ``blocked`` (a string set of
                              user ids, absent when empty); ``month`` + ``month_nanos`` (+ ``month_day``,
                              ``month_shards``) for this month's budget override; ``last_audit`` (the
                              entry of the last change)
  AUDIT   / <ISO time>#<id>   who, action, target, before/after (JSON), request id; TTL 90 days.
                              Append-only: every write of an entry is conditional on its absence,
                              and the function's IAM policy (template.yaml) refuses any UpdateItem
                              or DeleteItem on the AUDIT partition.

Every change replaces CONTROL/CURRENT on the condition that its version is the one the change was
computed from, in ONE transaction with its audit entry: no change without its audit, and no lost
update between two operators. The transaction touches neither the budget's TOTAL item nor a
user's limits (SPEC §4 conflict-free writes). The item stays far below DynamoDB's 400 KB: the
logic caps the blocked set (MAX_BLOCKED_USERS ids of up to 128 characters).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import number, store_errors, with_retries
from dnd_rag.models.controls import AuditEntry, BudgetOverride, Controls, MonthOverride, Pause

CONTROL_KEY = {"pk": {"S": "CONTROL"}, "sk": {"S": "CURRENT"}}
AUDIT_PK = "AUDIT"
AUDIT_KEEP_SECONDS = 90 * 86_400
_CANCELLED = "TransactionCanceledException"


def audit_sort_key(entry: AuditEntry) -> str:
    """ISO time to the microsecond, then the id: sorts by time, unique."""
    return datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "#" + entry.id


def controls_from_item(item: dict[str, Any] | None) -> Controls:
    if not item:
        return Controls()
    paused = None
    if "paused" in item:
        fields = item["paused"]["M"]
        paused = Pause(fields["reason"]["S"], fields["by"]["S"], float(fields["at"]["N"]))
    override = _override(item, "budget")
    earlier = _override(item, "earlier_budget")
    return Controls(
        version=int(item["version"]["N"]),
        paused=paused,
        budget_override=override,
        earlier_override=earlier,
        blocked=frozenset(item.get("blocked", {}).get("SS", [])),
        month_override=_month_override(item),
        last_audit_id=item.get("last_audit", {}).get("S", ""),
    )


def _override(item: dict[str, Any], prefix: str) -> BudgetOverride | None:
    if f"{prefix}_day" not in item:
        return None
    shards = tuple(int(value["N"]) for value in item.get(f"{prefix}_shards", {}).get("L", []))
    return BudgetOverride(item[f"{prefix}_day"]["S"], int(item[f"{prefix}_nanos"]["N"]), shards)


def _month_override(item: dict[str, Any]) -> MonthOverride | None:
    if "month" not in item:
        return None
    shards = tuple(int(value["N"]) for value in item.get("month_shards", {}).get("L", []))
    return MonthOverride(
        item["month"]["S"], int(item["month_nanos"]["N"]), item.get("month_day", {}).get("S", ""), shards
    )


def _control_item(controls: Controls) -> dict[str, Any]:
    item: dict[str, Any] = {
        **CONTROL_KEY,
        "version": number(controls.version),
        "last_audit": {"S": controls.last_audit_id},
    }
    if controls.paused is not None:
        pause = controls.paused
        item["paused"] = {"M": {"reason": {"S": pause.reason}, "by": {"S": pause.by}, "at": number(pause.at)}}
    for prefix, override in (("budget", controls.budget_override), ("earlier_budget", controls.earlier_override)):
        if override is not None:
            item[f"{prefix}_day"] = {"S": override.day}
            item[f"{prefix}_nanos"] = number(override.nanos)
            if override.shard_limits:
                item[f"{prefix}_shards"] = {"L": [number(limit) for limit in override.shard_limits]}
    if controls.month_override is not None:
        item["month"] = {"S": controls.month_override.month}
        item["month_nanos"] = number(controls.month_override.nanos)
        if controls.month_override.shard_limits:
            item["month_day"] = {"S": controls.month_override.day}
            item["month_shards"] = {"L": [number(limit) for limit in controls.month_override.shard_limits]}
    if controls.blocked:  # DynamoDB has no empty sets: absent means nobody is blocked
        item["blocked"] = {"SS": sorted(controls.blocked)}
    return item


def _audit_item(entry: AuditEntry) -> dict[str, Any]:
    return {
        "pk": {"S": AUDIT_PK},
        "sk": {"S": audit_sort_key(entry)},
        "id": {"S": entry.id},
        "at": {"N": repr(entry.at)},
        "who": {"S": entry.who},
        "action": {"S": entry.action},
        "target": {"S": entry.target},
        "before": {"S": json.dumps(entry.before, sort_keys=True)},
        "after": {"S": json.dumps(entry.after, sort_keys=True)},
        "request_id": {"S": entry.request_id or "-"},
        "expires_at": number(entry.at + AUDIT_KEEP_SECONDS),
    }


def _entry(item: dict[str, Any]) -> AuditEntry:
    request_id = item["request_id"]["S"]
    return AuditEntry(
        id=item["id"]["S"],
        at=float(item["at"]["N"]),
        who=item["who"]["S"],
        action=item["action"]["S"],
        target=item["target"]["S"],
        before=json.loads(item["before"]["S"]),
        after=json.loads(item["after"]["S"]),
        request_id="" if request_id == "-" else request_id,
    )


class DynamoControlStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def read(self) -> Controls:
        with store_errors("GetItem controls"):
            response = self._client.get_item(TableName=self._table, Key=CONTROL_KEY, ConsistentRead=True)
        return controls_from_item(response.get("Item"))

    def replace(self, expected_version: int, controls: Controls, entry: AuditEntry) -> bool:
        if expected_version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": number(expected_version)},
            }
        items = [
            {"Put": {"TableName": self._table, "Item": _control_item(controls), **condition}},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _audit_item(entry),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        try:
            with store_errors("TransactWriteItems controls", expected=(_CANCELLED,)):
                with_retries(lambda: self._client.transact_write_items(TransactItems=items))
        except ClientError as exc:
            reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons", [])}
            if "ConditionalCheckFailed" not in reasons:
                with store_errors("TransactWriteItems controls"):
                    raise
            # Refused: another change came first, unless this very transaction was applied once
            # already and only its answer was lost (the SDK re-sent it): then its audit entry exists.
            return self._exists(_audit_item(entry))
        return True

    def _exists(self, item: dict[str, Any]) -> bool:
        key = {"pk": item["pk"], "sk": item["sk"]}
        with store_errors("GetItem audit"):
            return "Item" in self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)

    def record(self, entry: AuditEntry) -> None:
        """Append ``entry`` (an operator's reset, a refused operator request): never over another
        entry. A refusal can only be this very write, applied once and re-sent by the SDK after
        its answer was lost (entry ids are uuids), so it is the answer, not an error."""
        try:
            with store_errors("PutItem audit"):
                self._client.put_item(
                    TableName=self._table, Item=_audit_item(entry), ConditionExpression="attribute_not_exists(pk)"
                )
        except ClientError:  # ConditionalCheckFailed: written already
            return

    def audit(self, limit: int) -> list[AuditEntry]:
        with store_errors("Query audit"):
            response = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :audit",
                ExpressionAttributeValues={":audit": {"S": AUDIT_PK}},
                ScanIndexForward=False,
                Limit=limit,
                ConsistentRead=True,  # an operator reads the trail right after a change
            )
        return [_entry(item) for item in response.get("Items", [])]
