"""Domain exceptions. They carry a machine code and a human message, never an HTTP status:
the handler layer maps each class to its status in one place (handlers/error_responses.py)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every expected failure.

    ``message`` and ``context`` are shown to the caller; ``reason`` is for the logs only
    (which dependency failed and how), so internals never reach a response body.
    """

    code = "internal_error"

    def __init__(
        self, message: str, *, retry_after: int | None = None, reason: str | None = None, **context: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.reason = reason
        self.context = context


class MissingTokenError(ServiceError):
    code = "missing_token"


class InvalidTokenError(ServiceError):
    code = "invalid_token"


class AuthUnavailableError(ServiceError):
    """The auth API could not answer: not the caller's fault, so never a 401."""

    code = "auth_unavailable"


class StoreUnavailableError(ServiceError):
    """DynamoDB could not be reached: fail closed, never serve unmetered."""

    code = "service_unavailable"


class UpstreamError(ServiceError):
    """Chroma or OpenAI failed after retries."""

    code = "upstream_error"


class ContentFlaggedError(ServiceError):
    """Content moderation (MODERATION) flagged the question: not answered, nothing paid."""

    code = "content_flagged"


class PayloadTooLargeError(ServiceError):
    code = "payload_too_large"


class InvalidJsonError(ServiceError):
    """The body is not one sound JSON document (encoding, syntax, duplicate keys, limits)."""

    code = "invalid_json"


class InvalidRequestError(ServiceError):
    """A field is wrong in a way the schema alone cannot say (e.g. a configured maximum)."""

    code = "validation_error"


class RateLimitedError(ServiceError):
    code = "rate_limited"


class LimiterContendedError(RateLimitedError):
    """Every attempt of one admission met another writer's change: no verdict on the limit itself
    (a caller that can wait a moment may try again)."""


class DailyLimitExceededError(ServiceError):
    code = "daily_limit_exceeded"


class IpRateLimitedError(ServiceError):
    """Too many failed sign-ins from one address: protects the auth API from token guessing."""

    code = "ip_rate_limited"


class BudgetExceededError(ServiceError):
    """The global daily budget cannot cover this query: the kill switch.

    ``cause`` is the body's ``reason``: ``spent`` (nothing fits until midnight, or until the next
    month when ``period`` is ``month``) or ``in_flight`` (running queries hold the rest; retry shortly)."""

    code = "budget_exceeded"

    def __init__(
        self, message: str, *, cause: str, retry_after: int, budget_info: dict[str, float], period: str = "day"
    ) -> None:
        super().__init__(
            message,
            retry_after=retry_after,
            reason=f"budget {cause}" if period == "day" else f"{period} budget {cause}",
            budget_info=budget_info,
        )
        self.cause = cause
        self.period = period  # "day", or "month" when what the month leaves the day is what refused
        self.context["reason"] = cause
        self.context["period"] = period


class UserBudgetExceededError(ServiceError):
    """The user's own daily dollar cap cannot cover this query.

    ``cause`` is the body's ``reason``: ``spent`` (nothing fits until ``reset_at``, midnight UTC)
    or ``in_flight`` (the user's own running queries hold the rest; retry shortly)."""

    code = "user_budget_exceeded"

    def __init__(self, message: str, *, cause: str, retry_after: int, reset_at: str) -> None:
        super().__init__(
            message,
            retry_after=retry_after,
            reason=f"user budget {cause}",
            rate_info={"retry_after": retry_after, "reset_at": reset_at},
        )
        self.cause = cause
        self.context["reason"] = cause


class TooManyInFlightError(ServiceError):
    """The user already has MAX_IN_FLIGHT_PER_USER queries running."""

    code = "too_many_in_flight"


class ForbiddenError(ServiceError):
    code = "forbidden"


class UserBlockedError(ServiceError):
    """An operator blocked this user's queries (PUT /api/admin/users/{user_id}/block)."""

    code = "user_blocked"


class ServicePausedError(ServiceError):
    """An operator paused the service (POST /api/admin/pause): the kill switch by hand."""

    code = "service_paused"


class AlertDeliveryError(ServiceError):
    """SES could not send an alert (never shown to a caller)."""

    code = "alert_delivery_failed"


class IdempotencyKeyReusedError(ServiceError):
    code = "idempotency_key_reused"


class RequestInProgressError(ServiceError):
    code = "request_in_progress"


class AttemptError(Exception):
    """One call to a paid API (OpenAI) or to Chroma failed; the logic decides whether to retry.

    ``billable``: the call may have reached the provider and may be billed (a timeout or a dropped
    connection after sending, a 5xx), so the books must keep it. ``retryable``: another attempt may
    succeed. ``retry_after``: seconds the provider asked us to wait."""

    def __init__(self, reason: str, *, billable: bool, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.billable = billable
        self.retryable = retryable
        self.retry_after = retry_after
