"""Reconciliation with OpenAI's own records (SPEC §4 "Reconciliation"): for each finished UTC day,
the books (what we charged, per model) against what OpenAI's organization usage and costs API says
it billed, as ``books - billed`` in exact nano-dollars and in tokens.

- **Drift**: the books below what was billed, beyond ``RECONCILIATION_TOLERANCE_USD``: a pricing
  mistake, a billing rule we do not know, a call that escaped the books. It raises the
  ``reconciliation_drift`` alert once per day on every channel, a metric and (template.yaml) an alarm.
- **Safety margin**: the books above what was billed: what certainty costs (an orphan charged in
  full, an attempt that timed out charged at its bound, a hold OpenAI never billed).

The books keep one ledger per *chat* model, its embeddings included (a query's charge carries both),
with the embedding tokens counted apart; so a row's embedding share is its embedding tokens at the
embedding model's price, and the rest is the chat model's. The verdict (drift, margin, the alert) is
the day's, not a model's: an attempt charged at its bound has no tokens to place, so a per-model line
may show one model above and another below while the day is right. Per model the report shows both
sides and their differences. What OpenAI billed comes from its costs API (its dollars, not our prices
applied to its tokens: a wrong price in our file must show), its tokens from the usage API.

A day is reconciled again on every run until ``SETTLE_SECONDS`` after it ended (OpenAI's records of a
day fill in over hours); then it is final. A call that crossed midnight is on the books of the day its
hold was opened and in OpenAI's records of the day it was billed: a few queries' worth, a margin on
one day and a drift on the next, which the tolerance is there to absorb.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.logic.alerts.notifier import Due, Notifier
from dnd_rag.logic.common.clock import day_end, utc_day
from dnd_rag.logic.operations.spend import MAX_DAYS
from dnd_rag.logic.operations.spend import _date as parse_date
from dnd_rag.logic.operations.spend import _invalid as invalid_query
from dnd_rag.logic.ports import LedgerRow
from dnd_rag.models.events import Event
from dnd_rag.observability import logger, metrics
from dnd_rag.pricing import nanos_to_usd, usd_for_display

SETTLE_SECONDS = 48 * 3600  # a day is reconciled again on every run until then
DEFAULT_LOOKBACK_DAYS = 7  # finished days a run looks at: any of them never reconciled is done then
# A run starts no day after this many seconds; a day is 3 calls to OpenAI of at most
# providers/openai_usage.py's TIMEOUT_SECONDS each (plus pages): the run ends inside the Lambda's 29 s.
RUN_SECONDS = 12.0
DRIFT_KEY = "drift"  # one reconciliation_drift event per day, whatever its amount
_SNAPSHOT = re.compile(r"^(.+)-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-2024-07-18 -> gpt-4o-mini


def base_model(name: str) -> str:
    """The model a dated snapshot name belongs to (OpenAI's records name the snapshot served)."""
    match = _SNAPSHOT.match(name)
    return match.group(1) if match else name


@dataclass(frozen=True)
class ModelUsage:
    """One model's usage of one day, on one side (books or OpenAI's records)."""

    input_tokens: int = 0  # cached included (prompt tokens; an embedding's input)
    output_tokens: int = 0
    requests: int = 0
    cost: int = 0  # nano-dollars

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.requests + other.requests,
            self.cost + other.cost,
        )


@dataclass(frozen=True)
class ModelLine:
    model: str
    books: ModelUsage
    billed: ModelUsage

    @property
    def difference(self) -> int:
        """books - billed, nano-dollars."""
        return self.books.cost - self.billed.cost


@dataclass(frozen=True)
class DayReconciliation:
    day: str
    models: list[ModelLine]
    books: int  # the day's total on the books, nano-dollars (every model, orphans included)
    billed: int  # what OpenAI's costs API says it billed for the day
    tolerance: int
    reconciled_at: float
    alert_sent: bool = False
    final: bool = False

    @property
    def difference(self) -> int:
        return self.books - self.billed

    @property
    def drift(self) -> int:
        """How far the books are below what was billed (0 when they are not)."""
        return max(0, -self.difference)

    @property
    def safety_margin(self) -> int:
        return max(0, self.difference)

    @property
    def drifting(self) -> bool:
        return self.drift > self.tolerance


@dataclass(frozen=True)
class BilledDay:
    """OpenAI's records of one UTC day: tokens from the usage API, dollars from the costs API."""

    usage: dict[str, ModelUsage] = field(default_factory=dict)  # model -> tokens and requests (cost 0)
    costs: dict[str, int] = field(default_factory=dict)  # model -> nano-dollars (line items summed)


