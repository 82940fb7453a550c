"""Where Powertools idempotency keeps its records: the shared table, under pk ``IDEMPOTENCY``.

(A static partition key is what Powertools offers for a pk/sk table; the per-user rate limits
bound how hot that partition can get.)
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer


def idempotency_store(client: Any, table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr="pk",
        sort_key_attr="sk",
        static_pk_value="IDEMPOTENCY",
        expiry_attr="expires_at",
        boto3_client=client,
    )
