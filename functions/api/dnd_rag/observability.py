"""The one Logger and Metrics of the service (structured JSON logs, CloudWatch EMF).

``LOG_FORMAT=json`` (the default, and the only value allowed in prod) is what CloudWatch reads:
a JSON line per log record and an EMF document per invocation that recorded metrics. ``make dev``
sets ``LOG_FORMAT=human`` for a terminal a person reads: the gateway prints one line per request,
the function only its warnings and errors, one short line each, and its metrics are dropped.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from dnd_rag import SERVICE_NAME

HUMAN = os.environ.get("LOG_FORMAT", "json").strip().lower() == "human"

# What every record carries (the Lambda context, the correlation id): the human line leaves it out.
_CONTEXT_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "sampling_rate",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "exception",
        "exception_name",
        "exception_notes",
        "stack_trace",
    }
)


class HumanFormatter(LambdaPowertoolsFormatter):
    """``  warning: request rejected (error=service_unavailable status=503)``, then any traceback."""

    def serialize(self, log: Any) -> str:
        fields = " ".join(f"{key}={value}" for key, value in log.items() if key not in _CONTEXT_KEYS)
        line = f"  {str(log.get('level', '')).lower()}: {log.get('message', '')}" + (f" ({fields})" if fields else "")
        if log.get("exception"):
            line += "\n" + "\n".join(f"    {text}" for text in str(log["exception"]).splitlines())
        return line


def _logger() -> Logger:
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME)
    if not HUMAN:
        return Logger(service=service)
    level = os.environ.get("POWERTOOLS_LOG_LEVEL") or "WARNING"
    return Logger(service=service, level=level, logger_formatter=HumanFormatter())


logger = _logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DndRag"))


def publish_metrics() -> None:
    """End of an invocation: one EMF document with what it recorded. An invocation that recorded
    nothing (``/health``, a 404) prints nothing, without Powertools' "No application metrics to
    publish" warning; with ``LOG_FORMAT=human`` the metrics are dropped, not printed."""
    if not metrics.metric_set:
        return
    if HUMAN:
        metrics.clear_metrics()
    else:
        metrics.flush_metrics()


def hashed_user_id(user_id: str) -> str:
    """What logs carry instead of a user id: stable for correlation, not reversible at a glance."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]
