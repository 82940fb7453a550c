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


class DailyLimitExceededError(ServiceError):
    code = "daily_limit_exceeded"


class IpRateLimitedError(ServiceError):
    """Too many failed sign-ins from one address: protects the auth API from token guessing."""

    code = "ip_rate_limited"


class BudgetExceededError(ServiceError):
    """The global daily budget cannot cover this query: the kill switch."""

    code = "budget_exceeded"


class ForbiddenError(ServiceError):
    code = "forbidden"


class AlertDeliveryError(ServiceError):
    """SES could not send an alert (never shown to a caller)."""

    code = "alert_delivery_failed"


class IdempotencyKeyReusedError(ServiceError):
    code = "idempotency_key_reused"


class RequestInProgressError(ServiceError):
    code = "request_in_progress"