class ModelBooks(Protocol):
    def models(self, day: str) -> list[LedgerRow]:
        """The day's per-model ledger (dal/money/budget.py)."""
        ...


class BillingRecords(Protocol):
    def billed_day(self, day: str) -> BilledDay:
        """What OpenAI's organization usage and costs API report for ``day`` (raises UpstreamError)."""
        ...


class ReconciliationStore(Protocol):
    def put(self, result: DayReconciliation) -> None: ...

    def get(self, day: str) -> DayReconciliation | None: ...

    def between(self, start: str, end: str) -> list[DayReconciliation]:
        """The stored results of ``start``..``end`` (inclusive), by day."""
        ...


def books_by_model(
    rows: list[LedgerRow], embedding_model: str, embedding_nanos_per_token: int
) -> dict[str, ModelUsage]:
    """The books of a day per model actually called: each ledger row's embedding tokens (and their
    cost at the embedding price) moved to the embedding model, the rest left on the row's model."""
    books: dict[str, ModelUsage] = {}
    for row in rows:
        embedding_cost = min(row.cost, row.embedding_tokens * embedding_nanos_per_token) if row.cost > 0 else 0
        if row.name == embedding_model:  # a row of the embedding model itself (the ingester's line)
            embedding_cost = row.cost
        if row.embedding_tokens or row.name == embedding_model:
            # a chat row's requests are queries, not embeddings calls; the ingester's are calls
            calls = row.requests if row.name == embedding_model else 0
            moved = ModelUsage(row.embedding_tokens, 0, calls, embedding_cost)
            books[embedding_model] = books.get(embedding_model, ModelUsage()) + moved
        if row.name != embedding_model and (row.prompt_tokens or row.completion_tokens or row.cost - embedding_cost):
            chat = ModelUsage(row.prompt_tokens, row.completion_tokens, row.requests, row.cost - embedding_cost)
            books[row.name] = books.get(row.name, ModelUsage()) + chat
    return books


def reconcile_day(
    day: str, books: dict[str, ModelUsage], billed: BilledDay, tolerance: int, now: float
) -> DayReconciliation:
    """The day's result: per model both sides, and the day's totals (pure)."""
    usage = {base_model(name): ModelUsage() for name in billed.usage}
    for name, tokens in billed.usage.items():
        usage[base_model(name)] += tokens
    for name, cost in billed.costs.items():
        usage[base_model(name)] = usage.get(base_model(name), ModelUsage()) + ModelUsage(cost=cost)
    lines = [
        ModelLine(model, books.get(model, ModelUsage()), usage.get(model, ModelUsage()))
        for model in sorted(set(books) | set(usage))
    ]
    return DayReconciliation(
        day,
        lines,
        books=sum(line.books.cost for line in lines),
        billed=sum(line.billed.cost for line in lines),
        tolerance=tolerance,
        reconciled_at=now,
        final=now >= day_end(day) + SETTLE_SECONDS,
    )


def finished_days(now: float, lookback_days: int) -> list[str]:
    """Yesterday and the ``lookback_days - 1`` days before it, oldest first."""
    today = date.fromisoformat(utc_day(now))
    return [(today - timedelta(days=n)).isoformat() for n in range(lookback_days, 0, -1)]


