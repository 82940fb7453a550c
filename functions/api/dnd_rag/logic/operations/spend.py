"""The spend export (GET /api/admin/spend): what the books say was spent over a range of UTC days,
per day, per user or per model, in exact nano-dollars.

It reads only the per-day aggregates the money code already keeps (dal/money/budget.py): a day's
budget shards (its total and per-model ledger: one Query of ``BUDGET#<day>``) and, per user, the
day's user ledgers (one paged Query of ``LEDGER#<day>``, sort keys ``USER#``) — never the per-request
``CHARGE`` markers, never a Scan. Each day's rows add up to that day's total once its queries have
settled (a settle writes the user's ledger a moment before the total; a dead request's hold is
reclaimed within ``BUDGET_LEASE_SECONDS``): the report carries both sums, ``total`` and
``books_total``, so a difference is visible rather than hidden. The user ledgers are kept 3 days,
the day's total 403: per user, what a day's total has beyond its ledgers is the row
``UNATTRIBUTED``, so the rows still add up to the days' totals.

User ids are hashed (``hashed_user_id``, as in the logs) unless the operator asks for raw ids with
a reason; that request is audited like an operator action before anything is read.

Pages: rows are ordered (days by date, models by name, users by their hashed id, raw or not, so a
cursor never carries a raw id) and cut at ``limit``; ``next`` is an opaque cursor naming the last
row's key and the query it belongs to. Every page re-reads the range: the totals are always the
whole range's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from dnd_rag.errors import InvalidRequestError
from dnd_rag.logic.common.clock import utc_day
from dnd_rag.logic.operations.ingest_line import INGEST_ROW
from dnd_rag.logic.operations.operator import OperatorService
from dnd_rag.logic.ports import SpendBooks
from dnd_rag.models.domain import User
from dnd_rag.observability import hashed_user_id

MAX_DAYS = 400  # inclusive: from and to both count
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
MAX_REASON_CHARS = 500
RAW_IDS_ACTION = "spend_raw_ids"
# The user row of a day's total no user ledger accounts for: the ledgers are kept 3 days, the day's
# total 403 (dal/money/budget.py). Not a user id: those have no spaces (models/domain.py).
UNATTRIBUTED = "(user ledger expired)"

DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

GroupBy = Literal["day", "user", "model"]


@dataclass(frozen=True)
class SpendQuery:
    start: str  # ``from``, YYYY-MM-DD as sent
    end: str  # ``to``
    group_by: GroupBy = "day"
    raw_ids: bool = False
    reason: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class SpendRow:
    key: str  # the day, the (hashed or raw) user id, or the model
    cost: int  # nano-dollars


@dataclass(frozen=True)
class SpendReport:
    start: str
    end: str
    group_by: GroupBy
    days: int
    rows: list[SpendRow]  # this page
    total: int  # every row of the range (all pages), nano-dollars
    books_total: int  # the days' budget totals, summed: equal to ``total`` once the days have settled
    user_ids: Literal["hashed", "raw"]
    next_cursor: str | None
    audit_id: str | None = None  # the audit entry of a raw-id export


def _invalid(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(
        "Some fields are missing or wrong; see details.",
        details=[{"field": f"query.{field}", "message": message, "type": "value_error"}],
    )


def _date(field: str, value: str) -> date:
    parsed = None
    if DATE_PATTERN.fullmatch(value):  # fromisoformat alone also takes 20261122 and 2026-W47-1
        try:
            parsed = date.fromisoformat(value)
        except ValueError:  # 2026-02-30
            parsed = None
    if parsed is None:
        raise _invalid(field, f"'{field}' must be a calendar date written YYYY-MM-DD (UTC).")
    return parsed


def _days(start: date, end: date) -> Iterator[str]:
    day = start
    while day <= end:
        yield day.isoformat()
        day += timedelta(days=1)


def _fingerprint(query: SpendQuery) -> str:
    scope = f"{query.start}|{query.end}|{query.group_by}|{query.raw_ids}"
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_cursor(after: str, query: SpendQuery) -> str:
    raw = json.dumps({"a": after, "q": _fingerprint(query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, query: SpendQuery) -> str:
    """The sort key of the last row already sent, or 400 if ``cursor`` is not one this query gave."""
    try:
        fields: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        fields = None
    if not isinstance(fields, dict) or not isinstance(fields.get("a"), str):
        raise _invalid("next", "'next' must be the cursor a previous page of this export returned.")
    if fields.get("q") != _fingerprint(query):
        raise _invalid("next", "This cursor belongs to another export (from, to, group_by or raw_ids differ).")
    after: str = fields["a"]
    return after


class SpendExport:
    def __init__(
        self,
        books: SpendBooks,
        clock: Callable[[], float],
        operator: OperatorService,
        hash_id: Callable[[str], str] = hashed_user_id,
    ) -> None:
        self._books = books
        self._clock = clock
        self._operator = operator
        self._hash = hash_id

    def validate(self, query: SpendQuery) -> tuple[date, date]:
        start, end = _date("from", query.start), _date("to", query.end)
        if start > end:
            raise _invalid("to", "'to' must be on or after 'from'.")
        if (end - start).days + 1 > MAX_DAYS:
            raise _invalid("to", f"At most {MAX_DAYS} days, 'from' and 'to' included; split the range.")
        today = utc_day(self._clock())
        if query.end > today:
            raise _invalid("to", f"'to' must not be after today ({today}, UTC).")
        if not 1 <= query.limit <= MAX_LIMIT:
            raise _invalid("limit", f"'limit' must be 1..{MAX_LIMIT}.")
        if query.raw_ids:
            reason = (query.reason or "").strip()
            if not reason or len(reason) > MAX_REASON_CHARS:
                raise _invalid("reason", f"Raw user ids need a 'reason' of 1..{MAX_REASON_CHARS} characters (audited).")
        if query.cursor is not None:
            decode_cursor(query.cursor, query)
        return start, end

    def export(self, who: User, query: SpendQuery, request_id: str) -> SpendReport:
        """The page of the export ``query`` asks for (the caller's role is checked by the admin routes)."""
        start, end = self.validate(query)
        audit_id = None
        if query.raw_ids:  # audited before anything is read: no raw id leaves without its entry
            after = {
                "from": query.start,
                "to": query.end,
                "group_by": query.group_by,
                "reason": (query.reason or "").strip(),
            }
            audit_id = self._operator.record_action(who, RAW_IDS_ACTION, "spend export", after, request_id).id
        days = list(_days(start, end))
        sort_keys, totals, books_total = self._rows(days, query)
        ordered = sorted(totals, key=lambda key: sort_keys[key])
        if query.cursor is not None:
            after_key = decode_cursor(query.cursor, query)
            ordered = [key for key in ordered if sort_keys[key] > after_key]
        page = ordered[: query.limit]
        more = len(ordered) > query.limit
        return SpendReport(
            query.start,
            query.end,
            query.group_by,
            len(days),
            [SpendRow(key, totals[key]) for key in page],
            sum(totals.values()),
            books_total,
            "raw" if query.raw_ids else "hashed",
            encode_cursor(sort_keys[page[-1]], query) if more else None,
            audit_id,
        )

    def _rows(self, days: list[str], query: SpendQuery) -> tuple[dict[str, str], dict[str, int], int]:
        """(each row's sort key, each row's cost, the days' budget totals summed) over ``days``."""
        totals: dict[str, int] = {}
        sort_keys: dict[str, str] = {}
        books_total = 0
        for day in days:
            books = self._books.day_books(day)
            books_total += books.spent
            if query.group_by == "day":
                totals[day], sort_keys[day] = books.spent, day
            elif query.group_by == "model":
                for model, cost in books.models.items():
                    if cost:
                        totals[model] = totals.get(model, 0) + cost
                        sort_keys[model] = model
            else:
                attributed = 0
                for user_id, cost in self._books.user_costs(day).items():
                    if not cost:
                        continue
                    # the ingester's line is no user: never hashed, sorted after the users
                    hashed = "~" + user_id if user_id == INGEST_ROW else self._hash(user_id)
                    key = user_id if query.raw_ids or user_id == INGEST_ROW else hashed
                    totals[key] = totals.get(key, 0) + cost
                    sort_keys[key] = hashed
                    attributed += cost
                if books.spent > attributed:  # the day's user ledgers are gone (kept 3 days)
                    totals[UNATTRIBUTED] = totals.get(UNATTRIBUTED, 0) + books.spent - attributed
                    sort_keys[UNATTRIBUTED] = "~"  # after every hashed id
        return sort_keys, totals, books_total
