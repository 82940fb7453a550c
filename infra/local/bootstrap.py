"""Prepares the local AWS emulator: the table from template.yaml, TTL, and verified SES identities."""

from __future__ import annotations

from typing import Any

import boto3

from infra.local.template import create_table_request, load_template, ttl_attribute


def ensure_table(dynamodb: Any, table_name: str) -> bool:
    """Create the table as template.yaml defines it; False when it already existed."""
    template = load_template()
    if table_name in dynamodb.list_tables()["TableNames"]:
        return False
    dynamodb.create_table(**create_table_request(table_name, template))
    dynamodb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    attribute = ttl_attribute(template)
    if attribute:
        dynamodb.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    return True


def verify_identities(ses: Any, *addresses: str | None) -> None:
    for address in filter(None, addresses):
        ses.verify_email_identity(EmailAddress=address)


def bootstrap(table_name: str, alert_from: str | None, alert_email: str | None) -> None:
    ensure_table(boto3.client("dynamodb"), table_name)
    verify_identities(boto3.client("ses"), alert_from, alert_email)


if __name__ == "__main__":
    import os

    bootstrap(os.environ["TABLE_NAME"], os.environ.get("ALERT_FROM"), os.environ.get("ALERT_EMAIL"))
