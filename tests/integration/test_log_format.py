"""Logs: CloudWatch's JSON and EMF by default, nothing printed or warned for an invocation that
records no metric; LOG_FORMAT=human (make dev) keeps warnings as one short line and drops the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

from dnd_rag.observability import metrics
from tests.support.events import http_event, lambda_context
from tests.support.servers import REPO_ROOT, python_env


def test_an_invocation_that_records_no_metric_prints_nothing_and_warns_nothing(lambda_module, capfd):
    metrics.clear_metrics()  # what tests that call the logic directly left in the process's one Metrics
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Powertools' "No application metrics to publish" would raise

        response = lambda_module.lambda_handler(http_event("GET", "/health"), lambda_context())

    assert response["statusCode"] == 200
    assert capfd.readouterr().out == ""


def test_an_invocation_that_records_metrics_prints_one_emf_document(lambda_module, capfd):
    capfd.readouterr()

    lambda_module.lambda_handler(http_event("GET", "/api/usage"), lambda_context())  # 401: Rejected_missing_token

    documents = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(documents) == 1
    assert "Rejected_missing_token" in documents[0]


HUMAN_PROBE = """
from dnd_rag.observability import logger, metrics, publish_metrics
logger.info("chroma collection ready", extra={"collection": "dnd_rules"})
logger.warning("request rejected", extra={"error": "service_unavailable", "status": 503})
metrics.add_metric(name="Probe", unit="Count", value=1)
publish_metrics()
assert not metrics.metric_set
"""


def test_human_logs_keep_a_warning_as_one_short_line_and_drop_info_and_emf():
    result = subprocess.run(
        [sys.executable, "-c", HUMAN_PROBE],
        cwd=REPO_ROOT,
        env=python_env({"LOG_FORMAT": "human"}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["  warning: request rejected (error=service_unavailable status=503)"]
