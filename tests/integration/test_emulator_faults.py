"""The emulator's DynamoDB fault injection, seen through a real boto3 client (infra/local/aws_emulator.py).

Every faulted call goes through a fresh client with an explicit retry configuration: botocore's retry
quota is per client, and burning the shared session client's quota would change other tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.faults import EmulatorFaults

Client = Any


def client(mode: str = "standard", total_attempts: int = 4, read_timeout: float = 10) -> Client:
    """A fresh client: ``total_attempts`` includes the first one (botocore's ``total_max_attempts``)."""
    retries: Any = {"mode": mode, "total_max_attempts": total_attempts}
    return boto3.client("dynamodb", config=Config(retries=retries, read_timeout=read_timeout))


@pytest.fixture
def prefix() -> str:
    """A pk prefix of this test's own: its rules touch nothing else."""
    return f"FAULTTEST#{uuid.uuid4().hex}#"


def key(pk: str, sk: str = "S") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def add_one(ddb: Client, table: str, pk: str) -> dict[str, Any]:
    """The classic non-idempotent counter: ``ADD n :1``."""
    response: dict[str, Any] = ddb.update_item(
        TableName=table, Key=key(pk), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )
    return response


def counter(dynamodb: Client, table: str, pk: str) -> int | None:
    item = dynamodb.get_item(TableName=table, Key=key(pk), ConsistentRead=True).get("Item")
    return None if item is None else int(item["n"]["N"])


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def attempts(error: pytest.ExceptionInfo[ClientError]) -> int:
    return 1 + int(error.value.response["ResponseMetadata"]["RetryAttempts"])


# -- throttle -------------------------------------------------------------------------------------


def test_throttle_is_retried_by_botocore_and_the_write_lands_once(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "throttle", "key_prefix": prefix, "max_count": 2}])
    # Legacy mode: small backoffs (0.05 s base) for two throttles in a row.
    response = add_one(client("legacy", total_attempts=5), table_name, prefix + "a")
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert counter(dynamodb, table_name, prefix + "a") == 1
    assert emulator_faults.injected() == {"throttle": {"UpdateItem": 2}}


def test_throttle_is_retried_in_standard_mode_too(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "throttle", "key_prefix": prefix, "max_count": 1}])
    response = add_one(client("standard", total_attempts=4), table_name, prefix + "a")
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert counter(dynamodb, table_name, prefix + "a") == 1


def test_throttle_always_on_surfaces_after_the_last_attempt_and_applies_nothing(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "throttle", "key_prefix": prefix}])
    with pytest.raises(ClientError) as error:
        add_one(client("legacy", total_attempts=3), table_name, prefix + "a")
    assert error_code(error) == "ProvisionedThroughputExceededException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert attempts(error) == 3
    assert emulator_faults.injected() == {"throttle": {"UpdateItem": 3}}
    assert counter(dynamodb, table_name, prefix + "a") is None


# -- internal_error -------------------------------------------------------------------------------


def test_internal_error_is_not_applied(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "internal_error", "key_prefix": prefix}])
    with pytest.raises(ClientError) as error:
        add_one(client(total_attempts=1), table_name, prefix + "a")
    assert error_code(error) == "InternalServerError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert counter(dynamodb, table_name, prefix + "a") is None


def test_internal_error_is_retried_and_counts_once(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "internal_error", "key_prefix": prefix, "max_count": 1}])
    response = add_one(client("standard", total_attempts=4), table_name, prefix + "a")
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert counter(dynamodb, table_name, prefix + "a") == 1


# -- lost_response --------------------------------------------------------------------------------


def test_lost_response_is_applied_even_though_the_client_sees_a_500(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "lost_response", "key_prefix": prefix}])
    with pytest.raises(ClientError) as error:
        add_one(client(total_attempts=1), table_name, prefix + "a")
    assert error_code(error) == "InternalServerError"
    assert counter(dynamodb, table_name, prefix + "a") == 1


