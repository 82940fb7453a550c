"""The local AWS emulator: moto's server (DynamoDB, SES, SSM...) with every request serialized.

Stock moto does not make a conditional write atomic against a concurrent one (a 40-thread
conditional-increment race admitted 11-26 of 10), so the whole WSGI app runs under one lock.
That makes each request atomic, as DynamoDB's conditional writes are, which the concurrency
tests rely on.

It also models DynamoDB's real failure modes on demand and meters its capacity per item, with an
optional per-item write throttle (SPEC §6), steered through control routes that the wrapper answers
itself (they never reach moto):

``POST /_emulator/faults``
    ``{"seed": int, "transaction_window_ms": int = 0, "rules": [rule, ...]}`` replaces the whole
    configuration and zeroes the counters. A rule is ``{"fault": "throttle" | "internal_error" |
    "lost_response" | "conflict", "operations": [...] (default: every write operation, see
    ``WRITE_OPERATIONS``), "key_prefix": str (optional: the request's ``pk`` string, or that of any
    item of a batch or a transaction, starts with it), "probability": 0..1 = 1, "max_count": int |
    null}``. The first rule that matches a request and wins its draw decides it; the draws come from
    one ``random.Random(seed)`` taken in the (serialized) order the writes are applied, so the same
    request sequence gets the same faults. Reads (GetItem, Query, Scan...) are never faulted.
``DELETE /_emulator/faults``
    Everything off (rules, transaction window, in-flight transactions); the counters are kept.
``GET /_emulator/faults``
    ``{"injected": {fault: {operation: n}}, "rules": [...], "seed": int, "transaction_window_ms": int}``.
    Conflicts caused by the transaction window (not by a rule) count as fault ``transaction_window``.
``GET /_emulator/operations``
    ``{"operations": [{"service", "operation"}, ...]}``: every distinct operation seen since start,
    sorted (DynamoDB/SSM from ``X-Amz-Target``; query-protocol services such as SES from the
    ``Action`` form field, the service from the SigV4 credential scope).
``GET /_emulator/capacity``
    ``{"items": {"<pk>|<sk>": {"wcu": n, "rcu": n, "throttled": n}}, "total": {...}, "item_wcu_per_second": n,
    "key_prefix": s}``:
    the capacity units DynamoDB would have charged since start or the last reset (see *Capacity*).
    Whole numbers are integers; halves (eventually consistent reads) and Query/Scan shares are floats.
``DELETE /_emulator/capacity``
    Zeroes the counters and the throttle windows; the throttle setting stays.
``POST /_emulator/capacity``
    ``{"item_wcu_per_second": n, "key_prefix": s}`` (n 0 or null: off) sets the per-item write ceiling
    at run time, on the items whose ``<pk>|<sk>`` starts with ``s`` only (default "": every item). The
    process starts with ``EMULATOR_ITEM_WCU_PER_SECOND`` and ``EMULATOR_ITEM_WCU_KEY_PREFIX`` from its
    environment (default 0: off, and every item).

What each fault does on the wire, and what botocore (1.44.x, the pinned version; default retry mode
``standard`` since ``configprovider.NEW_RETRIES_ENABLED``) does with it. Standard mode:
``botocore/retries/standard.py`` — ``_SERVICE_MAX_ATTEMPTS = {'dynamodb': 4}`` (4 attempts in all
unless ``Config(retries={"max_attempts": n})``), ``StandardRetryConditions`` = transient (HTTP 500/
502/503/504, connection errors) or throttled (``_THROTTLED_ERROR_CODES``) or modeled-retryable,
backoff ``rand() * min(scale * 2**i, 20)`` with scale 1 s for throttles and 25 ms otherwise for
DynamoDB, and a per-client retry quota (500 tokens, 14 per non-throttle retry, 5 per throttle).
Legacy mode: ``botocore/data/_retry.json`` — DynamoDB ``max_attempts`` 10, ``base`` 0.05 s,
retries any HTTP 500/502/503/504, ``ProvisionedThroughputExceededException``,
``TransactionInProgressException`` and CRC32 mismatches.

- ``throttle``: HTTP 400 ``ProvisionedThroughputExceededException``; not applied. Retried in both
  modes (it is in ``_THROTTLED_ERROR_CODES`` and in ``_retry.json``'s ``throughput_exceeded``).
- ``internal_error``: HTTP 500 ``InternalServerError``; not applied. Retried in both modes (status
  500 is transient / ``general_server_error``).
- ``lost_response``: moto applies the write, then the client gets HTTP 500 ``InternalServerError``
  instead of moto's answer. Retried in both modes, so the SDK resends a write that was already
  applied: a blind ``ADD`` counts twice, a conditional idempotent write fails its condition or is
  a no-op.
- ``conflict``: a single-item write gets HTTP 400 ``TransactionConflictException`` ("Transaction is
  ongoing for the item"); a ``TransactWriteItems`` gets ``TransactionCanceledException`` with
  reason ``TransactionConflict`` on the matching items (all of them without a ``key_prefix``);
  not applied. Neither code is retried in either mode (not transient, not in the throttle list, not
  modeled ``retryable`` in the DynamoDB service model, not in ``_retry.json``): the caller sees it.

Transactions (``transaction_window_ms`` > 0): a ``TransactWriteItems`` that succeeds is applied
under the lock, which is then released while its response is held for the window; its items are
"in a transaction" meanwhile. As in DynamoDB, a PutItem/UpdateItem/DeleteItem/BatchWriteItem on one
of them gets 400 ``TransactionConflictException`` and another ``TransactWriteItems`` touching one
gets 400 ``TransactionCanceledException`` whose ``CancellationReasons`` has ``TransactionConflict``
for each conflicting item and ``None`` for the others (moto's own wire shape, which botocore parses
into ``error.response["CancellationReasons"]``). Neither is applied; neither is retried by botocore.
(A BatchWriteItem is refused whole here; a simplification.)

Capacity. Every DynamoDB item operation is metered, always, per item key ``"<pk>|<sk>"`` (the values
of the table's partition and sort key as strings; ``"<pk>|"`` without a sort key; the same key in two
tables shares an entry). The rules are DynamoDB's (Developer Guide: read-write-operations.html,
CapacityUnitCalculations.html, transaction-apis.html; URLs in the *capacity* section below):

- Item size (``item_size``): attribute names' UTF-8 bytes plus values: strings their UTF-8 bytes,
  numbers about 1 byte per two significant digits + 1, binary its raw bytes, booleans and null 1,
  sets the sum of their members, lists and maps 3 + per element 1 + its size (+ its name in a map).
- Writes: ``ceil(size / 1 KB)`` WCU, at least 1, where size is the LARGER of the item before and
  after the write (PutItem, UpdateItem whatever its ``ReturnValues``, DeleteItem; a DeleteItem of a
  missing item costs 1). A write refused by its condition (``ConditionalCheckFailedException``)
  consumes too: the existing item's size, at least 1. BatchWriteItem: each item as its own write.
  TransactWriteItems: twice that per item, ConditionCheck included; a transaction cancelled by its
  own conditions is charged like refused conditional writes (the docs do not say; an assumption).
- Reads: GetItem ``ceil(size / 4 KB)`` RCU, at least 1 (a missing item too), halved unless
  ``ConsistentRead``; the whole stored item counts, whatever the projection. BatchGetItem: each key
  as a GetItem. TransactGetItems: twice a consistent GetItem per item.
- Query and Scan: the total size of the items returned, rounded up to 4 KB once per call (at least 1
  unit; halved unless ``ConsistentRead``), shared among the returned items in proportion to their
  sizes; a call that returns nothing counts in the total only. Simplification: the items as
  returned (a projection makes them smaller, a filter drops some; DynamoDB charges what it read).
- Not metered: PartiQL, table operations, other services, and every request refused before it
  reaches moto (faults, transaction window, throttle): those consume nothing. A ``throttle`` fault
  and the capacity throttle count one ``throttled`` per item concerned. A ``lost_response`` write
  was applied, so it is charged, and so is the SDK's resend of it.

The sizes are read from moto's own tables before and after the operation, inside moto's DynamoDB
handler and under the lock (``install_capacity_meter``): no extra request, a cost proportional to
the size of the items named, cheap enough to stay on.

Per-item throttle. DynamoDB caps each partition at 1,000 WCU and 3,000 RCU per second and answers
``ProvisionedThroughputExceededException`` past it (burst capacity does not lift that cap). With a
ceiling n > 0 (``EMULATOR_ITEM_WCU_PER_SECOND`` or ``POST /_emulator/capacity``), each item has a fixed
1-second window, opened by the first write that consumes capacity after its previous window closed.
A write naming an item that has already consumed n WCU in its open window is refused with the
``throttle`` fault's answer (HTTP 400 ``ProvisionedThroughputExceededException``), is not applied, and
counts as ``throttled`` for that item; the write that crosses n is let through whole, and there is no
burst credit. A TransactWriteItems or BatchWriteItem naming such an item is refused whole. Only writes
are throttled. The check comes after the transaction-window refusal and before the fault rules.
A key prefix scopes the ceiling to the items a load shares (``BUDGET#`` for the day's budget): a
ceiling scaled down 500 times for a loopback machine would otherwise also throttle per-user items
that real traffic keeps 500 times below the real one (each user's own limits bound them).
botocore retries the throttle (see ``throttle`` above): use ``total_max_attempts=1`` to see it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import io
import json
import math
import os
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
SINGLE_ITEM_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
FAULTS = ("throttle", "internal_error", "lost_response", "conflict")
WINDOW_FAULT = "transaction_window"
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
TRANSACTION_ONGOING = "Transaction is ongoing for the item"
CONTROL_PREFIX = "/_emulator/"
READ_OPERATIONS = ("GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan")
WRITE_UNIT_BYTES = 1024  # one WCU writes up to 1 KB
READ_UNIT_BYTES = 4096  # one RCU reads up to 4 KB (strongly consistent)
ITEM_WCU_ENV = "EMULATOR_ITEM_WCU_PER_SECOND"
ITEM_WCU_PREFIX_ENV = "EMULATOR_ITEM_WCU_KEY_PREFIX"
THROTTLE_WINDOW_SECONDS = 1.0
# Refused by moto's own condition evaluation: the write was attempted, so it consumed capacity.
CHARGED_ERRORS = ("ConditionalCheckFailedException", "TransactionCanceledException")

StartResponse = Callable[..., Any]
ItemId = tuple[str, str]  # (table, canonical JSON of the key)


class ConfigError(ValueError):
    """A fault configuration that does not make sense."""


@dataclass
class Rule:
    fault: str
    operations: tuple[str, ...] = WRITE_OPERATIONS
    key_prefix: str | None = None
    probability: float = 1.0
    max_count: int | None = None
    count: int = 0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Rule:
        fault = raw.get("fault")
        if fault not in FAULTS:
            raise ConfigError(f"fault must be one of {', '.join(FAULTS)}: {fault!r}")
        operations = tuple(raw.get("operations") or WRITE_OPERATIONS)
        unknown = [op for op in operations if op not in WRITE_OPERATIONS]
        if unknown:
            raise ConfigError(f"only writes can be faulted ({', '.join(WRITE_OPERATIONS)}): {unknown}")
        probability = float(raw.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"probability must be in [0, 1]: {probability}")
        max_count = raw.get("max_count")
        if max_count is not None and (not isinstance(max_count, int) or max_count < 0):
            raise ConfigError(f"max_count must be a non-negative integer or null: {max_count!r}")
        key_prefix = raw.get("key_prefix")
        if key_prefix is not None and not isinstance(key_prefix, str):
            raise ConfigError(f"key_prefix must be a string: {key_prefix!r}")
        return cls(fault, operations, key_prefix, probability, max_count)

    def as_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "operations": list(self.operations),
            "key_prefix": self.key_prefix,
            "probability": self.probability,
            "max_count": self.max_count,
            "count": self.count,
        }


@dataclass
class FaultConfig:
    seed: int = 0
    transaction_window_ms: int = 0
    rules: list[Rule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 - reproducible faults, not crypto


@dataclass
class WriteRequest:
    """A DynamoDB write as the fault logic sees it: its items as (table, key-or-item) pairs."""

    operation: str
    targets: list[tuple[str, dict[str, Any]]]  # (table, Key or Item)

    def pk_strings(self) -> list[str]:
        return [pk for _, attrs in self.targets if (pk := pk_string(attrs)) is not None]


def pk_string(attrs: dict[str, Any]) -> str | None:
    """The ``pk`` attribute's string value in a Key or an Item (wire format), if it has one."""
    value = attrs.get("pk")
    return value.get("S") if isinstance(value, dict) else None