class Reconciler:
    """The scheduled job: reconcile each finished day not yet final, store it, report, alert."""

    def __init__(
        self,
        books: ModelBooks,
        records: BillingRecords,
        store: ReconciliationStore,
        clock: Callable[[], float],
        embedding_model: str,
        embedding_nanos_per_token: int,
        tolerance: int,
        lookback_days: int = DEFAULT_LOOKBACK_DAYS,
        notifier: Notifier | None = None,
    ) -> None:
        self._books = books
        self._records = records
        self._store = store
        self._clock = clock
        self._embedding_model = embedding_model
        self._embedding_price = embedding_nanos_per_token
        self._tolerance = tolerance
        self._lookback_days = lookback_days
        self._notifier = notifier

    def due_days(self, now: float) -> list[str]:
        """The finished days of the lookback that have no final result yet."""
        return [day for day in finished_days(now, self._lookback_days) if not self._is_final(day)]

    def _is_final(self, day: str) -> bool:
        stored = self._store.get(day)
        return stored is not None and stored.final and (stored.alert_sent or not stored.drifting)

    def run(self, budget_seconds: float = RUN_SECONDS) -> list[DayReconciliation]:
        """Reconcile the due days, oldest first, starting none after ``budget_seconds``: the job runs
        in the API function (29 s); days left over are done by the next hourly run."""
        started = time.monotonic()
        results = []
        for day in self.due_days(self._clock()):
            if time.monotonic() - started > budget_seconds:
                logger.warning("reconciliation: out of time, the next run goes on", extra={"day": day})
                break
            results.append(self.reconcile(day))
        return results

    def preview(self, day: str) -> DayReconciliation:
        """The day so far (today, usually), compared as the job would, but neither stored nor
        alerted on nor sent as a metric: a day still running has queries between their paid call
        and their settle, so only a finished day gets a verdict that counts."""
        return self._compare(day, self._clock())

    def _compare(self, day: str, now: float) -> DayReconciliation:
        books = books_by_model(self._books.models(day), self._embedding_model, self._embedding_price)
        return reconcile_day(day, books, self._records.billed_day(day), self._tolerance, now)

    def reconcile(self, day: str) -> DayReconciliation:
        """Reconcile one finished day now, store the result, report it and alert on drift."""
        now = self._clock()
        if now < day_end(day):
            raise ValueError(f"{day} has not ended yet (UTC): only finished days are reconciled")
        result = self._compare(day, now)
        stored = self._store.get(day)
        result = replace(result, alert_sent=stored is not None and stored.alert_sent)
        if result.drifting and not result.alert_sent:
            result = replace(result, alert_sent=self._alert(result))
        self._store.put(result)
        # EMF, one value per day reconciled: the drift alarm and the dashboard (template.yaml)
        metrics.add_metric(
            name="ReconciliationDriftUsd", unit=MetricUnit.NoUnit, value=float(nanos_to_usd(result.drift))
        )
        metrics.add_metric(
            name="ReconciliationSafetyMarginUsd",
            unit=MetricUnit.NoUnit,
            value=float(nanos_to_usd(result.safety_margin)),
        )
        logger.info(
            "reconciled",
            extra={"day": day, "books": result.books, "billed": result.billed, "difference": result.difference},
        )
        return result

    def _alert(self, result: DayReconciliation) -> bool:
        """Deliver ``reconciliation_drift`` once on every channel; True once every channel has it."""
        if self._notifier is None or not self._notifier.enabled:
            return False
        due = Due("reconciliation_drift", result.day, DRIFT_KEY, lambda: drift_data(result))
        return due.id in self._notifier.emit(due)


def drift_data(result: DayReconciliation) -> dict[str, Any]:
    """The ``reconciliation_drift`` event's data (USD rounded as in the API)."""
    return {
        "books_usd": usd_for_display(result.books),
        "billed_usd": usd_for_display(result.billed),
        "drift_usd": usd_for_display(result.drift),
        "tolerance_usd": usd_for_display(result.tolerance),
        "models": [
            {
                "model": line.model,
                "books_usd": usd_for_display(line.books.cost),
                "billed_usd": usd_for_display(line.billed.cost),
                "difference_usd": usd_for_display(line.difference),
            }
            for line in result.models
        ],
    }


class ReconciliationResults:
    """GET /api/admin/reconciliation: the stored results of a range of days (validated like the
    spend export's range: dates YYYY-MM-DD, ``from`` <= ``to`` <= today, at most MAX_DAYS)."""

    def __init__(self, store: ReconciliationStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def between(self, start: str, end: str) -> list[DayReconciliation]:
        first, last = parse_date("from", start), parse_date("to", end)
        if first > last:
            raise invalid_query("to", "'to' must be on or after 'from'.")
        if (last - first).days + 1 > MAX_DAYS:
            raise invalid_query("to", f"At most {MAX_DAYS} days, 'from' and 'to' included; split the range.")
        today = utc_day(self._clock())
        if end > today:
            raise invalid_query("to", f"'to' must not be after today ({today}, UTC).")
        return self._store.between(start, end)


def drift_mail(event: Event) -> tuple[str, str]:
    """Subject and text of a ``reconciliation_drift`` e-mail."""
    data, day = event.data, event.day
    lines = [
        f"Date (UTC): {day}",
        f"Our books: ${data['books_usd']:.6f}",
        f"OpenAI billed: ${data['billed_usd']:.6f}",
        f"Books below the bill by: ${data['drift_usd']:.6f} (tolerance ${data['tolerance_usd']:.6f})",
        "",
        "Per model (books, billed, difference):",
        *[
            f"  {row['model']}: ${row['books_usd']:.6f}, ${row['billed_usd']:.6f}, ${row['difference_usd']:.6f}"
            for row in data["models"]
        ],
        "",
        "Check the price file against OpenAI's pricing page; GET /api/admin/reconciliation has the details.",
        f"Event id: {event.id}",
    ]
    return f"[dnd_rag] Books below OpenAI's bill by ${data['drift_usd']:.2f} ({day})", "\n".join(lines)
