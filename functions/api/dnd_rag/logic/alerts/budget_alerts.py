"""Budget alerts: the ``budget_threshold`` event at 80 % of the day's budget and at 100 %, once
each per UTC day on every alert channel (logic/alerts/notifier.py), and the e-mail text SES sends.

"100 %" means exhausted: what is spent leaves no shard of the day's budget room for the cheapest
admissible query (the degradation floors), or reaches the budget (the budget decides, it knows
its shards). A query is never answered beyond the budget, so
spending rarely lands on exactly 100 %; and one oversized request that did not fit never counts.

Once every channel has a threshold's event, the day's first shard notes it (``alert_<T>_sent``),
so every later request of every container skips it without a round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from dnd_rag.logic.alerts.month_alerts import month_mail
from dnd_rag.logic.alerts.notifier import Due, Notifier
from dnd_rag.logic.money.budget import percentage
from dnd_rag.logic.operations.forecast import forecast, forecast_data
from dnd_rag.logic.operations.reconciliation import drift_mail
from dnd_rag.logic.ports import AlertStore, LedgerReader, Mailer
from dnd_rag.models.events import Event
from dnd_rag.models.money import EXHAUSTED_PERCENT, WARNING_PERCENT, BudgetTotals
from dnd_rag.observability import logger
from dnd_rag.pricing import usd_for_display

WARNING, EXHAUSTED = WARNING_PERCENT, EXHAUSTED_PERCENT
TOP_USERS = 5


class BudgetAlerts:
    def __init__(
        self,
        store: AlertStore,
        ledgers: LedgerReader,
        notifier: Notifier,
        limit: int | Callable[[str], int],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._ledgers = ledgers
        self._notifier = notifier
        self._limit_of = limit if callable(limit) else (lambda _day: limit)  # a day's effective budget
        self._clock = clock
        self._marked: set[tuple[str, int, int]] = set()  # (day, threshold, budget) noted on the total

    def observe(self, totals: BudgetTotals, exhausted: bool) -> None:
        """Called with every budget state seen; delivers what is due for the totals' own day
        (a late settle of yesterday is judged against yesterday's budget). Never raises."""
        # Once per threshold and day for each budget in force: an operator who raises (or lowers)
        # today's budget is told again when the new one reaches 80 % and runs out.
        day = totals.day
        limit = self._limit_of(day)
        reached = {WARNING: totals.spent >= -(-limit * WARNING // 100), EXHAUSTED: exhausted and totals.spent > 0}
        due = [
            Due("budget_threshold", day, f"{threshold}@{limit}", partial(self._compose, day, threshold, totals, limit))
            for threshold, crossed in reached.items()
            if crossed and totals.alerts_sent.get(threshold) != limit and (day, threshold, limit) not in self._marked
        ]
        if not due:
            return
        settled = self._notifier.emit(*due)
        for item in due:
            if item.id in settled:
                self._mark(day, int(item.key.split("@")[0]), limit)

    def _mark(self, day: str, threshold: int, limit: int) -> None:
        try:
            self._store.mark_alert_sent(day, threshold, limit)
        except Exception:  # the claims still hold: a later request only re-checks them
            logger.exception("budget alert delivered but not noted on the total", extra={"threshold": threshold})
            return
        self._marked.add((day, threshold, limit))

    def _compose(self, day: str, threshold: int, totals: BudgetTotals, limit: int) -> dict[str, Any]:
        """The event's data, from the state that made it due (a conditional write's answer) and
        the budget its key names."""
        spent = totals.spent
        top = self._ledgers.top_users(day, TOP_USERS)
        return {
            "threshold": threshold,
            "period": "day",
            "spent_usd": usd_for_display(spent),
            "budget_usd": usd_for_display(limit),
            "remaining_usd": usd_for_display(max(0, limit - spent)),
            "percentage": percentage(spent, limit),
            "top_users": [
                {"user_id": row.user_id, "cost_usd": usd_for_display(row.cost), "requests": row.requests} for row in top
            ],
            "forecast": forecast_data(forecast(totals.spend_curve, self._clock(), limit, spent)),
        }


def budget_mail(event: Event) -> tuple[str, str]:
    """Subject and text of a ``budget_threshold`` e-mail."""
    data, day = event.data, event.day
    if data.get("period") == "month":
        return month_mail(data, event.id)
    pct = data["percentage"]
    outlook = data["forecast"]
    if outlook["runs_out_at"] is None:
        runway = "at the current rate the budget lasts until midnight UTC"
    else:
        runway = f"at the current rate the budget runs out at {outlook['runs_out_at']}"
    lines = [
        f"Date (UTC): {day}",
        f"Daily budget: ${data['budget_usd']:.6f}",
        f"Spent: ${data['spent_usd']:.6f}",
        f"Remaining: ${data['remaining_usd']:.6f}",
        f"Percentage: {pct:.2f} %",
        f"Burn rate: ${outlook['rate_usd_per_hour']:.6f}/hour; {runway}",
        "",
        f"Top {TOP_USERS} users by cost today:",
        *[
            f"  {n}. {row['user_id']}: ${row['cost_usd']:.6f} ({row['requests']} requests)"
            for n, row in enumerate(data["top_users"], start=1)
        ],
        "",
        f"Event id: {event.id}",
    ]
    if data["threshold"] == WARNING:
        subject = f"[dnd_rag] Warning: {pct:.0f} % of the daily budget used ({day})"
    else:
        subject = f"[dnd_rag] Daily budget exhausted: queries paused until midnight UTC ({day})"
        lines.insert(0, "Queries are refused with 503 budget_exceeded until the budget resets.\n")
    return subject, "\n".join(lines)


class MailChannel:
    """SES e-mail: budget alerts and the reconciliation's drift only (one mail per user's quota would
    flood the inbox; those events go to SNS and the webhook)."""

    name = "ses"

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer
        self.max_seconds = mailer.max_seconds

    def accepts(self, event_type: str) -> bool:
        return event_type in ("budget_threshold", "reconciliation_drift")

    def deliver(self, event: Event) -> None:
        if event.type == "reconciliation_drift":
            subject, body = drift_mail(event)
        else:
            subject, body = budget_mail(event)
        self._mailer.send(subject, body)