def parse_write(operation: str, body: dict[str, Any]) -> WriteRequest:
    targets: list[tuple[str, dict[str, Any]]] = []
    if operation in SINGLE_ITEM_WRITES:
        targets.append((body.get("TableName", ""), body.get("Key") or body.get("Item") or {}))
    elif operation == "TransactWriteItems":
        for entry in body.get("TransactItems", []):
            for action in entry.values():  # exactly one of Put / Update / Delete / ConditionCheck
                targets.append((action.get("TableName", ""), action.get("Key") or action.get("Item") or {}))
    elif operation == "BatchWriteItem":
        for table, requests in (body.get("RequestItems") or {}).items():
            for request in requests:
                if "PutRequest" in request:
                    targets.append((table, request["PutRequest"].get("Item", {})))
                elif "DeleteRequest" in request:
                    targets.append((table, request["DeleteRequest"].get("Key", {})))
    return WriteRequest(operation, targets)


def error_response(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> tuple[int, bytes]:
    return status, json.dumps({"__type": ERROR_PREFIX + code, "message": message, **(extra or {})}).encode()


def cancellation(codes: list[str]) -> tuple[int, bytes]:
    """A TransactionCanceledException in moto's (and DynamoDB's) wire shape."""
    reasons = [{"Code": code, "Message": TRANSACTION_ONGOING} if code != "None" else {"Code": "None"} for code in codes]
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(codes)}]"
    return 400, json.dumps(
        {"__type": ERROR_PREFIX + "TransactionCanceledException", "CancellationReasons": reasons, "Message": message}
    ).encode()


