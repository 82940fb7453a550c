"""The emulator's DynamoDB capacity meter and per-item throttle, seen through a real boto3 client
(infra/local/aws_emulator.py).

Item sizes are built so that each expected charge is unambiguous: an item is ``pk`` (``CAPTEST#`` +
32 hex digits, 40 bytes + 2 for the name), ``sk`` ("S", 1 + 2) and ``data`` (n bytes + 4), so it
weighs n + 49 bytes. The numbers below are DynamoDB's published rules worked by hand, not the
emulator's own size function.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.capacity import EmulatorCapacity
from tests.support.faults import EmulatorFaults
from tests.support.servers import emulator_command, free_port, python_env, running

Client = Any
OVERHEAD = 49  # bytes of an item besides its data (see the module docstring)


@pytest.fixture
def capacity(aws_endpoint: str) -> Iterator[EmulatorCapacity]:
    """The meter; the throttle is switched back to what it was after the test whatever happened."""
    meter = EmulatorCapacity(aws_endpoint)
    before = meter.snapshot()
    yield meter
    meter.set_item_wcu_per_second(before["item_wcu_per_second"], before["key_prefix"])


@pytest.fixture
def pk() -> str:
    return f"CAPTEST#{uuid.uuid4().hex}"


def key(pk: str, sk: str = "S") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, data_bytes: int, sk: str = "S") -> dict[str, Any]:
    """An item of exactly ``data_bytes + OVERHEAD`` bytes (for an ``sk`` of one character)."""
    return {**key(pk, sk), "data": {"S": "x" * data_bytes}}


def meter_key(pk: str, sk: str = "S") -> str:
    return f"{pk}|{sk}"


def no_retries() -> Client:
    """A client that never retries: one attempt in all (``max_attempts`` counts retries, so
    ``{"max_attempts": 1}`` would still retry once; ``total_max_attempts`` counts the first try)."""
    return boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


# -- writes ---------------------------------------------------------------------------------------


def test_a_put_costs_one_wcu_per_started_kilobyte(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 2500))  # 2,549 bytes: 3 KB started
    dynamodb.put_item(TableName=table_name, Item=item(pk + "s", 10))  # 59 bytes: the minimum, 1
    assert capacity.item(meter_key(pk)) == {"wcu": 3, "rcu": 0, "throttled": 0}
    assert capacity.item(meter_key(pk + "s"))["wcu"] == 1


def test_an_update_is_charged_for_the_larger_of_the_item_before_and_after(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 2950))  # 2,999 bytes: 3 WCU
    shrunk = dynamodb.update_item(
        TableName=table_name,
        Key=key(pk),
        UpdateExpression="SET #d = :small",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":small": {"S": "y" * 500}},  # 549 bytes after
        ReturnValues="ALL_OLD",
    )
    assert len(shrunk["Attributes"]["data"]["S"]) == 2950
    assert capacity.item(meter_key(pk))["wcu"] == 3 + 3  # not 1: the item was 3 KB before
    dynamodb.update_item(
        TableName=table_name,
        Key=key(pk),
        UpdateExpression="SET #d = :big",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":big": {"S": "z" * 4000}},  # 549 -> 4,049 bytes: 4 WCU
        ReturnValues="UPDATED_NEW",
    )
    assert capacity.item(meter_key(pk))["wcu"] == 3 + 3 + 4


def test_a_refused_conditional_write_still_consumes_capacity(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 2500))  # 3 WCU
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(TableName=table_name, Item=item(pk, 10), ConditionExpression="attribute_not_exists(pk)")
    assert error_code(refused) == "ConditionalCheckFailedException"
    # Charged the size of the existing item (2,549 bytes: 3), and nothing was written.
    assert capacity.item(meter_key(pk))["wcu"] == 3 + 3
    stored = dynamodb.get_item(TableName=table_name, Key=key(pk), ConsistentRead=True)["Item"]
    assert len(stored["data"]["S"]) == 2500
    # On a missing item a refused condition costs the minimum.
    with pytest.raises(ClientError):
        dynamodb.update_item(
            TableName=table_name,
            Key=key(pk + "missing"),
            UpdateExpression="SET n = :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    assert capacity.item(meter_key(pk + "missing"))["wcu"] == 1


def test_a_delete_costs_the_deleted_item_or_one_if_it_was_missing(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 2500))  # 3
    dynamodb.delete_item(TableName=table_name, Key=key(pk))  # 3: the item deleted
    dynamodb.delete_item(TableName=table_name, Key=key(pk))  # 1: nothing there any more
    assert capacity.item(meter_key(pk))["wcu"] == 3 + 3 + 1


def test_a_transaction_costs_twice_per_item(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    before = capacity.total()["wcu"]
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table_name, "Item": {**key(pk, "A"), "n": {"N": "1"}}}},
            {
                "Update": {
                    "TableName": table_name,
                    "Key": key(pk, "B"),
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    assert capacity.item(meter_key(pk, "A"))["wcu"] == 2
    assert capacity.item(meter_key(pk, "B"))["wcu"] == 2
    assert capacity.total()["wcu"] - before == 4


def test_a_batch_write_is_charged_per_item(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.batch_write_item(
        RequestItems={
            table_name: [
                {"PutRequest": {"Item": item(pk, 10, "A")}},
                {"PutRequest": {"Item": item(pk, 2500, "B")}},
            ]
        }
    )
    assert capacity.item(meter_key(pk, "A"))["wcu"] == 1
    assert capacity.item(meter_key(pk, "B"))["wcu"] == 3


# -- reads ----------------------------------------------------------------------------------------


def test_a_get_costs_one_rcu_per_started_4_kb_and_half_when_eventually_consistent(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 5000))  # 5,049 bytes: 5 WCU
    assert capacity.item(meter_key(pk)) == {"wcu": 5, "rcu": 0, "throttled": 0}
    dynamodb.get_item(TableName=table_name, Key=key(pk), ConsistentRead=True)  # 8 KB started: 2
    assert capacity.item(meter_key(pk))["rcu"] == 2
    dynamodb.get_item(TableName=table_name, Key=key(pk))  # eventually consistent: 1
    assert capacity.item(meter_key(pk))["rcu"] == 3
    # A projection does not make the read cheaper: DynamoDB reads the whole item.
    dynamodb.get_item(TableName=table_name, Key=key(pk), ProjectionExpression="pk", ConsistentRead=True)
    assert capacity.item(meter_key(pk))["rcu"] == 5


def test_batch_and_transactional_gets_are_charged_per_item(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    for sk in ("A", "B"):
        dynamodb.put_item(TableName=table_name, Item=item(pk, 10, sk))
    dynamodb.batch_get_item(RequestItems={table_name: {"Keys": [key(pk, "A"), key(pk, "B")]}})
    assert capacity.item(meter_key(pk, "A"))["rcu"] == 0.5
    assert capacity.item(meter_key(pk, "B"))["rcu"] == 0.5
    dynamodb.transact_get_items(
        TransactItems=[{"Get": {"TableName": table_name, "Key": key(pk, sk)}} for sk in ("A", "B")]
    )
    assert capacity.item(meter_key(pk, "A"))["rcu"] == 2.5
    assert capacity.item(meter_key(pk, "B"))["rcu"] == 2.5


def test_a_query_costs_the_total_size_returned_rounded_up_to_4_kb_shared_by_size(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    for sk in ("A", "B", "C"):
        dynamodb.put_item(TableName=table_name, Item=item(pk, 1500, sk))  # 1,549 bytes each
    before = capacity.total()["rcu"]
    found = dynamodb.query(
        TableName=table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )
    assert found["Count"] == 3
    # 4,647 bytes in all: 8 KB started, 2 RCU for the call (per item it would have been 3).
    assert capacity.total()["rcu"] - before == pytest.approx(2)
    shares = [capacity.item(meter_key(pk, sk))["rcu"] for sk in ("A", "B", "C")]
    assert shares == pytest.approx([2 / 3] * 3, abs=1e-5)


# -- control route --------------------------------------------------------------------------------


def test_delete_resets_the_meter(dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str) -> None:
    dynamodb.put_item(TableName=table_name, Item=item(pk, 10))
    assert capacity.item(meter_key(pk))["wcu"] == 1
    reset = capacity.reset()
    assert reset["items"] == {}
    assert reset["total"] == {"wcu": 0, "rcu": 0, "throttled": 0}
    dynamodb.get_item(TableName=table_name, Key=key(pk))
    assert capacity.snapshot()["items"] == {meter_key(pk): {"wcu": 0, "rcu": 0.5, "throttled": 0}}


def test_the_throttle_setting_is_validated(aws_endpoint: str, capacity: EmulatorCapacity) -> None:
    for bad in (-1, "many", True):
        response = httpx.post(f"{aws_endpoint}/_emulator/capacity", json={"item_wcu_per_second": bad}, timeout=10)
        assert response.status_code == 400
    assert capacity.set_item_wcu_per_second(7)["item_wcu_per_second"] == 7


# -- throttle -------------------------------------------------------------------------------------


def add_one(client: Client, table: str, pk: str) -> None:
    client.update_item(
        TableName=table, Key=key(pk), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )


def test_an_item_past_its_wcu_per_second_is_throttled_and_others_are_not(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    capacity.set_item_wcu_per_second(10)
    client = no_retries()
    errors: list[tuple[str, int]] = []
    started = time.monotonic()
    for _ in range(20):
        try:
            add_one(client, table_name, pk)  # 1 WCU each
        except ClientError as error:
            errors.append((error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]))
    elapsed = time.monotonic() - started
    assert set(errors) <= {("ProvisionedThroughputExceededException", 400)}
    refused = len(errors)
    succeeded = 20 - refused
    # One fixed window per started second: 10 in the first, at most 10 more in each later one.
    assert 10 <= succeeded <= 10 * (int(elapsed) + 1)
    if elapsed < 1:
        assert succeeded == 10
    assert succeeded + refused == 20
    # A refused write was not applied and consumed nothing; it is counted as throttled.
    assert capacity.item(meter_key(pk)) == {"wcu": succeeded, "rcu": 0, "throttled": refused}
    stored = dynamodb.get_item(TableName=table_name, Key=key(pk), ConsistentRead=True)["Item"]
    assert int(stored["n"]["N"]) == succeeded

    # Another item is not affected by this one's throttle.
    add_one(client, table_name, pk + "other")
    assert capacity.item(meter_key(pk + "other")) == {"wcu": 1, "rcu": 0, "throttled": 0}

    # Once the window has passed, the item takes writes again.
    time.sleep(1.1)
    add_one(client, table_name, pk)
    assert capacity.item(meter_key(pk))["wcu"] == succeeded + 1


def test_a_ceiling_scoped_by_key_prefix_throttles_only_those_items(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, pk: str
) -> None:
    shared, other = f"{pk}-SHARED", f"{pk.replace('CAPTEST', 'OTHER')}"
    assert capacity.set_item_wcu_per_second(2, key_prefix=shared)["key_prefix"] == shared
    client = no_retries()

    def throttled(item: str) -> int:
        codes = []
        for _ in range(6):
            try:
                add_one(client, table_name, item)
            except ClientError as error:
                codes.append(error.response["Error"]["Code"])
        assert set(codes) <= {"ProvisionedThroughputExceededException"}
        return len(codes)

    assert throttled(shared) >= 1  # 6 writes at once against 2 WCU/s: refused past the ceiling
    assert throttled(other) == 0  # an item outside the prefix takes them all
    assert capacity.item(meter_key(other)) == {"wcu": 6, "rcu": 0, "throttled": 0}


def test_the_ceilings_key_prefix_must_be_a_string(aws_endpoint: str, capacity: EmulatorCapacity) -> None:
    response = httpx.post(
        f"{aws_endpoint}/_emulator/capacity", json={"item_wcu_per_second": 1, "key_prefix": 7}, timeout=10
    )
    assert response.status_code == 400
    assert "key_prefix" in response.json()["error"]


def test_an_injected_throttle_consumes_nothing_but_counts_as_throttled(
    dynamodb: Client, table_name: str, capacity: EmulatorCapacity, emulator_faults: EmulatorFaults, pk: str
) -> None:
    emulator_faults.set([{"fault": "throttle", "key_prefix": pk, "max_count": 1}])
    legacy = boto3.client("dynamodb", config=Config(retries={"mode": "legacy", "total_max_attempts": 3}))
    response = legacy.update_item(
        TableName=table_name, Key=key(pk), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert capacity.item(meter_key(pk)) == {"wcu": 1, "rcu": 0, "throttled": 1}


def test_the_throttle_can_be_set_from_the_environment(tmp_path: Any, pk: str) -> None:
    port = free_port()
    env = python_env({"EMULATOR_ITEM_WCU_PER_SECOND": "3"})
    with running(emulator_command(port), port, tmp_path / "emulator.log", env=env):
        endpoint = f"http://127.0.0.1:{port}"
        meter = EmulatorCapacity(endpoint)
        assert meter.snapshot()["item_wcu_per_second"] == 3
        client = boto3.client(
            "dynamodb", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        outcomes = []
        started = time.monotonic()
        for _ in range(5):
            try:
                add_one(client, "t", pk)
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
        assert outcomes[:3] == ["ok"] * 3
        if time.monotonic() - started < 1:
            assert outcomes[3:] == ["ProvisionedThroughputExceededException"] * 2
            assert meter.item(meter_key(pk)) == {"wcu": 3, "rcu": 0, "throttled": 2}
