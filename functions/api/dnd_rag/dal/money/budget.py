"""The daily budget, its alert claims and the usage ledgers in DynamoDB.

Items (all expire with TTL three days after their UTC day; the shards 403 days after it, for the
spend export):
  BUDGET#<day> / TOTAL        ``spent``, ``committed`` (spent + open holds), ``requests``;
                              ``h_<id>`` = {a: amount, l: lease end, u: user, m: model} per open hold;
                              ``o_<id>`` = end of grace, per hold charged in full as an orphan;
                              ``m<field>_<model>`` the per-model ledger; ``alert_<T>_sent`` once every
                              alert channel has threshold T's event (claims: dal/alerts/event_claims.py);
                              ``s_<HHMM>`` nano-dollars settled in the 10-minute bucket from HH:MM
                              (the spend curve of the burn-rate forecast; older than 2 h removed)
  LEDGER#<day> / USER#<id>    the user's ledger: requests, tokens, cost; and the user's own limits
                              (dal/money/user_budget.py): ``ucommitted`` (cap use + open holds), ``inflight``,
                              ``uh_<id>`` = {a, l, m} per open hold, the same id as the hold on TOTAL
  LEDGER#<day> / CHARGE#<id>  what hold <id> was charged (``orphan`` when charged in full)

Why this shape (SPEC §4 "conflict-free writes"):
- The TOTAL item is written only by single conditional UpdateItems, never by a transaction, so a
  write on it can never meet TransactionConflictException from our own traffic.
- Every money write names the hold in its condition, so a write the SDK re-sends after a lost
  response is refused instead of counted twice; a refusal is then read as "already done".
- Settling writes the user's ledger first (one transaction: the CHARGE marker, created only if
  absent, and the ledger) and the TOTAL second. If the request dies in between, the hold outlives
  its lease and whoever reclaims it finds the marker and settles the TOTAL with the real cost;
  with no marker it charges the hold in full. Ledgers therefore always add up to the total.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from dnd_rag.dal.dynamo import int_value, number, store_errors, try_update_item, update_item, with_retries
from dnd_rag.errors import StoreUnavailableError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.money.shards import merge_shards
from dnd_rag.logic.operations.forecast import bucket_attribute
from dnd_rag.logic.ports import DayBooks, LedgerRow
from dnd_rag.models.money import BudgetTotals, Charge, HoldEntry, TokenUsage

KEEP_SECONDS = 3 * 86_400
# The day's budget shards (its total and per-model ledger, no user data once its holds have
# settled) are the books the spend export reads: kept as far back as it reaches (400 days), plus
# the three days every other item of the day gets.
BOOKS_KEEP_SECONDS = (400 + 3) * 86_400
STALE_CURVE_MINUTES = (70, 80, 90, 100, 110, 120)  # always older than the forecast's one-hour window
HOLD_PREFIX = "h_"
USER_HOLD_PREFIX = "uh_"
ORPHAN_PREFIX = "o_"
LEDGER_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "embedding_tokens", "cost")
_MODEL_ATTRIBUTE = re.compile(r"^m(requests|prompt_tokens|completion_tokens|embedding_tokens|cost)_(.+)$")
_CURVE_ATTRIBUTE = re.compile(r"^s_(\d\d)(\d\d)$")
_CONDITION_FAILED = "ConditionalCheckFailedException"
_CANCELLED = "TransactionCanceledException"


def _day_pk(day: str) -> str:
    return f"BUDGET#{day}"


def _shard_sk(shard: int) -> str:
    """Shard 0 keeps the name of the day's one item before sharding (``TOTAL``): with one shard the
    layout is what it always was, and it also carries the day's alert marks."""
    return "TOTAL" if shard == 0 else f"SHARD#{shard}"


def _shard_key(day: str, shard: int = 0) -> dict[str, Any]:
    return {"pk": {"S": _day_pk(day)}, "sk": {"S": _shard_sk(shard)}}


def _shard_of(sort_key: str) -> int | None:
    if sort_key == "TOTAL":
        return 0
    if sort_key.startswith("SHARD#"):
        return int(sort_key.removeprefix("SHARD#"))
    return None


def _ledger_key(day: str, sort_key: str) -> dict[str, Any]:
    return {"pk": {"S": f"LEDGER#{day}"}, "sk": {"S": sort_key}}