def throttled() -> tuple[int, bytes]:
    return error_response(
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    )


def internal_error() -> tuple[int, bytes]:
    return error_response(500, "InternalServerError", "Internal server error")


def transaction_conflict() -> tuple[int, bytes]:
    return error_response(400, "TransactionConflictException", TRANSACTION_ONGOING)


# -- capacity ---------------------------------------------------------------------------------------
# The rules, from the DynamoDB Developer Guide:
#   item sizes: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
#   read/write units: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
#   transactions (2 units per item): https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html
#     and https://aws.amazon.com/dynamodb/pricing/provisioned/
#   per-partition ceiling (1,000 WCU / 3,000 RCU per second):
#     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html
#   burst capacity does not lift it: https://repost.aws/knowledge-center/dynamodb-spiky-workloads-short-intervals
#   failed conditional writes consume WCU: read-write-operations.html above (write-operation-consumption)


def attribute_size(value: Any) -> int:
    """Bytes of one attribute value, as DynamoDB sizes it (CapacityUnitCalculations, linked above).

    ``value`` is wire JSON (``{"S": "..."}``) or moto's ``DynamoType`` (``.type``/``.value``).
    Strings: UTF-8 bytes. Numbers: approximately 1 byte per two significant digits (leading and
    trailing zeros trimmed) + 1. Binary: raw bytes. Boolean and null: 1. Sets: the sum of their
    members. List and map: 3 bytes + per element 1 byte + its size (+ its name's bytes in a map).
    """
    kind, inner = (value.type, value.value) if hasattr(value, "type") else next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = str(inner).lstrip("+-").replace(".", "").lower().split("e")[0].strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        if isinstance(inner, bytes):
            return len(inner)
        try:
            return len(base64.b64decode(inner))
        except (binascii.Error, ValueError):
            return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_size(element) for name, element in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(element) for element in inner)
    return len(json.dumps(inner))  # an unknown type: something proportional to it