def test_lost_response_retried_double_counts_a_blind_add(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "lost_response", "key_prefix": prefix, "max_count": 1}])
    response = add_one(client("standard", total_attempts=4), table_name, prefix + "a")
    assert response["ResponseMetadata"]["RetryAttempts"] == 1  # the SDK resent an applied write
    assert counter(dynamodb, table_name, prefix + "a") == 2
    assert emulator_faults.injected() == {"lost_response": {"UpdateItem": 1}}


def test_lost_response_retried_counts_an_idempotent_write_once(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "lost_response", "key_prefix": prefix, "max_count": 1}])
    with pytest.raises(ClientError) as error:
        client("standard", total_attempts=4).update_item(
            TableName=table_name,
            Key=key(prefix + "a"),
            UpdateExpression="ADD n :one, applied :rid",
            ConditionExpression="NOT contains(applied, :id)",
            ExpressionAttributeValues={":one": {"N": "1"}, ":rid": {"SS": ["r-1"]}, ":id": {"S": "r-1"}},
        )
    # The retry finds its own first attempt applied: the caller reads this refusal as "already done".
    assert error_code(error) == "ConditionalCheckFailedException"
    assert attempts(error) == 2
    assert counter(dynamodb, table_name, prefix + "a") == 1


# -- transactions ---------------------------------------------------------------------------------


def transact_put(table: str, pk: str, marker: str) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": {**key(pk), "marker": {"S": marker}}}}


def start_transaction(table: str, items: list[dict[str, Any]]) -> tuple[threading.Thread, dict[str, Any]]:
    """A TransactWriteItems whose response the emulator holds for its window, in a thread."""
    outcome: dict[str, Any] = {}
    slow = client(total_attempts=1, read_timeout=30)

    def run() -> None:
        try:
            outcome["response"] = slow.transact_write_items(TransactItems=items)
        except ClientError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.02)