def user_ledger_key(day: str, user_id: str) -> dict[str, Any]:
    """The user's ledger item of ``day`` (it also holds the user's own limits, dal/money/user_budget.py)."""
    return _ledger_key(day, f"USER#{user_id}")


def _hold(value: dict[str, Any], shard: int) -> HoldEntry:
    fields = value["M"]
    return HoldEntry(
        amount=int(fields["a"]["N"]),
        lease_until=float(fields["l"]["N"]),
        user_id=fields["u"]["S"],
        model=fields["m"]["S"],
        shard=shard,
    )


def _curve(item: dict[str, Any]) -> dict[int, int]:
    """The spend curve: minute of the day a 10-minute bucket starts -> nano-dollars."""
    curve = {}
    for name, value in item.items():
        match = _CURVE_ATTRIBUTE.match(name)
        if match:
            curve[int(match.group(1)) * 60 + int(match.group(2))] = int(value["N"])
    return curve


def totals_from_item(day: str, item: dict[str, Any] | None, shard: int = 0) -> BudgetTotals:
    """One shard's totals, from its item (None: the shard has no item yet)."""
    item = item or {}
    sent = {
        int(name.split("_")[1]): int(value["N"])
        for name, value in item.items()
        if name.startswith("alert_") and name.endswith("_sent")
    }
    return BudgetTotals(
        day=day,
        spent=int_value(item, "spent"),
        committed=int_value(item, "committed"),
        shard=shard,
        open_holds=int_value(item, "nholds"),
        alerts_sent=sent,
        holds={
            name.removeprefix(HOLD_PREFIX): _hold(value, shard)
            for name, value in item.items()
            if name.startswith(HOLD_PREFIX)
        },
        orphans={
            name.removeprefix(ORPHAN_PREFIX): float(value["N"])
            for name, value in item.items()
            if name.startswith(ORPHAN_PREFIX)
        },
        spend_curve=_curve(item),
    )


def _hold_value(entry: HoldEntry) -> dict[str, Any]:
    return {
        "M": {
            "a": number(entry.amount),
            "l": number(entry.lease_until),
            "u": {"S": entry.user_id},
            "m": {"S": entry.model},
        }
    }


def _condition_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == _CONDITION_FAILED


def _model_ledger_update(
    model: str, usage: TokenUsage, cost: int, requests: int, day: str, now: float
) -> tuple[list[str], str, dict, dict]:
    """ADD clauses that keep the per-model ledger and the spend curve (the 10-minute bucket of
    ``now``, for the burn-rate forecast) inside the TOTAL item, in the same write as the money;
    and ``, #name...`` for the REMOVE list: the curve's buckets from 70-120 minutes ago, which
    no forecast reads any more, so the item stays small under steady traffic."""
    values = {
        "requests": requests,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "embedding_tokens": usage.embedding_tokens,
        "cost": cost,
    }
    clauses, names, attribute_values = [], {}, {}
    for n, (field, value) in enumerate(values.items()):
        names[f"#ml{n}"] = f"m{field}_{model}"
        attribute_values[f":ml{n}"] = number(value)
        clauses.append(f"#ml{n} :ml{n}")
    stale = ""
    if utc_day(now) == day:  # a late write after midnight leaves yesterday's curve alone
        names["#curve"] = bucket_attribute(now)
        attribute_values[":curve"] = number(cost)
        clauses.append("#curve :curve")
        old = [bucket_attribute(now - m * 60) for m in STALE_CURVE_MINUTES if utc_day(now - m * 60) == day]
        names |= {f"#stale{n}": name for n, name in enumerate(old)}
        stale = "".join(f", #stale{n}" for n in range(len(old)))
    return clauses, stale, names, attribute_values


class DynamoBudgetStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update_total(self, operation: str, day: str, shard: int, **kwargs: Any) -> dict[str, Any]:
        """One conditional UpdateItem on a shard of the day's budget; a refused condition is re-raised."""
        return update_item(self._client, self._table, _shard_key(day, shard), operation, **kwargs)

    def _try_update_total(self, operation: str, day: str, shard: int, **kwargs: Any) -> tuple[bool, BudgetTotals]:
        """A conditional UpdateItem on a shard: (applied, its item after it or, if refused, as found)."""
        applied, item = try_update_item(self._client, self._table, _shard_key(day, shard), operation, **kwargs)
        return applied, totals_from_item(day, item, shard)

    def _transact(self, operation: str, items: list[dict[str, Any]]) -> bool:
        """One transaction (never on TOTAL), re-sent after transient refusals; False if a condition
        cancelled it."""
        try:
            with store_errors(operation, expected=(_CANCELLED,)):
                with_retries(lambda: self._client.transact_write_items(TransactItems=items))
        except ClientError:
            return False
        return True

    # --- holds ----------------------------------------------------------------------------------

    def try_reserve(
        self,
        day: str,
        hold_id: str,
        entry: HoldEntry,
        headroom: int,
        expires_at: float,
        drop_orphans: tuple[str, ...] = (),
        shard: int = 0,
        max_holds: int | None = None,
    ) -> tuple[bool, BudgetTotals]:
        """Open hold ``hold_id`` on ``shard`` if its ``committed <= headroom`` and it carries fewer
        than ``max_holds`` holds (so its item, written by every query, never grows with traffic);
        also drops orphans past their grace."""
        if headroom < 0:  # larger than the shard's whole budget: nothing to ask the store
            return False, self.read_shard(day, shard)
        names = {"#hold": HOLD_PREFIX + hold_id}
        remove = ""
        if drop_orphans:
            names |= {f"#drop{n}": ORPHAN_PREFIX + orphan for n, orphan in enumerate(drop_orphans)}
            remove = " REMOVE " + ", ".join(f"#drop{n}" for n in range(len(drop_orphans)))
        condition = "attribute_not_exists(#hold) AND (attribute_not_exists(committed) OR committed <= :headroom)"
        values = {
            ":entry": _hold_value(entry),
            ":amount": number(entry.amount),
            ":zero": number(0),
            ":one": number(1),
            ":headroom": number(headroom),
            ":expires": number(expires_at + BOOKS_KEEP_SECONDS),
        }
        if max_holds is not None:
            condition += " AND (attribute_not_exists(nholds) OR nholds < :max_holds)"
            values[":max_holds"] = number(max_holds)
        granted, totals = self._try_update_total(
            "UpdateItem budget reserve",
            day,
            shard,
            UpdateExpression="SET #hold = :entry, expires_at = :expires "
            "ADD committed :amount, spent :zero, requests :zero, nholds :one" + remove,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        # refused: unless by our own write, applied once already, whose answer was lost
        return granted or hold_id in totals.holds, totals

    def try_resize(
        self, day: str, hold_id: str, old: int, new: int, headroom: int, shard: int = 0
    ) -> tuple[bool, BudgetTotals]:
        """Change an open hold from ``old`` to ``new`` if ``committed <= headroom`` (growing only)."""
        condition = "#hold.a = :old"
        values = {":old": number(old), ":new": number(new), ":delta": number(new - old)}
        if new > old:
            condition += " AND committed <= :headroom"
            values[":headroom"] = number(headroom)
        granted, totals = self._try_update_total(
            "UpdateItem budget resize",
            day,
            shard,
            UpdateExpression="SET #hold.a = :new ADD committed :delta",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#hold": HOLD_PREFIX + hold_id},
            ExpressionAttributeValues=values,
        )
        hold = totals.holds.get(hold_id)  # refused: unless by our own resize, applied once already
        return granted or (hold is not None and hold.amount == new), totals

    def release(self, day: str, hold_id: str, amount: int, shard: int = 0) -> bool:
        """Remove hold ``hold_id`` if it has ``amount``; False if it is gone or has another amount."""
        try:
            self._update_total(
                "UpdateItem budget release",
                day,
                shard,
                UpdateExpression="REMOVE #hold ADD committed :minus, nholds :one_less",
                ConditionExpression="#hold.a = :amount",
                ExpressionAttributeNames={"#hold": HOLD_PREFIX + hold_id},
                ExpressionAttributeValues={
                    ":minus": number(-amount),
                    ":amount": number(amount),
                    ":one_less": number(-1),
                },
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return False
        return True

    def settle(
        self,
        day: str,
        hold_id: str,
        reserved: int,
        charge: Charge,
        now: float,
        expires_at: float,
        user_hold: int | None = None,
        shard: int = 0,
    ) -> BudgetTotals:
        """Replace hold ``hold_id`` (``reserved``, on ``shard``) by ``charge``: the user's ledger
        (closing the user's hold ``user_hold`` of the same id, if any), then the shard."""
        marker = self._write_ledger(day, hold_id, charge, orphan=False, expires_at=expires_at, user_hold=user_hold)
        if marker is not None and marker.get("orphan", {}).get("BOOL"):
            return self._correct_orphan(day, hold_id, charge, marker, now, expires_at, shard)
        return self._settle_total(day, hold_id, reserved, charge, now, lease_check=None, shard=shard)

    def _settle_total(
        self,
        day: str,
        hold_id: str,
        reserved: int,
        charge: Charge,
        now: float,
        lease_check: float | None,
        shard: int = 0,
    ) -> BudgetTotals:
        clauses, stale, names, values = _model_ledger_update(charge.model, charge.usage, charge.cost, 1, day, now)
        condition = "#hold.a = :reserved"  # exactly the hold this settle is for
        values[":reserved"] = number(reserved)
        if lease_check is not None:
            condition += " AND #hold.l < :now"
            values[":now"] = number(lease_check)
        # refused: settled already, by our own earlier attempt or by a reclaimer that found our marker
        _, totals = self._try_update_total(
            "UpdateItem budget settle",
            day,
            shard,
            UpdateExpression=f"REMOVE #hold{stale} ADD committed :delta, spent :cost, requests :one, "
            + "nholds :one_less, "
            + ", ".join(clauses),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#hold": HOLD_PREFIX + hold_id, **names},
            ExpressionAttributeValues={
                ":delta": number(charge.cost - reserved),
                ":cost": number(charge.cost),
                ":one": number(1),
                ":one_less": number(-1),
                **values,
            },
        )
        return totals

    def reclaim(
        self, day: str, hold_id: str, entry: HoldEntry, now: float, grace_until: float, expires_at: float
    ) -> int:
        """Settle a hold whose lease ended: at the cost its owner recorded, else in full (an orphan).

        Returns what this call booked (0 when another request reclaimed or settled it first)."""
        if entry.lease_until >= now:
            return 0
        marker = self._read_marker(day, hold_id)
        if marker is None:
            charge = Charge(entry.user_id, entry.model, TokenUsage(), entry.amount)
            marker = self._write_orphan_ledger(day, hold_id, charge, expires_at)
            if marker is None:  # we wrote it: charge the hold in full
                return self._charge_orphan(day, hold_id, entry, now, grace_until)
        charge = _charge_from_marker(marker, entry)
        if marker.get("orphan", {}).get("BOOL"):
            if charge.cost != entry.amount:  # the owner grew the hold after an earlier reclaim read it
                self._restate_orphan_marker(day, hold_id, entry, charge.cost, expires_at)
            return self._charge_orphan(day, hold_id, entry, now, grace_until)
        totals = self._settle_total(day, hold_id, entry.amount, charge, now, lease_check=now, shard=entry.shard)
        return charge.cost if hold_id not in totals.holds else 0

    def _write_orphan_ledger(
        self, day: str, hold_id: str, charge: Charge, expires_at: float, attempts: int = 3
    ) -> dict[str, Any] | None:
        """_write_ledger for an orphan: the user's hold of the same id (read first) is closed in the
        same transaction, so the user's books get the same charge as the total. A user hold that
        changed between the read and the write (its owner, still alive, grew it) cancels the
        transaction: read it again."""
        for attempt in range(attempts):
            user_hold = self._read_user_hold(day, charge.user_id, hold_id)
            try:
                return self._write_ledger(day, hold_id, charge, True, expires_at, user_hold, check_user_hold=True)
            except StoreUnavailableError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _charge_orphan(self, day: str, hold_id: str, entry: HoldEntry, now: float, grace_until: float) -> int:
        clauses, stale, names, values = _model_ledger_update(entry.model, TokenUsage(), entry.amount, 1, day, now)
        try:
            self._update_total(
                "UpdateItem budget orphan",
                day,
                entry.shard,
                UpdateExpression=f"REMOVE #hold{stale} SET #orphan = :grace ADD spent :amount, requests :one, "
                + "nholds :one_less, "
                + ", ".join(clauses),
                # pinned to the amount charged: a hold its owner grew since it was read is left alone
                ConditionExpression="#hold.a = :amount AND #hold.l < :now",
                ExpressionAttributeNames={"#hold": HOLD_PREFIX + hold_id, "#orphan": ORPHAN_PREFIX + hold_id, **names},
                ExpressionAttributeValues={
                    ":grace": number(grace_until),
                    ":amount": number(entry.amount),
                    ":one": number(1),
                    ":one_less": number(-1),
                    ":now": number(now),
                    **values,
                },
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return 0  # someone else settled or reclaimed it first
            raise
        return entry.amount

    def _restate_orphan_marker(
        self, day: str, hold_id: str, entry: HoldEntry, recorded: int, expires_at: float
    ) -> None:
        """Bring an orphan's marker and user ledger to the hold's amount now (it grew since recorded)."""
        difference = Charge(entry.user_id, entry.model, TokenUsage(), entry.amount - recorded)
        items = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _ledger_key(day, f"CHARGE#{hold_id}"),
                    "UpdateExpression": "SET cost = :amount",
                    "ConditionExpression": "orphan = :true AND cost = :recorded",
                    "ExpressionAttributeValues": {
                        ":amount": number(entry.amount),
                        ":recorded": number(recorded),
                        ":true": {"BOOL": True},
                    },
                }
            },
            self._user_ledger_update(day, difference, requests=0, expires_at=expires_at),
        ]
        self._transact("TransactWriteItems orphan restate", items)  # cancelled: restated by another reclaimer

    def _correct_orphan(
        self,
        day: str,
        hold_id: str,
        charge: Charge,
        marker: dict[str, Any],
        now: float,
        expires_at: float,
        shard: int = 0,
    ) -> BudgetTotals:
        """A late settle: the hold was charged in full as an orphan; bring both books down to ``charge``."""
        charged = int(marker["cost"]["N"])
        refund = charged - charge.cost
        correction = Charge(charge.user_id, charge.model, charge.usage, -refund)
        items = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _ledger_key(day, f"CHARGE#{hold_id}"),
                    "UpdateExpression": "SET orphan = :false, cost = :cost",
                    "ConditionExpression": "orphan = :true",
                    "ExpressionAttributeValues": {
                        ":false": {"BOOL": False},
                        ":true": {"BOOL": True},
                        ":cost": number(charge.cost),
                    },
                }
            },
            self._user_ledger_update(day, correction, requests=0, expires_at=expires_at),
        ]
        if not self._transact("TransactWriteItems ledger correction", items):
            return self.read_shard(day, shard)  # corrected already
        clauses, stale, names, values = _model_ledger_update(charge.model, charge.usage, -refund, 0, day, now)
        try:
            response = self._update_total(
                "UpdateItem budget late settle",
                day,
                shard,
                UpdateExpression=f"REMOVE #orphan{stale} ADD committed :minus, spent :minus, " + ", ".join(clauses),
                ConditionExpression="attribute_exists(#orphan)",
                ExpressionAttributeNames={"#orphan": ORPHAN_PREFIX + hold_id, **names},
                ExpressionAttributeValues={":minus": number(-refund), **values},
                ReturnValues="ALL_NEW",
            )
        except ClientError:
            return self.read_shard(day, shard)
        return totals_from_item(day, response["Attributes"], shard)

    # --- the user's ledger and the charge markers ---------------------------------------------

    def _user_ledger_update(
        self,
        day: str,
        charge: Charge,
        requests: int,
        expires_at: float,
        hold_id: str | None = None,
        user_hold: int | None = None,
    ) -> dict[str, Any]:
        """The user's ledger gets ``charge``, and so does the user's cap use (``ucommitted``).

        With ``hold_id``, the same write closes the user's hold of that id (``uh_<id>``, whose
        amount must be ``user_hold``; its in-flight slot is freed), or, when ``user_hold`` is None,
        requires that the user has no such hold: a hold changed since it was read cancels the
        transaction instead of being counted wrong."""
        usage = charge.usage
        cap_use = charge.cost
        expression = (
            "SET expires_at = :expires ADD requests :requests, prompt_tokens :prompt, "
            "completion_tokens :completion, embedding_tokens :embedding, cost :cost, ucommitted :cap_use"
        )
        values = {
            ":expires": number(expires_at + KEEP_SECONDS),
            ":requests": number(requests),
            ":prompt": number(usage.prompt_tokens),
            ":completion": number(usage.completion_tokens),
            ":embedding": number(usage.embedding_tokens),
            ":cost": number(charge.cost),
        }
        update: dict[str, Any] = {"TableName": self._table, "Key": user_ledger_key(day, charge.user_id)}
        if hold_id is not None:
            update["ExpressionAttributeNames"] = {"#uh": USER_HOLD_PREFIX + hold_id}
            if user_hold is None:
                update["ConditionExpression"] = "attribute_not_exists(#uh)"
            else:
                cap_use -= user_hold
                expression += ", inflight :one_less REMOVE #uh"
                update["ConditionExpression"] = "#uh.a = :user_hold"
                values |= {":one_less": number(-1), ":user_hold": number(user_hold)}
        values[":cap_use"] = number(cap_use)
        return {"Update": {**update, "UpdateExpression": expression, "ExpressionAttributeValues": values}}

    def _read_user_hold(self, day: str, user_id: str, hold_id: str) -> int | None:
        """The amount of the user's hold ``hold_id`` on the user's ledger item, None if it has none."""
        with store_errors("GetItem user hold"):
            item = self._client.get_item(
                TableName=self._table,
                Key=user_ledger_key(day, user_id),
                ConsistentRead=True,
                ProjectionExpression="#uh",
                ExpressionAttributeNames={"#uh": USER_HOLD_PREFIX + hold_id},
            ).get("Item", {})
        value = item.get(USER_HOLD_PREFIX + hold_id)
        return int(value["M"]["a"]["N"]) if value else None

    def _write_ledger(
        self,
        day: str,
        hold_id: str,
        charge: Charge,
        orphan: bool,
        expires_at: float,
        user_hold: int | None = None,
        check_user_hold: bool = False,
    ) -> dict[str, Any] | None:
        """Create the CHARGE marker and add ``charge`` to the user's ledger, once; the same
        transaction closes the user's hold of the same id (``user_hold``, see _user_ledger_update).

        None when this call wrote them; otherwise the marker that was already there (our own
        earlier attempt, or a reclaimer's orphan charge)."""
        usage = charge.usage
        marker = {
            "Put": {
                "TableName": self._table,
                "Item": {
                    **_ledger_key(day, f"CHARGE#{hold_id}"),
                    "user_id": {"S": charge.user_id},
                    "model": {"S": charge.model},
                    "cost": number(charge.cost),
                    "prompt_tokens": number(usage.prompt_tokens),
                    "completion_tokens": number(usage.completion_tokens),
                    "embedding_tokens": number(usage.embedding_tokens),
                    "orphan": {"BOOL": orphan},
                    "expires_at": number(expires_at + KEEP_SECONDS),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        closes = hold_id if user_hold is not None or check_user_hold else None
        items = [marker, self._user_ledger_update(day, charge, 1, expires_at, closes, user_hold)]
        if self._transact("TransactWriteItems ledger", items):
            return None
        existing = self._read_marker(day, hold_id)
        if existing is None:  # cancelled for another reason that retries did not clear
            raise StoreUnavailableError(
                "The service is temporarily unavailable. Please retry shortly.",
                retry_after=5,
                reason="dynamodb TransactWriteItems ledger: cancelled without a marker",
            )
        return existing

    def _read_marker(self, day: str, hold_id: str) -> dict[str, Any] | None:
        with store_errors("GetItem charge marker"):
            item: dict[str, Any] | None = self._client.get_item(
                TableName=self._table, Key=_ledger_key(day, f"CHARGE#{hold_id}"), ConsistentRead=True
            ).get("Item")
        return item

    # --- reads ----------------------------------------------------------------------------------

    def _shard_items(self, day: str) -> dict[int, dict[str, Any]]:
        """Every shard item of the day (one Query: they share the partition key)."""
        items: dict[int, dict[str, Any]] = {}
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _day_pk(day)}},
            "ConsistentRead": True,
        }
        while True:
            with store_errors("Query budget shards"):
                page = self._client.query(**request)
            for item in page["Items"]:
                shard = _shard_of(item["sk"]["S"])
                if shard is not None:
                    items[shard] = item
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def read_shard(self, day: str, shard: int) -> BudgetTotals:
        with store_errors("GetItem budget shard"):
            item = self._client.get_item(TableName=self._table, Key=_shard_key(day, shard), ConsistentRead=True).get(
                "Item"
            )
        return totals_from_item(day, item, shard)

    def read_shards(self, day: str) -> dict[int, BudgetTotals]:
        """Each shard of the day that has an item, by number."""
        return {shard: totals_from_item(day, item, shard) for shard, item in self._shard_items(day).items()}

    def read_totals(self, day: str) -> BudgetTotals:
        """The whole day: every shard summed (their holds, orphans and spend curves merged)."""
        return merge_shards(day, list(self.read_shards(day).values()))

    def day_books(self, day: str) -> DayBooks:
        """The day's total and its per-model costs, from the same Query of its shards."""
        items = self._shard_items(day).values()
        models: dict[str, int] = {}
        for item in items:
            for name, value in item.items():
                match = _MODEL_ATTRIBUTE.match(name)
                if match and match.group(1) == "cost":
                    models[match.group(2)] = models.get(match.group(2), 0) + int(value["N"])
        return DayBooks(day, sum(int_value(item, "spent") for item in items), models)

    def model_rows(self, day: str) -> list[LedgerRow]:
        fields: dict[str, dict[str, int]] = {}
        for item in self._shard_items(day).values():
            for name, value in item.items():
                match = _MODEL_ATTRIBUTE.match(name)
                if match:
                    row = fields.setdefault(match.group(2), {})
                    row[match.group(1)] = row.get(match.group(1), 0) + int(value["N"])
        return [_ledger_row(model, row) for model, row in fields.items()]

    # --- alerts ---------------------------------------------------------------------------------

    def mark_alert_sent(self, day: str, threshold: int, budget: int) -> None:
        """Note on the day's first shard that every channel has the ``threshold`` event for ``budget``."""
        self._update_total(
            "UpdateItem alert sent",
            day,
            0,
            UpdateExpression="SET #sent = :budget",
            ExpressionAttributeNames={"#sent": f"alert_{threshold}_sent"},
            ExpressionAttributeValues={":budget": number(budget)},
        )