def item_size(attributes: Mapping[str, Any]) -> int:
    """An item's size: its attribute names' UTF-8 bytes plus its values' sizes."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in attributes.items())


def write_units(size: int) -> int:
    """WCU of one standard write: 1 KB units, rounded up, at least one."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    """RCU of one read: 4 KB units, rounded up, at least one; half as many when eventually consistent."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def meter_key(attributes: Mapping[str, Any], key_names: list[str]) -> str:
    """``"<pk>|<sk>"``: the item's key values as strings (``"<pk>|"`` in a table without a sort key)."""
    values = []
    for name in key_names[:2]:
        value = attributes.get(name)
        values.append(str(next(iter(value.values()))) if isinstance(value, dict) and value else "")
    return "|".join(values) if len(values) > 1 else f"{values[0] if values else ''}|"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


class CapacityMeter:
    """Capacity units consumed per item since the last reset, and the per-item write throttle."""

    def __init__(self, item_wcu_per_second: float = 0.0, key_prefix: str = "") -> None:
        self._lock = threading.Lock()
        self.item_wcu_per_second = item_wcu_per_second
        self.key_prefix = key_prefix  # the ceiling applies to the items whose "<pk>|<sk>" starts so
        self._items: dict[str, list[float]] = {}  # key -> [wcu, rcu, throttled]
        self._total = [0.0, 0.0, 0.0]
        self._windows: dict[str, tuple[float, float]] = {}  # key -> (window start, WCU consumed in it)

    def charge(self, key: str | None, wcu: float = 0.0, rcu: float = 0.0) -> None:
        """Count consumed units for ``key`` (``None``: in the total only)."""
        with self._lock:
            self._total[0] += wcu
            self._total[1] += rcu
            if key is None:
                return
            entry = self._items.setdefault(key, [0.0, 0.0, 0.0])
            entry[0] += wcu
            entry[1] += rcu
            if wcu:
                now = time.monotonic()
                start, used = self._windows.get(key, (-math.inf, 0.0))
                if now - start >= THROTTLE_WINDOW_SECONDS:
                    start, used = now, 0.0  # the first write after a closed window opens the next one
                self._windows[key] = (start, used + wcu)

    def over_limit(self, keys: Iterable[str]) -> list[str]:
        """The keys that have already consumed ``item_wcu_per_second`` WCU in their open window."""
        limit = self.item_wcu_per_second
        if limit <= 0:
            return []
        now = time.monotonic()
        with self._lock:
            over = []
            for key in keys:
                if not key.startswith(self.key_prefix):
                    continue
                start, used = self._windows.get(key, (-math.inf, 0.0))
                if now - start < THROTTLE_WINDOW_SECONDS and used >= limit:
                    over.append(key)
            return over

    def count_throttled(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._items.setdefault(key, [0.0, 0.0, 0.0])[2] += 1
                self._total[2] += 1

    def reset(self) -> None:
        with self._lock:
            self._items.clear()
            self._windows.clear()
            self._total = [0.0, 0.0, 0.0]

    def snapshot(self) -> dict[str, Any]:
        def entry(values: list[float]) -> dict[str, float | int]:
            return {"wcu": _number(values[0]), "rcu": _number(values[1]), "throttled": int(values[2])}

        with self._lock:
            return {
                "items": {key: entry(values) for key, values in self._items.items()},
                "total": entry(self._total),
                "item_wcu_per_second": _number(self.item_wcu_per_second),
                "key_prefix": self.key_prefix,
            }


@dataclass
class MeteredRequest:
    """One DynamoDB request being metered, inside moto (see ``install_capacity_meter``)."""

    operation: str
    body: dict[str, Any]
    meter: CapacityMeter
    sizes_before: list[int] = field(default_factory=list)

    def targets(self) -> list[tuple[str, dict[str, Any]]]:
        """(table, Key or Item) of every item the request names (none in a malformed one: moto refuses it)."""
        try:
            return self._targets()
        except (AttributeError, TypeError, ValueError):
            return []

    def _targets(self) -> list[tuple[str, dict[str, Any]]]:
        if self.operation in WRITE_OPERATIONS:
            return parse_write(self.operation, self.body).targets
        if self.operation == "GetItem":
            return [(self.body.get("TableName", ""), self.body.get("Key") or {})]
        if self.operation == "BatchGetItem":
            requests = (self.body.get("RequestItems") or {}).items()
            return [(table, key) for table, request in requests for key in request.get("Keys", [])]
        if self.operation == "TransactGetItems":
            gets = [entry.get("Get") or {} for entry in self.body.get("TransactItems", [])]
            return [(get.get("TableName", ""), get.get("Key") or {}) for get in gets]
        return []

    def before(self, backend: Any) -> None:
        if self.operation in WRITE_OPERATIONS:
            self.sizes_before = [_stored_size(backend, table, attrs) for table, attrs in self.targets()]

    def after(self, backend: Any, status: int, body: Any) -> None:
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        if status != 200:
            if self.operation in WRITE_OPERATIONS and _error_code(text) in CHARGED_ERRORS:
                self._charge_writes(backend)
            return
        if self.operation in WRITE_OPERATIONS:
            self._charge_writes(backend)
        elif self.operation in ("Query", "Scan"):
            self._charge_query(backend, text)
        else:
            factor = 2 if self.operation == "TransactGetItems" else 1
            tables = self.body.get("RequestItems") or {}
            for table, attrs in self.targets():
                if self.operation == "BatchGetItem":
                    consistent = bool((tables.get(table) or {}).get("ConsistentRead"))
                else:
                    consistent = self.operation == "TransactGetItems" or bool(self.body.get("ConsistentRead"))
                units = factor * read_units(_stored_size(backend, table, attrs), consistent)
                self.meter.charge(_key_of(backend, table, attrs), rcu=units)

    def _charge_writes(self, backend: Any) -> None:
        factor = 2 if self.operation == "TransactWriteItems" else 1
        for (table, attrs), before in zip(self.targets(), self.sizes_before, strict=False):
            size = max(before, _stored_size(backend, table, attrs))
            self.meter.charge(_key_of(backend, table, attrs), wcu=factor * write_units(size))

    def _charge_query(self, backend: Any, text: str) -> None:
        items = json.loads(text or "{}").get("Items") or []
        sizes = [item_size(item) for item in items]
        total = sum(sizes)
        units = read_units(total, bool(self.body.get("ConsistentRead")))
        if not total:
            self.meter.charge(None, rcu=units)
            return
        table = self.body.get("TableName", "")
        for item, size in zip(items, sizes, strict=True):
            self.meter.charge(_key_of(backend, table, item), rcu=units * size / total)


def _moto_table(backend: Any, table: str) -> Any:
    return backend.tables.get(table) if table else None


def _key_names(moto_table: Any) -> list[str]:
    return [name for name in (moto_table.hash_key_attr, moto_table.range_key_attr) if name]


def _key_of(backend: Any, table: str, attrs: Mapping[str, Any]) -> str | None:
    moto_table = _moto_table(backend, table)
    if moto_table is None:
        return None
    names = _key_names(moto_table)
    return meter_key(attrs, names) if all(name in attrs for name in names) else None


def _stored_size(backend: Any, table: str, attrs: Mapping[str, Any]) -> int:
    """The size of the stored item that ``attrs`` (a Key or a whole Item) names; 0 if there is none."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    moto_table = _moto_table(backend, table)
    if moto_table is None or moto_table.hash_key_attr not in attrs:
        return 0
    hash_key = DynamoType(attrs[moto_table.hash_key_attr])
    range_name = moto_table.range_key_attr
    if range_name is not None and range_name not in attrs:
        return 0
    range_key = DynamoType(attrs[range_name]) if range_name is not None else None
    try:
        stored = moto_table.get_item(hash_key, range_key)
    except Exception:  # an invalid key: moto answers the request itself
        return 0
    return 0 if stored is None else item_size(stored.attrs)


def _error_code(text: str) -> str:
    try:
        return str(json.loads(text).get("__type", "")).rpartition("#")[2]
    except (ValueError, AttributeError):
        return ""


_METERING = threading.local()  # the request being metered on this thread, handed to moto's handler


def install_capacity_meter() -> None:
    """Let moto's DynamoDB handler meter the request the emulator marked (``SerializedApp._metered``).

    The handler knows the backend the request resolves to (account and region as moto works them
    out), so the item sizes before and after the operation are read from moto's own tables, under
    the emulator's lock, with no extra request.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "capacity_metered", False):
        return  # installed already

    def call_action(self: Any) -> Any:
        request: MeteredRequest | None = getattr(_METERING, "request", None)
        if request is None:
            return original(self)
        _METERING.request = None  # meter one handler call per request
        backend = self.dynamodb_backend
        try:
            request.before(backend)
        except Exception:  # the meter must never break a request
            traceback.print_exc()
            return original(self)
        response = original(self)
        try:
            request.after(backend, int(response[0]), response[2])
        except Exception:  # the meter must never break a request
            traceback.print_exc()
        return response

    call_action.capacity_metered = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


class SerializedApp:
    """A WSGI wrapper that lets one request at a time into the wrapped app, injects faults and
    meters DynamoDB capacity (the meter itself runs inside moto: ``install_capacity_meter``)."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], item_wcu_per_second: float = 0.0, key_prefix: str = ""
    ) -> None:
        self._app = app
        self._meter = CapacityMeter(item_wcu_per_second, key_prefix)
        self._lock = threading.Lock()  # one request at a time into moto
        self._state = threading.Lock()  # fault configuration, counters, operations seen
        self._config = FaultConfig()
        self._injected: dict[str, dict[str, int]] = {}
        self._operations: set[tuple[str, str]] = set()
        self._in_transaction: dict[ItemId, float] = {}  # item -> monotonic end of its transaction window
        self._key_schemas: dict[str, list[str]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        body = _read_body(environ)
        service, operation = _identify(environ, body)
        with self._state:
            self._operations.add((service, operation))
        if service == "dynamodb" and operation in ("CreateTable", "DeleteTable"):
            self._key_schemas.clear()  # a table re-created under the same name may have another key
        if service == "dynamodb" and operation in READ_OPERATIONS:
            with self._lock, self._metered(operation, _json_body(body)):
                return list(self._app(environ, start_response))
        if service != "dynamodb" or operation not in WRITE_OPERATIONS:
            with self._lock:
                # Drain the body inside the lock: moto may compute the response lazily.
                return list(self._app(environ, start_response))
        return self._write(environ, start_response, operation, body)

    @contextmanager
    def _metered(self, operation: str, body: dict[str, Any]) -> Iterator[None]:
        """Mark the request this thread is about to hand to moto as one to meter."""
        _METERING.request = MeteredRequest(operation, body, self._meter)
        try:
            yield
        finally:
            _METERING.request = None

    # -- DynamoDB writes ---------------------------------------------------------------------------

    def _write(
        self, environ: dict[str, Any], start_response: StartResponse, operation: str, body: bytes
    ) -> list[bytes]:
        raw = _json_body(body)
        try:
            request = parse_write(operation, raw)
        except (ValueError, AttributeError, TypeError):
            request = WriteRequest(operation, [])  # let moto answer the malformed request
        hold_seconds = 0.0
        with self._lock:
            early = self._refusal(environ, request)
            if early is not None:
                return _respond(start_response, *early)
            if self._meter.item_wcu_per_second > 0:
                over = self._meter.over_limit(self._meter_keys(environ, request))
                if over:
                    self._meter.count_throttled(over)
                    return _respond(start_response, *throttled())
            fault = self._decide(request)
            if fault in ("throttle", "internal_error", "conflict"):
                self._count(fault, operation)
                if fault == "throttle":
                    self._meter.count_throttled(self._meter_keys(environ, request))
                    return _respond(start_response, *throttled())
                if fault == "internal_error":
                    return _respond(start_response, *internal_error())
                if operation == "TransactWriteItems":
                    return _respond(start_response, *self._rule_cancellation(request))
                return _respond(start_response, *transaction_conflict())
            captured: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
                captured["status"], captured["headers"] = status, headers
                return lambda _data: None

            with self._metered(operation, raw):
                chunks = list(self._app(environ, capture))
            succeeded = str(captured.get("status", "500")).startswith("2")
            with self._state:
                window = self._config.transaction_window_ms
            if operation == "TransactWriteItems" and succeeded and window > 0:
                ends = time.monotonic() + window / 1000
                for item in self._item_ids(environ, request):
                    self._in_transaction[item] = ends
                hold_seconds = window / 1000
        # Outside the lock: other requests run (and conflict) while this transaction is "in flight".
        if hold_seconds:
            time.sleep(hold_seconds)
        if fault == "lost_response":
            self._count(fault, operation)
            return _respond(start_response, *internal_error())
        start_response(captured["status"], captured["headers"])
        return chunks

    def _refusal(self, environ: dict[str, Any], request: WriteRequest) -> tuple[int, bytes] | None:
        """The answer to a write that touches an item inside another transaction's window, if it does."""
        now = time.monotonic()
        for item in [item for item, ends in self._in_transaction.items() if ends <= now]:
            del self._in_transaction[item]
        if not self._in_transaction:
            return None
        items = self._item_ids(environ, request)
        conflicting = [item in self._in_transaction for item in items]
        if not any(conflicting):
            return None
        self._count(WINDOW_FAULT, request.operation)
        if request.operation == "TransactWriteItems":
            return cancellation(["TransactionConflict" if hit else "None" for hit in conflicting])
        return transaction_conflict()

    def _rule_cancellation(self, request: WriteRequest) -> tuple[int, bytes]:
        prefixes = [rule.key_prefix for rule in self._config.rules if rule.fault == "conflict" and rule.key_prefix]
        codes = []
        for _, attrs in request.targets:
            pk = pk_string(attrs)
            hit = not prefixes or (pk is not None and any(pk.startswith(prefix) for prefix in prefixes))
            codes.append("TransactionConflict" if hit else "None")
        return cancellation(codes)

    def _decide(self, request: WriteRequest) -> str | None:
        with self._state:
            pks = request.pk_strings()
            for rule in self._config.rules:
                if request.operation not in rule.operations:
                    continue
                if rule.key_prefix is not None and not any(pk.startswith(rule.key_prefix) for pk in pks):
                    continue
                if rule.max_count is not None and rule.count >= rule.max_count:
                    continue
                if self._config.rng.random() < rule.probability:
                    rule.count += 1
                    return rule.fault
        return None

    def _count(self, fault: str, operation: str) -> None:
        with self._state:
            per_operation = self._injected.setdefault(fault, {})
            per_operation[operation] = per_operation.get(operation, 0) + 1

    def _item_ids(self, environ: dict[str, Any], request: WriteRequest) -> list[ItemId]:
        ids = []
        for table, attrs in request.targets:
            key_names = self._key_schema(environ, table)
            key = {name: attrs.get(name) for name in key_names} if key_names else attrs
            ids.append((table, json.dumps(key, sort_keys=True)))
        return ids

    def _meter_keys(self, environ: dict[str, Any], request: WriteRequest) -> list[str]:
        """The capacity meter's ``"<pk>|<sk>"`` of every item the write names."""
        return [meter_key(attrs, self._key_schema(environ, table)) for table, attrs in request.targets]

    def _key_schema(self, environ: dict[str, Any], table: str) -> list[str]:
        """The table's key attribute names, partition key first, asked of moto itself (called under
        the request lock)."""
        if table not in self._key_schemas:
            payload = json.dumps({"TableName": table}).encode()
            probe = {
                **environ,
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/",
                "QUERY_STRING": "",
                "HTTP_X_AMZ_TARGET": DYNAMODB_TARGET_PREFIX + "DescribeTable",
                "CONTENT_LENGTH": str(len(payload)),
                "wsgi.input": io.BytesIO(payload),
            }
            status: dict[str, str] = {}

            def keep(code: str, _headers: Any, _exc: Any = None) -> Callable[[bytes], None]:
                status["code"] = code
                return lambda _data: None

            answer = b"".join(self._app(probe, keep))
            if not status.get("code", "").startswith("2"):
                return []  # unknown table: moto will refuse the write itself
            schema = sorted(json.loads(answer)["Table"]["KeySchema"], key=lambda element: element["KeyType"])
            self._key_schemas[table] = [element["AttributeName"] for element in schema]  # HASH < RANGE
        return self._key_schemas[table]

    # -- control routes ----------------------------------------------------------------------------

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == CONTROL_PREFIX + "faults" and method == "POST":
            try:
                raw = json.loads(_read_body(environ) or b"{}")
                config = FaultConfig(
                    seed=int(raw.get("seed", 0)),
                    transaction_window_ms=int(raw.get("transaction_window_ms", 0)),
                    rules=[Rule.parse(rule) for rule in raw.get("rules", [])],
                )
                if config.transaction_window_ms < 0:
                    raise ConfigError("transaction_window_ms must be >= 0")
            except (ValueError, TypeError, AttributeError) as error:
                return _json(start_response, 400, {"error": str(error)})
            config.rng = random.Random(config.seed)  # noqa: S311 - reproducible faults, not crypto
            with self._lock, self._state:
                self._config = config
                self._injected = {}
                self._in_transaction.clear()
            return _json(start_response, 200, self._status())
        if path == CONTROL_PREFIX + "faults" and method == "DELETE":
            with self._lock, self._state:
                self._config = FaultConfig()
                self._in_transaction.clear()
            return _json(start_response, 200, self._status())
        if path == CONTROL_PREFIX + "faults" and method == "GET":
            return _json(start_response, 200, self._status())
        if path == CONTROL_PREFIX + "capacity" and method == "GET":
            return _json(start_response, 200, self._meter.snapshot())
        if path == CONTROL_PREFIX + "capacity" and method == "DELETE":
            self._meter.reset()
            return _json(start_response, 200, self._meter.snapshot())
        if path == CONTROL_PREFIX + "capacity" and method == "POST":
            try:
                raw = json.loads(_read_body(environ) or b"{}")
                limit = item_wcu_limit(raw.get("item_wcu_per_second"))
                prefix = raw.get("key_prefix") or ""
                if not isinstance(prefix, str):
                    raise ConfigError(f"key_prefix must be a string: {prefix!r}")
            except (ValueError, TypeError, AttributeError) as error:
                return _json(start_response, 400, {"error": str(error)})
            with self._lock:
                self._meter.item_wcu_per_second = limit
                self._meter.key_prefix = prefix
            return _json(start_response, 200, self._meter.snapshot())
        if path == CONTROL_PREFIX + "operations" and method == "GET":
            with self._state:
                seen = sorted(self._operations)
            return _json(start_response, 200, {"operations": [{"service": s, "operation": o} for s, o in seen]})
        return _json(start_response, 404, {"error": f"no control route {method} {path}"})

    def _status(self) -> dict[str, Any]:
        with self._state:
            return {
                "injected": {fault: dict(counts) for fault, counts in self._injected.items()},
                "rules": [rule.as_json() for rule in self._config.rules],
                "seed": self._config.seed,
                "transaction_window_ms": self._config.transaction_window_ms,
            }


def item_wcu_limit(raw: Any) -> float:
    """The per-item WCU/s ceiling from the environment or the control route: a number >= 0, 0 = off."""
    if raw is None or raw == "":
        return 0.0
    if isinstance(raw, bool):
        raise ConfigError(f"item_wcu_per_second must be a number >= 0: {raw!r}")
    limit = float(raw)
    if not math.isfinite(limit) or limit < 0:
        raise ConfigError(f"item_wcu_per_second must be a number >= 0: {raw!r}")
    return limit


def _json_body(body: bytes) -> dict[str, Any]:
    """A DynamoDB request body as a dict ({} if it is not one: moto answers it)."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body once and put it back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body: bytes = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: the server delimits the stream
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _identify(environ: dict[str, Any], body: bytes) -> tuple[str, str]:
    """(service, operation) of an AWS request, as an IAM policy would name them."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    signed_service = scope.group(1) if scope else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, operation = target.rpartition(".")
        if prefix.startswith("DynamoDB"):
            return "dynamodb", operation
        if prefix == "AmazonSSM":
            return "ssm", operation
        return signed_service or prefix.lower(), operation
    content_type = environ.get("CONTENT_TYPE", "")
    if "x-www-form-urlencoded" in content_type or environ.get("QUERY_STRING", "").find("Action=") >= 0:
        fields = parse_qs(body.decode("utf-8", "replace")) if body else {}
        fields.update(parse_qs(environ.get("QUERY_STRING", "")))
        if "Action" in fields:
            return signed_service or "unknown", fields["Action"][0]
    return signed_service or "unknown", f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"


def _respond(start_response: StartResponse, status: int, payload: bytes) -> list[bytes]:
    reason = {400: "Bad Request", 500: "Internal Server Error"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", uuid.uuid4().hex),
        ],
    )
    return [payload]


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


