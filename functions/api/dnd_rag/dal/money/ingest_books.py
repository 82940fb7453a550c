"""The corpus ingester's embeddings on the books (the spend export's and the reconciliation's
``(corpus ingest)`` line), beside the day's budget, never inside it.

Items (a partition of their own: the budget's ``BUDGET#<day>`` holds its shards only):
  INGEST#<day> / TOTAL         ``cost`` (nano-dollars), ``requests``, and the per-model ledger
                               ``m<field>_<model>`` (``embedding_tokens``, ``cost``, ``requests``);
                               kept as long as the day's budget shards (403 days)
  INGEST#<day> / CALL#<id>     one marker per embeddings call recorded (kept 3 days)

Why beside the budget, not in it: an ingest is an operator's estimated and confirmed spend, not
user traffic; in the shards' ``spent`` it would take the day's query budget away from the users
(a re-ingest could close the service for the day) and break "what OpenAI billed for queries never
exceeds the budget". On the books it must be, though: OpenAI bills it the same day, and without it
the reconciliation would see the ingest as drift. The shards' item layout is untouched, so the
budget code never reads these items; the spend export and the reconciliation add it
(logic/operations/ingest_line.py).

Each call is recorded once: the marker (created only if absent) and the sums change in one
transaction, so a write the SDK re-sends after a lost response is refused, not counted twice.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import int_value, number, store_errors, with_retries
from dnd_rag.dal.money.budget import BOOKS_KEEP_SECONDS, KEEP_SECONDS
from dnd_rag.logic.common.clock import day_end
from dnd_rag.logic.ports import LedgerRow

_CANCELLED = "TransactionCanceledException"


def _key(day: str) -> dict[str, Any]:
    return {"pk": {"S": f"INGEST#{day}"}, "sk": {"S": "TOTAL"}}


class DynamoIngestBooks:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def record(self, day: str, call_id: str, model: str, tokens: int, cost: int) -> bool:
        """Put one embeddings call of the ingester on ``day``'s books; False if it already is."""
        end = int(day_end(day))
        names = {
            "#tokens": f"membedding_tokens_{model}",
            "#mcost": f"mcost_{model}",
            "#mrequests": f"mrequests_{model}",
        }
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "pk": {"S": f"INGEST#{day}"},
                        "sk": {"S": f"CALL#{call_id}"},
                        "model": {"S": model},
                        "embedding_tokens": number(tokens),
                        "cost": number(cost),
                        "expires_at": number(end + KEEP_SECONDS),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(day),
                    "UpdateExpression": "SET expires_at = :expires "
                    "ADD cost :cost, requests :one, #tokens :tokens, #mcost :cost, #mrequests :one",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {
                        ":cost": number(cost),
                        ":one": number(1),
                        ":tokens": number(tokens),
                        ":expires": number(end + BOOKS_KEEP_SECONDS),
                    },
                }
            },
        ]
        try:
            with store_errors("TransactWriteItems ingest books", expected=(_CANCELLED,)):
                with_retries(lambda: self._client.transact_write_items(TransactItems=items))
        except ClientError:
            return False  # the marker exists: recorded already (a re-sent write)
        return True

    def _item(self, day: str) -> dict[str, Any]:
        with store_errors("GetItem ingest books"):
            item: dict[str, Any] = self._client.get_item(TableName=self._table, Key=_key(day), ConsistentRead=True).get(
                "Item", {}
            )
        return item

    def ingest_cost(self, day: str) -> int:
        return int_value(self._item(day), "cost")

    def ingest_models(self, day: str) -> list[LedgerRow]:
        """The day's ingest per embedding model, as ledger rows (embedding tokens and cost)."""
        item = self._item(day)
        models = {name.removeprefix("mcost_") for name in item if name.startswith("mcost_")}
        return [
            LedgerRow(
                model,
                requests=int_value(item, f"mrequests_{model}"),
                prompt_tokens=0,
                completion_tokens=0,
                embedding_tokens=int_value(item, f"membedding_tokens_{model}"),
                cost=int_value(item, f"mcost_{model}"),
            )
            for model in sorted(models)
        ]
