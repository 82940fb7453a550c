"""The Lambda entry point (template.yaml: ``dnd_rag.handlers.api.lambda_handler``).

Cold start validates the configuration (a bad variable fails init, naming it) and builds the app;
each invocation only routes.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from dnd_rag.container import Container
from dnd_rag.dal.secrets import with_secrets
from dnd_rag.handlers.middlewares import stamp_headers
from dnd_rag.handlers.routes import create_app
from dnd_rag.handlers.scheduled import is_scheduled_task, run_task
from dnd_rag.init_phase import prepare
from dnd_rag.observability import logger, publish_metrics
from dnd_rag.settings import load_settings

container = Container(load_settings(with_secrets(os.environ)))
prepare(container)  # the providers' SDKs imported during init, not by the first query
app = create_app(container)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_scheduled_task(event):  # EventBridge Scheduler, not API Gateway
        try:
            return run_task(container, event)
        finally:
            publish_metrics()
    try:
        response = app.resolve(event, context)
        settings = container.settings
        stamp_headers(response, event, cors=bool(settings.cors_origins), hsts=settings.stage == "prod")
        return response
    finally:
        publish_metrics()  # what @metrics.log_metrics did, minus its warning when there is nothing
