"""Domain outcomes as the response bodies and metrics of the HTTP contract."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dnd_rag.logic.common.clock import iso, month_end
from dnd_rag.logic.money.budget import budget_info, percentage
from dnd_rag.logic.operations.forecast import forecast_data, month_forecast_data
from dnd_rag.logic.operations.operator import Change
from dnd_rag.logic.operations.reconciliation import DayReconciliation
from dnd_rag.logic.operations.spend import SpendReport
from dnd_rag.logic.operations.usage import AdminReport, MonthReport, UsageReport
from dnd_rag.logic.ports import LedgerRow
from dnd_rag.logic.query import QueryOutcome
from dnd_rag.models.api import (
    AdminMonthOut,
    AdminUsageResponse,
    AuditOut,
    AuditResponse,
    BucketOut,
    BudgetOut,
    BudgetOverrideOut,
    ControlsOut,
    CostOut,
    DegradedOut,
    ForecastOut,
    MetaOut,
    ModelLedgerOut,
    MonthForecastOut,
    MonthOut,
    MonthOverrideOut,
    OperatorActionResponse,
    PauseOut,
    QueryResponse,
    RateLimitOut,
    ReconciliationDayOut,
    ReconciliationModelOut,
    ReconciliationResponse,
    SourceOut,
    SpendResponse,
    SpendRowOut,
    TodayOut,
    UsageOut,
    UsageResponse,
    UserBudgetOut,
    UserLedgerOut,
)
from dnd_rag.models.controls import AuditEntry, Controls
from dnd_rag.models.domain import User
from dnd_rag.models.money import UserTotals
from dnd_rag.observability import metrics
from dnd_rag.pricing import usd_exact, usd_for_display


def query_response(user: User, outcome: QueryOutcome, budget_limit: int) -> QueryResponse:
    answer, standing = outcome.answer, outcome.admission.standing
    return QueryResponse(
        answer=answer.text,
        sources=[
            SourceOut(
                id=p.id,
                source=p.source,
                score=round(p.score, 4),
                collection=p.collection or None,
                page=p.page,
                section=p.title or None,
            )
            for p in answer.passages
        ],
        diagnostics=answer.diagnostics,
        errors=answer.errors,
        usage=UsageOut(
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            embedding_tokens=answer.usage.embedding_tokens,
            model=answer.model,
        ),
        meta=MetaOut(
            user_id=user.id,
            rate_limit=RateLimitOut(
                remaining_burst=standing.remaining_burst,
                daily_remaining=standing.daily_remaining,
                refill_rate=round(outcome.policy.refill_rate, 6),
            ),
            cost=CostOut(
                query_cost=usd_for_display(answer.cost_nanos),
                daily_total=usd_for_display(outcome.totals.spent) if outcome.totals else None,
                daily_budget=usd_for_display(budget_limit),
                **_user_cost(outcome),
            ),
            cache=outcome.cache,
            degraded=DegradedOut(**outcome.degraded) if outcome.degraded else None,
            answered=answer.answered,
        ),
    )


def usage_response(user: User, report: UsageReport, max_k: int) -> UsageResponse:
    standing, policy = report.standing, report.policy
    return UsageResponse(
        user_id=user.id,
        plan=report.plan,
        max_k=max_k,
        bucket=BucketOut(
            remaining_burst=standing.remaining_burst,
            capacity=policy.capacity,
            refill_rate=round(policy.refill_rate, 6),
            retry_after=standing.retry_after,
        ),
        daily_remaining=standing.daily_remaining,
        daily_limit=policy.daily_limit,
        reset_at=iso(standing.reset_at),
        # requests as the quota counts them (refunds included); tokens and cost from the ledger
        today=TodayOut(**{**_ledger_fields(report.ledger), "requests": standing.daily_count}),
        budget=BudgetOut(**budget_info(report.budget.spent, report.budget_limit)),
        user_budget=_user_budget(report),
        month=MonthOut(**_month_fields(report.month)) if report.month is not None else None,
    )


def _month_fields(month: MonthReport) -> dict[str, Any]:
    return {
        "month": month.month,
        "spent": usd_for_display(month.spent),
        "budget": usd_for_display(month.budget),
        "percentage": percentage(month.spent, month.budget),
        "remaining": usd_for_display(max(0, month.budget - month.spent)),
        "reset_at": iso(month_end(month.month)),
    }


def _admin_month(month: MonthReport | None) -> AdminMonthOut | None:
    if month is None:
        return None
    return AdminMonthOut(
        **_month_fields(month),
        forecast=MonthForecastOut(**month_forecast_data(month.forecast)),
        override=usd_for_display(month.override) if month.override is not None else None,
    )


def _user_cost(outcome: QueryOutcome) -> dict[str, float | None]:
    spend = outcome.user
    if spend is None:
        return {}
    cap = spend.cap
    return {
        "user_daily_total": usd_for_display(spend.spent),
        "user_daily_budget": usd_for_display(cap) if cap is not None else None,
        "user_remaining": usd_for_display(max(0, cap - spend.spent)) if cap is not None else None,
    }


def _user_budget(report: UsageReport) -> UserBudgetOut:
    totals = report.user_budget or UserTotals()
    limits = report.user_limits
    cap = limits.daily_nanos if limits is not None else None
    return UserBudgetOut(
        daily_total=usd_for_display(totals.spent),
        daily_budget=usd_for_display(cap) if cap is not None else None,
        remaining=usd_for_display(max(0, cap - totals.committed)) if cap is not None else None,
        reset_at=iso(report.standing.reset_at),
        in_flight=totals.in_flight,
        max_in_flight=limits.max_in_flight if limits is not None else 0,
    )


def admin_usage_response(report: AdminReport) -> AdminUsageResponse:
    totals = report.budget
    return AdminUsageResponse(
        day=report.day,
        budget=BudgetOut(**budget_info(totals.spent, report.budget_limit)),
        in_flight_reserved=usd_for_display(totals.committed - totals.spent),
        alerts_sent=sorted(totals.alerts_sent),
        forecast=ForecastOut(**forecast_data(report.forecast)),
        models=[ModelLedgerOut(model=row.name, **_ledger_fields(row)) for row in report.models],
        top_users=[UserLedgerOut(user_id=row.name, email=row.email, **_ledger_fields(row)) for row in report.top_users],
        overrides=controls_out(
            report.controls,
            report.budget_limit,
            report.budget_override,
            report.month.budget if report.month is not None else None,
            report.month.override if report.month is not None else None,
        ),
        month=_admin_month(report.month),
    )


def controls_out(
    controls: Controls,
    daily_budget: int,
    override: int | None,
    monthly_budget: int | None = None,
    month_override: int | None = None,
) -> ControlsOut:
    """The controls in force; ``override`` is today's operator budget (None when none applies today),
    ``month_override`` this month's."""
    month = controls.month_override
    paused = controls.paused
    budget = controls.budget_override
    return ControlsOut(
        version=controls.version,
        paused=PauseOut(reason=paused.reason, by=paused.by, at=iso(paused.at)) if paused else None,
        budget_override=(
            BudgetOverrideOut(
                daily_budget_usd=usd_for_display(budget.nanos),
                day=budget.day,
                until=f"{_next_day(budget.day)}T00:00:00Z",
            )
            if budget is not None and override is not None
            else None
        ),
        daily_budget=usd_for_display(daily_budget),
        blocked_users=sorted(controls.blocked),
        month_override=(
            MonthOverrideOut(
                monthly_budget_usd=usd_for_display(month.nanos),
                month=month.month,
                until=iso(month_end(month.month)),
            )
            if month is not None and month_override is not None
            else None
        ),
        monthly_budget=usd_for_display(monthly_budget) if monthly_budget is not None else None,
    )


def audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        at=datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        who=entry.who,
        action=entry.action,
        target=entry.target,
        before=entry.before,
        after=entry.after,
        request_id=entry.request_id,
    )


def operator_response(change: Change) -> OperatorActionResponse:
    return OperatorActionResponse(
        audit=audit_out(change.entry),
        controls=controls_out(
            change.controls, change.daily_budget, change.budget_override, change.monthly_budget, change.month_override
        ),
    )


def audit_response(entries: list[AuditEntry]) -> AuditResponse:
    return AuditResponse(entries=[audit_out(entry) for entry in entries])


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _ledger_fields(row: LedgerRow | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "embedding_tokens": row.embedding_tokens,
        "cost": usd_for_display(row.cost),
    }


def record_query_metrics(outcome: QueryOutcome, budget_limit: int) -> None:
    usage = outcome.answer.usage
    metrics.add_metric(name="Admitted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="QueryCostMicroUsd", unit=MetricUnit.Count, value=outcome.answer.cost_nanos / 1000)
    metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=usage.prompt_tokens)
    metrics.add_metric(name="CompletionTokens", unit=MetricUnit.Count, value=usage.completion_tokens)
    metrics.add_metric(name="EmbeddingTokens", unit=MetricUnit.Count, value=usage.embedding_tokens)
    if outcome.totals is not None:
        metrics.add_metric(
            name="BudgetPercentage", unit=MetricUnit.Percent, value=percentage(outcome.totals.spent, budget_limit)
        )


