"""Budget alert e-mails: one at 80 % of the day's budget, one at 100 %, once each per UTC day.

"100 %" means exhausted: what is spent leaves no room for the cheapest admissible query (the
degradation floors), or reaches the budget. A query is never answered beyond the budget, so
spending rarely lands on exactly 100 %; and one oversized request that did not fit never counts.

The store arbitrates: a claim is a conditional write that only one container can win (and only
while the threshold is really crossed); the winner sends, then marks the alert sent. If sending
fails the claim is dropped, so a later request tries again; a claim whose holder died expires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnd_rag.errors import AlertDeliveryError
from dnd_rag.logic.budget import percentage
from dnd_rag.logic.ports import AlertStore, LedgerReader, Mailer
from dnd_rag.models.money import BudgetTotals
from dnd_rag.observability import logger, metrics
from dnd_rag.pricing import nanos_to_usd

WARNING, EXHAUSTED = 80, 100
CLAIM_SECONDS = 60
TOP_USERS = 5


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str


class BudgetAlerts:
    def __init__(
        self,
        store: AlertStore,
        ledgers: LedgerReader,
        mailer: Mailer,
        limit: int | Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._ledgers = ledgers
        self._mailer = mailer
        self._limit_of = limit if callable(limit) else (lambda: limit)  # today's effective budget
        self._clock = clock

    @property
    def _limit(self) -> int:
        return self._limit_of()

    def observe(self, day: str, totals: BudgetTotals, smallest_query: int | None) -> None:
        """Called with every budget state seen; sends what is due. Never raises."""
        # the least spend at which each threshold counts as crossed, atomically re-checked by the claim
        exhausted_at = self._limit if smallest_query is None else self._limit - smallest_query + 1
        thresholds = {WARNING: -(-self._limit * WARNING // 100), EXHAUSTED: max(exhausted_at, 1)}
        for threshold, minimum_spent in thresholds.items():
            if threshold in totals.alerts_sent or totals.spent < minimum_spent:
                continue
            try:
                self._send_once(day, threshold, minimum_spent)
            except Exception:  # an alert must never fail the query
                logger.exception("budget alert failed", extra={"threshold": threshold})

    def _send_once(self, day: str, threshold: int, minimum_spent: int) -> None:
        now = self._clock()
        if not self._store.claim_alert(day, threshold, now, now + CLAIM_SECONDS, minimum_spent):
            return  # sent already, or another container is sending it right now
        alert = self._compose(day, threshold)
        try:
            self._mailer.send(alert.subject, alert.body)
        except AlertDeliveryError as exc:
            self._store.drop_alert_claim(day, threshold)
            metrics.add_metric(name="AlertFailed", unit="Count", value=1)
            logger.warning(
                "budget alert not delivered; will retry", extra={"threshold": threshold, "reason": exc.reason}
            )
            return
        self._store.mark_alert_sent(day, threshold, now)
        metrics.add_metric(name="AlertSent", unit="Count", value=1)
        logger.info("budget alert sent", extra={"threshold": threshold, "day": day})

    def _compose(self, day: str, threshold: int) -> Alert:
        totals = self._store.read_totals(day)
        spent, limit = totals.spent, self._limit
        top = self._ledgers.top_users(day, TOP_USERS)
        lines = [
            f"Date (UTC): {day}",
            f"Daily budget: ${nanos_to_usd(limit):.6f}",
            f"Spent: ${nanos_to_usd(spent):.6f}",
            f"Remaining: ${nanos_to_usd(max(0, limit - spent)):.6f}",
            f"Percentage: {percentage(spent, limit):.2f} %",
            "",
            f"Top {TOP_USERS} users by cost today:",
            *[
                f"  {n}. {row.user_id}: ${nanos_to_usd(row.cost):.6f} ({row.requests} requests)"
                for n, row in enumerate(top, start=1)
            ],
        ]
        if threshold == WARNING:
            subject = f"[dnd_rag] Warning: {percentage(spent, limit):.0f} % of the daily budget used ({day})"
        else:
            subject = f"[dnd_rag] Daily budget exhausted: queries paused until midnight UTC ({day})"
            lines.insert(0, "Queries are refused with 503 budget_exceeded until the budget resets.\n")
        return Alert(subject, "\n".join(lines))
