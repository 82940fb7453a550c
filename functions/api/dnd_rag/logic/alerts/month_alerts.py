"""Monthly budget alerts: the ``budget_threshold`` event with ``period: "month"`` at 80 % of the
month's budget (MONTHLY_BUDGET_USD or its override) and at 100 %, once each per month on every
alert channel (logic/alerts/notifier.py).

The event's ``day`` is the month (``YYYY-MM``): its id and its delivery claims are the month's, so
the same claim mechanism that makes a day's alert exactly-once makes the month's (the claims are
kept until a few days after the month ends, dal/alerts/event_claims.py). No mark is written on a
budget item: a container that saw the event settled remembers it (the notifier's memory), and a
container new to it pays one claim write per channel, which answers "sent".

"100 %" means what the month leaves today has no room for the cheapest admissible query (the
budget decides, it knows its shards), or the month's spend reached its budget.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from dnd_rag.logic.alerts.notifier import Due, Notifier
from dnd_rag.logic.money.budget import percentage
from dnd_rag.logic.operations.forecast import month_forecast, month_forecast_data
from dnd_rag.models.events import EventType, event_id
from dnd_rag.models.money import EXHAUSTED_PERCENT, WARNING_PERCENT, BudgetTotals
from dnd_rag.pricing import usd_for_display

EVENT_TYPE: EventType = "budget_threshold"


def month_key(threshold: int, budget: int) -> str:
    """Once per threshold and month for each budget in force (an operator's new month budget is told again)."""
    return f"month:{threshold}@{budget}"


class MonthAlerts:
    def __init__(self, notifier: Notifier, clock: Callable[[], float]) -> None:
        self._notifier = notifier
        self._clock = clock

    def pending(self, month: str, budget: int) -> tuple[int, ...]:
        """The thresholds this container does not know delivered everywhere (no round trip)."""
        return tuple(
            threshold
            for threshold in (WARNING_PERCENT, EXHAUSTED_PERCENT)
            if not self._notifier.settled(event_id(EVENT_TYPE, month, month_key(threshold, budget)))
        )

    def observe(self, day: BudgetTotals, month: str, spent: int, budget: int, exhausted: bool) -> None:
        """Delivers what is due for ``month`` (``spent``: its spend so far, ``day`` the day seen). Never raises."""
        reached = {
            WARNING_PERCENT: spent >= -(-budget * WARNING_PERCENT // 100),
            EXHAUSTED_PERCENT: spent >= budget or (exhausted and spent > 0),
        }
        due = [
            Due(
                EVENT_TYPE,
                month,
                month_key(threshold, budget),
                partial(self._compose, month, threshold, day, spent, budget),
            )
            for threshold, crossed in reached.items()
            if crossed and threshold in self.pending(month, budget)
        ]
        if due:
            self._notifier.emit(*due)

    def _compose(self, month: str, threshold: int, day: BudgetTotals, spent: int, budget: int) -> dict[str, Any]:
        outlook = month_forecast(day.spend_curve, self._clock(), budget, spent)
        return {
            "threshold": threshold,
            "period": "month",
            "month": month,
            "spent_usd": usd_for_display(spent),
            "budget_usd": usd_for_display(budget),
            "remaining_usd": usd_for_display(max(0, budget - spent)),
            "percentage": percentage(spent, budget),
            "top_users": [],  # per-user books are kept 3 days: a month's top users are not known
            "forecast": month_forecast_data(outlook),
        }


def month_mail(data: dict[str, Any], event_id_: str) -> tuple[str, str]:
    """Subject and text of a monthly ``budget_threshold`` e-mail."""
    month, pct, outlook = data["month"], data["percentage"], data["forecast"]
    if outlook["runs_out_at"] is None:
        runway = "at the current rate the budget lasts until the month ends"
    else:
        runway = f"at the current rate the budget runs out at {outlook['runs_out_at']}"
    lines = [
        f"Month (UTC): {month}",
        f"Monthly budget: ${data['budget_usd']:.6f}",
        f"Spent: ${data['spent_usd']:.6f}",
        f"Remaining: ${data['remaining_usd']:.6f}",
        f"Percentage: {pct:.2f} %",
        f"Burn rate: ${outlook['rate_usd_per_hour']:.6f}/hour; {runway}",
        "",
        f"Event id: {event_id_}",
    ]
    if data["threshold"] == WARNING_PERCENT:
        return f"[dnd_rag] Warning: {pct:.0f} % of the monthly budget used ({month})", "\n".join(lines)
    lines.insert(0, "Queries are refused with 503 budget_exceeded (period: month) until the month ends.\n")
    return f"[dnd_rag] Monthly budget exhausted: queries paused until the next month ({month})", "\n".join(lines)