def spend_response(report: SpendReport) -> SpendResponse:
    return SpendResponse(
        first_day=report.start,
        last_day=report.end,
        days=report.days,
        group_by=report.group_by,
        user_ids=report.user_ids,
        rows=[
            SpendRowOut.model_validate({report.group_by: row.key, "cost_usd": usd_exact(row.cost)})
            for row in report.rows
        ],
        total_cost_usd=usd_exact(report.total),
        books_total_usd=usd_exact(report.books_total),
        next=report.next_cursor,
        audit_id=report.audit_id,
    )


def spend_csv(report: SpendReport) -> str:
    """The page as CSV: a header row (the group key, ``cost_usd``), then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([report.group_by, "cost_usd"])
    writer.writerows([row.key, usd_exact(row.cost)] for row in report.rows)
    return out.getvalue()


def reconciliation_response(start: str, end: str, results: list[DayReconciliation]) -> ReconciliationResponse:
    found = {result.day for result in results}
    first = date.fromisoformat(start)
    span = (date.fromisoformat(end) - first).days + 1
    missing = [day for n in range(span) if (day := (first + timedelta(days=n)).isoformat()) not in found]
    return ReconciliationResponse(
        first_day=start,
        last_day=end,
        days=[
            ReconciliationDayOut(
                day=r.day,
                books_usd=usd_exact(r.books),
                billed_usd=usd_exact(r.billed),
                difference_usd=usd_exact(r.difference),
                drift_usd=usd_exact(r.drift),
                safety_margin_usd=usd_exact(r.safety_margin),
                tolerance_usd=usd_exact(r.tolerance),
                drifting=r.drifting,
                alert_sent=r.alert_sent,
                final=r.final,
                reconciled_at=iso(r.reconciled_at),
                models=[
                    ReconciliationModelOut(
                        model=line.model,
                        books_usd=usd_exact(line.books.cost),
                        billed_usd=usd_exact(line.billed.cost),
                        difference_usd=usd_exact(line.difference),
                        books_input_tokens=line.books.input_tokens,
                        billed_input_tokens=line.billed.input_tokens,
                        books_output_tokens=line.books.output_tokens,
                        billed_output_tokens=line.billed.output_tokens,
                        books_requests=line.books.requests,
                        billed_requests=line.billed.requests,
                    )
                    for line in r.models
                ],
            )
            for r in results
        ],
        not_reconciled=missing,
        drift_usd=usd_exact(sum(r.drift for r in results)),
        safety_margin_usd=usd_exact(sum(r.safety_margin for r in results)),
    )
