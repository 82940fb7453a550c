"""The emulator's DynamoDB item-size approximation (infra/local/aws_emulator.py), worked by hand from
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.aws_emulator import attribute_size, item_size, meter_key, read_units, write_units


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "héllo"}, 6),  # UTF-8 bytes, not characters
        ({"N": "123.450"}, 4),  # 5 significant digits (trailing zero trimmed): 3 + 1
        ({"N": "-0001000"}, 2),  # 1 significant digit: 1 + 1
        ({"N": "0"}, 1),
        ({"B": "AAEC"}, 3),  # base64 on the wire, raw bytes counted
        ({"BOOL": False}, 1),
        ({"NULL": True}, 1),
        ({"SS": ["a", "bb"]}, 3),
        ({"NS": ["1", "22"]}, 4),
        ({"M": {}}, 3),
        ({"L": []}, 3),
        ({"M": {"ab": {"S": "xyz"}, "c": {"NULL": True}}}, 3 + (1 + 2 + 3) + (1 + 1 + 1)),
        ({"L": [{"S": "a"}, {"N": "10"}]}, 3 + (1 + 1) + (1 + 2)),
    ],
)
def test_attribute_sizes(value: dict[str, Any], size: int) -> None:
    assert attribute_size(value) == size


def test_an_item_weighs_its_names_and_values() -> None:
    assert item_size({"pk": {"S": "USER#1"}, "n": {"N": "42"}}) == (2 + 6) + (1 + 2)


def test_units_round_up_with_a_minimum_of_one() -> None:
    assert [write_units(size) for size in (0, 1, 1024, 1025, 2549)] == [1, 1, 1, 2, 3]
    assert [read_units(size, consistent=True) for size in (0, 4096, 4097)] == [1, 1, 2]
    assert [read_units(size, consistent=False) for size in (0, 4096, 4097, 12289)] == [0.5, 0.5, 1, 2]


def test_the_meter_key_is_pk_bar_sk() -> None:
    assert meter_key({"pk": {"S": "U#1"}, "sk": {"S": "DAY"}, "x": {"N": "1"}}, ["pk", "sk"]) == "U#1|DAY"
    assert meter_key({"pk": {"N": "7"}}, ["pk"]) == "7|"