def test_single_write_during_a_transaction_gets_transaction_conflict_and_is_not_retried(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([], transaction_window_ms=3000)
    thread, outcome = start_transaction(
        table_name, [transact_put(table_name, prefix + "x", "t1"), transact_put(table_name, prefix + "y", "t1")]
    )
    # Applied at once (under the lock), answered only when the window ends.
    wait_until(lambda: "Item" in dynamodb.get_item(TableName=table_name, Key=key(prefix + "x")))
    assert thread.is_alive()

    with pytest.raises(ClientError) as error:
        add_one(client("standard", total_attempts=4), table_name, prefix + "x")
    assert error_code(error) == "TransactionConflictException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert attempts(error) == 1  # botocore does not retry it, in either mode
    with pytest.raises(ClientError) as legacy_error:
        add_one(client("legacy", total_attempts=10), table_name, prefix + "x")
    assert error_code(legacy_error) == "TransactionConflictException"
    assert attempts(legacy_error) == 1
    # An item outside the transaction is not affected.
    add_one(client(total_attempts=1), table_name, prefix + "other")

    thread.join(timeout=10)
    assert "response" in outcome, outcome
    item = dynamodb.get_item(TableName=table_name, Key=key(prefix + "x"))["Item"]
    assert "n" not in item  # the refused writes were not applied
    add_one(client(total_attempts=1), table_name, prefix + "x")  # the window is over
    assert counter(dynamodb, table_name, prefix + "x") == 1
    assert emulator_faults.injected() == {"transaction_window": {"UpdateItem": 2}}


def test_overlapping_transactions_cancel_with_transaction_conflict_reasons(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([], transaction_window_ms=3000)
    thread, outcome = start_transaction(table_name, [transact_put(table_name, prefix + "x", "t1")])
    wait_until(lambda: "Item" in dynamodb.get_item(TableName=table_name, Key=key(prefix + "x")))

    with pytest.raises(ClientError) as error:
        client("standard", total_attempts=4).transact_write_items(
            TransactItems=[transact_put(table_name, prefix + "z", "t2"), transact_put(table_name, prefix + "x", "t2")]
        )
    assert error_code(error) == "TransactionCanceledException"
    assert attempts(error) == 1
    reasons = error.value.response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["None", "TransactionConflict"]
    assert reasons[1]["Message"] == "Transaction is ongoing for the item"
    assert "[None, TransactionConflict]" in error.value.response["Error"]["Message"]

    thread.join(timeout=10)
    assert "response" in outcome, outcome
    assert "Item" not in dynamodb.get_item(TableName=table_name, Key=key(prefix + "z"))  # cancelled whole
    item = dynamodb.get_item(TableName=table_name, Key=key(prefix + "x"))["Item"]
    assert item["marker"]["S"] == "t1"
    assert emulator_faults.injected() == {"transaction_window": {"TransactWriteItems": 1}}


def test_conflict_rule_refuses_single_writes_and_cancels_transactions(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    emulator_faults.set([{"fault": "conflict", "key_prefix": prefix + "hot"}])
    with pytest.raises(ClientError) as single:
        add_one(client(), table_name, prefix + "hot")
    assert error_code(single) == "TransactionConflictException"
    assert attempts(single) == 1
    with pytest.raises(ClientError) as transaction:
        client().transact_write_items(
            TransactItems=[
                transact_put(table_name, prefix + "cold", "t"),
                transact_put(table_name, prefix + "hot", "t"),
            ]
        )
    assert error_code(transaction) == "TransactionCanceledException"
    assert [reason["Code"] for reason in transaction.value.response["CancellationReasons"]] == [
        "None",
        "TransactionConflict",
    ]
    assert counter(dynamodb, table_name, prefix + "hot") is None
    assert "Item" not in dynamodb.get_item(TableName=table_name, Key=key(prefix + "cold"))
    add_one(client(), table_name, prefix + "cold")  # outside the prefix: untouched
    assert emulator_faults.injected() == {"conflict": {"UpdateItem": 1, "TransactWriteItems": 1}}


# -- scoping, reproducibility, switching off -------------------------------------------------------


def test_reads_are_never_faulted_and_operations_filter_rules(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item={**key(prefix + "a"), "n": {"N": "5"}})
    emulator_faults.set([{"fault": "internal_error", "key_prefix": prefix, "operations": ["PutItem"]}])
    no_retry = client(total_attempts=1)
    assert counter(no_retry, table_name, prefix + "a") == 5
    assert no_retry.query(
        TableName=table_name, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": prefix + "a"}}
    )["Items"]
    add_one(no_retry, table_name, prefix + "a")  # UpdateItem is not in the rule's operations
    with pytest.raises(ClientError):
        no_retry.put_item(TableName=table_name, Item=key(prefix + "b"))
    assert counter(dynamodb, table_name, prefix + "a") == 6
    assert emulator_faults.injected() == {"internal_error": {"PutItem": 1}}


def outcomes(table: str, prefix: str, count: int) -> list[str]:
    no_retry = client(total_attempts=1)
    result = []
    for i in range(count):
        try:
            no_retry.put_item(TableName=table, Item=key(f"{prefix}{i}"))
            result.append("ok")
        except ClientError as error:
            result.append(str(error.response["Error"]["Code"]))
    return result


def test_probabilistic_faults_are_reproducible_by_seed(
    table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    rules = [
        {"fault": "throttle", "key_prefix": prefix, "probability": 0.3},
        {"fault": "internal_error", "key_prefix": prefix, "probability": 0.3},
    ]
    emulator_faults.set(rules, seed=7)
    first = outcomes(table_name, prefix, 30)
    first_injected = emulator_faults.injected()
    emulator_faults.set(rules, seed=7)
    again = outcomes(table_name, prefix, 30)
    emulator_faults.set(rules, seed=8)
    other = outcomes(table_name, prefix, 30)

    assert again == first
    assert emulator_faults.total_injected() == sum(outcome != "ok" for outcome in other)
    assert other != first
    assert set(first) == {"ok", "ProvisionedThroughputExceededException", "InternalServerError"}
    assert first_injected == {
        "throttle": {"PutItem": first.count("ProvisionedThroughputExceededException")},
        "internal_error": {"PutItem": first.count("InternalServerError")},
    }


def test_max_count_caps_a_rule_and_clear_restores_normal_behaviour(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    assert outcomes(table_name, prefix, 3) == ["ok", "ok", "ok"]
    with emulator_faults.injecting([{"fault": "throttle", "key_prefix": prefix, "max_count": 2}]):
        assert outcomes(table_name, prefix, 3) == ["ProvisionedThroughputExceededException"] * 2 + ["ok"]
    emulator_faults.set([{"fault": "throttle", "key_prefix": prefix}])
    assert outcomes(table_name, prefix, 2) == ["ProvisionedThroughputExceededException"] * 2
    emulator_faults.clear()
    assert outcomes(table_name, prefix, 2) == ["ok", "ok"]
    assert emulator_faults.status()["rules"] == []
    assert emulator_faults.total_injected() == 2  # counters survive clear() until the next set()


def test_invalid_configuration_is_refused(aws_endpoint: str, emulator_faults: EmulatorFaults) -> None:
    for rules in ([{"fault": "meteor"}], [{"fault": "throttle", "operations": ["GetItem"]}]):
        response = httpx.post(f"{aws_endpoint}/_emulator/faults", json={"seed": 0, "rules": rules})
        assert response.status_code == 400, rules
    assert emulator_faults.status()["rules"] == []


def test_operations_seen_are_listed_for_the_iam_check(
    dynamodb: Client, table_name: str, emulator_faults: EmulatorFaults, prefix: str
) -> None:
    dynamodb.get_item(TableName=table_name, Key=key(prefix + "a"))
    boto3.client("ssm").get_parameters(Names=[prefix.replace("#", "-")])
    boto3.client("ses").list_identities()
    operations = emulator_faults.operations()
    assert operations == sorted(operations, key=lambda entry: (entry["service"], entry["operation"]))
    for expected in (
        {"service": "dynamodb", "operation": "GetItem"},
        {"service": "dynamodb", "operation": "CreateTable"},
        {"service": "ssm", "operation": "GetParameters"},
        {"service": "ses", "operation": "ListIdentities"},
        {"service": "ses", "operation": "VerifyEmailIdentity"},
    ):
        assert expected in operations
    assert not any(entry["operation"].startswith("/_emulator") for entry in operations)


def test_a_cancelled_transaction_applies_none_of_its_items(dynamodb: Client, table_name: str, prefix: str) -> None:
    # The emulator rolls a cancelled transaction back item by item (moto would deep-copy the whole
    # table per transaction, which slows every request as the table grows): nothing may leak.
    pk = prefix + "rollback"
    dynamodb.put_item(TableName=table_name, Item={**key(pk, "LEDGER"), "n": {"N": "1"}})
    dynamodb.put_item(TableName=table_name, Item=key(pk, "MARKER"))

    with pytest.raises(ClientError) as error:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table_name,
                        "Key": key(pk, "LEDGER"),
                        "UpdateExpression": "ADD n :five",
                        "ExpressionAttributeValues": {":five": {"N": "5"}},
                    }
                },
                {"Put": {"TableName": table_name, "Item": key(pk, "NEW")}},
                {
                    "Put": {
                        "TableName": table_name,
                        "Item": {**key(pk, "MARKER"), "n": {"N": "9"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )

    assert error_code(error) == "TransactionCanceledException"
    items = dynamodb.query(
        TableName=table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )["Items"]
    found = sorted((item["sk"]["S"], item.get("n", {}).get("N")) for item in items)
    assert found == [("LEDGER", "1"), ("MARKER", None)]
