"""Scheduled tasks: events EventBridge Scheduler sends to the function instead of an HTTP request.

``{"dnd_rag_task": "sweep"}`` (template.yaml ``SweeperSchedule``, every 5 minutes; ``make dev``'s
gateway sends the same event on a timer): reclaim the holds of dead requests on yesterday's and
today's budget, so an orphan of a quiet day is charged to its own day, model and user even when no
query comes after it (SPEC §4 "Days end"); then deliver the alert events that requests left
unsettled (logic/alerts/pending.py), so one is delivered even when no request comes after it.

``{"dnd_rag_task": "reconcile"}`` (template.yaml ``ReconciliationSchedule``, hourly at :15, so also at
00:15 UTC; ``make reconcile`` locally): compare each finished UTC day of the last
``RECONCILIATION_LOOKBACK_DAYS`` not yet final with OpenAI's usage and costs records
(logic/operations/reconciliation.py). Without an admin key it does nothing.
"""

from __future__ import annotations

from typing import Any

from dnd_rag.container import Container

TASK_FIELD = "dnd_rag_task"
SWEEP = "sweep"
RECONCILE = "reconcile"


def is_scheduled_task(event: dict[str, Any]) -> bool:
    return TASK_FIELD in event


def run_task(container: Container, event: dict[str, Any]) -> dict[str, Any]:
    """Run the task the event names; an unknown task is an error (it fails the invocation, so the
    scheduler's failure metrics and the function's Errors alarm see it)."""
    task = event.get(TASK_FIELD)
    if task == RECONCILE:
        return reconcile(container)
    if task != SWEEP:
        raise ValueError(f"unknown scheduled task {task!r}")
    outcome: dict[str, Any] = {"task": SWEEP, "holds_left": container.budget.sweep_recent(container.clock())}
    alerts = container.pending_alerts()
    if alerts is not None:
        retried = alerts.retry()
        outcome["alerts"] = {"settled": retried.settled, "pending": retried.left}
    return outcome


def reconcile(container: Container) -> dict[str, Any]:
    """Reconcile the finished days due; what each day came to (nano-dollars)."""
    reconciler = container.reconciler()
    if reconciler is None:
        return {"task": RECONCILE, "skipped": "no OpenAI admin key (OPENAI_ADMIN_KEY / OPENAI_ADMIN_KEY_PARAMETER)"}
    days = [
        {"day": r.day, "books": r.books, "billed": r.billed, "drift": r.drift, "safety_margin": r.safety_margin}
        for r in reconciler.run()
    ]
    return {"task": RECONCILE, "days": days}
