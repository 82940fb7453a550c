"""The one Logger and Metrics of the service (structured JSON logs, CloudWatch EMF)."""

from __future__ import annotations

import hashlib
import os
import warnings

from aws_lambda_powertools import Logger, Metrics

from dnd_rag import SERVICE_NAME

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DndRag"))

# Requests such as /health record no metric; that is expected, not worth a warning per container.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def hashed_user_id(user_id: str) -> str:
    """What logs carry instead of a user id: stable for correlation, not reversible at a glance."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]
