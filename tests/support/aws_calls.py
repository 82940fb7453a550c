"""Records the AWS actions the Lambda code really performs, for the IAM least-privilege test.

A botocore hook on every session (boto3's default one, and each one created later, as Powertools
does for SSM) notes each API call whose call stack passes through the Lambda code
(functions/api/dnd_rag); calls the tests make themselves (creating the table, inspecting items)
are not the code's and are left out.
An API call is written as the IAM actions that authorize it: DynamoDB checks each item of a
transaction as its own action (there is no dynamodb:TransactWriteItems action). For DynamoDB item
actions the partition key each one touches is noted too (``item_calls``: (action, pk)), which is
what the policy's ``dynamodb:LeadingKeys`` conditions are evaluated against.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import botocore

APP_CODE = str(Path(__file__).resolve().parents[2] / "functions" / "api" / "dnd_rag")
TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


class AwsActionRecorder:
    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.item_calls: set[tuple[str, str]] = set()  # ("dynamodb:PutItem", "AUDIT"), ...
        self._lock = threading.Lock()

    def install(self) -> None:
        """Hook every session, existing default and future: clients created from now on report calls."""
        botocore.register_initializer(lambda session: session.register("before-parameter-build", self._on_call))
        boto3._get_default_session().events.register("before-parameter-build", self._on_call)

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not _called_from_app_code():
            return
        prefix = model.service_model.signing_name
        operation = model.name
        if operation in ("TransactWriteItems", "TransactGetItems"):
            names = {TRANSACTION_ITEM_ACTIONS[kind] for item in params.get("TransactItems", []) for kind in item}
        else:
            names = {operation}
        item_calls = _leading_keys(operation, params) if prefix == "dynamodb" else set()
        with self._lock:
            self.actions.update(f"{prefix}:{name}" for name in names)
            self.item_calls.update((f"dynamodb:{name}", key) for name, key in item_calls)


def _leading_keys(operation: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, partition key) of each item a DynamoDB call touches."""

    def pk(item_or_key: dict[str, Any]) -> str:
        return str(item_or_key["pk"]["S"])

    if operation == "PutItem":
        return {("PutItem", pk(params["Item"]))}
    if operation in ("GetItem", "UpdateItem", "DeleteItem"):
        return {(operation, pk(params["Key"]))}
    if operation in ("TransactWriteItems", "TransactGetItems"):
        calls = set()
        for item in params.get("TransactItems", []):
            for kind, request in item.items():
                calls.add((TRANSACTION_ITEM_ACTIONS[kind], pk(request["Item"] if kind == "Put" else request["Key"])))
        return calls
    if operation == "BatchGetItem":
        return {("BatchGetItem", pk(key)) for table in params["RequestItems"].values() for key in table["Keys"]}
    if operation == "Query":
        bound = re.search(r"\bpk\s*=\s*(:\w+)", params.get("KeyConditionExpression", ""))
        if bound:
            return {("Query", str(params["ExpressionAttributeValues"][bound.group(1)]["S"]))}
    return set()


def _called_from_app_code() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(APP_CODE):
            return True
        frame = frame.f_back
    return False


RECORDER = AwsActionRecorder()