class _TablesUncopied:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: copies everything as
    ``copy`` does, except whole tables (see ``item_level_transaction_rollback``)."""

    def __init__(self, table_class: type) -> None:
        self._table_class = table_class

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_class):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def item_level_transaction_rollback() -> None:
    """Make a ``TransactWriteItems`` cost what its items cost, not what its tables hold.

    moto backs up every table a transaction touches with ``copy.deepcopy`` and restores the copy
    if the transaction is cancelled: that is O(table size) per transaction (measured: 7 ms on an
    empty table, 155 ms with 1,000 items), so a day's worth of CHARGE markers slows every
    transaction, and behind the emulator's lock every other request, until clients time out.
    Real DynamoDB does not slow down with table size. Here the table "copy" is the table itself,
    and the items the transaction names are saved before it runs and put back if it fails
    (safe because the emulator runs one request at a time).
    """
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend_class = dynamodb_models.DynamoDBBackend
    if isinstance(dynamodb_models.copy, _TablesUncopied):
        return  # applied already
    dynamodb_models.copy = _TablesUncopied(Table)  # type: ignore[assignment]
    original = backend_class.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            _, operation = next(iter(entry.items()))
            table = self.tables.get(operation.get("TableName"))
            if table is None:
                continue
            key = operation.get("Key") or operation.get("Item") or {}
            if table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            before = table.get_item(hash_key, range_key) if table.has_range_key == (range_key is not None) else None
            saved.append((table, hash_key, range_key, copy.deepcopy(before)))
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(saved):
                if before is None:
                    if range_key is not None:
                        table.items.get(hash_key, {}).pop(range_key, None)
                    else:
                        table.items.pop(hash_key, None)
                elif range_key is not None:
                    table.items[hash_key][range_key] = before
                else:
                    table.items[hash_key] = before
            raise

    backend_class.transact_write_items = transact_write_items


def serve(host: str, port: int) -> None:
    try:
        item_wcu_per_second = item_wcu_limit(os.environ.get(ITEM_WCU_ENV))
    except ValueError as error:
        raise SystemExit(f"{ITEM_WCU_ENV}: {error}") from None
    item_level_transaction_rollback()
    install_capacity_meter()
    key_prefix = os.environ.get(ITEM_WCU_PREFIX_ENV, "")
    app = SerializedApp(DomainDispatcherApplication(create_backend_app), item_wcu_per_second, key_prefix)
    server = make_server(host, port, app, threaded=True)
    print(f"aws emulator listening on http://{host}:{port}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
