"""The shared token-validation cache in DynamoDB, keyed by the SHA-256 of the token."""

from __future__ import annotations

import json
import math
from typing import Any

from dnd_rag.dal.dynamo import store_errors
from dnd_rag.models.domain import User


class DynamoTokenCache:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @staticmethod
    def _key(token_hash: str) -> dict[str, Any]:
        return {"pk": {"S": f"TOKEN#{token_hash}"}, "sk": {"S": "AUTH"}}

    def get(self, token_hash: str, now: float) -> tuple[User | None, float, float] | None:
        with store_errors("GetItem token cache"):
            item = self._client.get_item(TableName=self._table, Key=self._key(token_hash)).get("Item")
        # TTL deletion is lazy (can lag by hours), so expiry is checked here too.
        if item is None:
            return None
        expires_at = float(item["expires_at"]["N"])
        if expires_at <= now:
            return None
        # when the auth API vouched for it (items written before this was kept: unknown, i.e. long ago)
        validated_at = float(item["validated_at"]["N"]) if "validated_at" in item else 0.0
        if not item["valid"]["BOOL"]:
            return (None, expires_at, validated_at)
        return (User.model_validate(json.loads(item["user"]["S"])), expires_at, validated_at)

    def put(self, token_hash: str, user: User | None, expires_at: float, validated_at: float) -> None:
        item: dict[str, Any] = {
            **self._key(token_hash),
            "valid": {"BOOL": user is not None},
            "expires_at": {"N": str(math.ceil(expires_at))},
            "validated_at": {"N": repr(float(validated_at))},
        }
        if user is not None:
            item["user"] = {"S": user.model_dump_json()}
        with store_errors("PutItem token cache"):
            self._client.put_item(TableName=self._table, Item=item)