def _charge_from_marker(marker: dict[str, Any], entry: HoldEntry) -> Charge:
    return Charge(
        entry.user_id,
        marker.get("model", {}).get("S", entry.model),
        TokenUsage(
            int_value(marker, "prompt_tokens"),
            int_value(marker, "completion_tokens"),
            int_value(marker, "embedding_tokens"),
        ),
        int_value(marker, "cost"),
    )


def _row(item: dict[str, Any]) -> LedgerRow:
    name = item["sk"]["S"].split("#", 1)[1]
    counts = {field: int_value(item, field) for field in LEDGER_FIELDS}
    return _ledger_row(name, counts, item.get("email", {}).get("S"))


def _ledger_row(name: str, counts: dict[str, int], email: str | None = None) -> LedgerRow:
    return LedgerRow(
        name,
        requests=counts.get("requests", 0),
        prompt_tokens=counts.get("prompt_tokens", 0),
        completion_tokens=counts.get("completion_tokens", 0),
        embedding_tokens=counts.get("embedding_tokens", 0),
        cost=counts.get("cost", 0),
        email=email,
    )


class DynamoLedgers:
    """Reads of the ledgers: users from their items, models from the day's TOTAL item."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name
        self._budget = DynamoBudgetStore(client, table_name)

    def _users(self, day: str) -> list[LedgerRow]:
        rows: list[LedgerRow] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"LEDGER#{day}"}, ":prefix": {"S": "USER#"}},
            "ConsistentRead": True,  # read right after a settle (usage, the alert's top users)
        }
        while True:
            with store_errors("Query ledgers"):
                page = self._client.query(**request)
            rows.extend(_row(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return rows
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def day_books(self, day: str) -> DayBooks:
        return self._budget.day_books(day)

    def user_costs(self, day: str) -> dict[str, int]:
        """Each user's ledgered cost of the day (the spend export; one paged Query of its partition)."""
        return {row.name: row.cost for row in self._users(day)}

    def top_users(self, day: str, limit: int) -> list[LedgerRow]:
        return sorted(self._users(day), key=lambda row: (-row.cost, row.name))[:limit]

    def all_users(self, day: str) -> list[LedgerRow]:
        return self._users(day)

    def models(self, day: str) -> list[LedgerRow]:
        return sorted(self._budget.model_rows(day), key=lambda row: (-row.cost, row.name))

    def user(self, day: str, user_id: str) -> LedgerRow | None:
        with store_errors("GetItem ledger"):
            item = self._client.get_item(
                TableName=self._table, Key=user_ledger_key(day, user_id), ConsistentRead=True
            ).get("Item")
        return _row(item) if item else None
