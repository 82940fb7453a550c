"""Every metric the dashboard and the alarms reference is one the code emits: same namespace,
same name, same dimension set and values. A metric that differs in any of them is a graph that
stays silently empty (CloudWatch treats each dimension set as a metric of its own), so this
reads both sides from their sources:

- referenced: template.yaml's dashboard body and every ``AWS::CloudWatch::Alarm`` on our namespace;
- emitted: the names in every ``metrics.add_metric(name=...)`` call of the Lambda code (literals,
  ``a if c else b``, and f-strings whose placeholder the code enumerates: ``exc.code`` over every
  ServiceError's code, ``channel`` over the notifier's CHANNELS), with the namespace and the
  dimensions Powertools really adds (``service``), from the code's own Metrics object run with the
  deployed function's environment (template Globals).
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

import dnd_rag
from dnd_rag import errors
from dnd_rag.handlers.error_responses import STATUS_BY_ERROR, register_error_handlers
from dnd_rag.logic.alerts.notifier import CHANNELS
from dnd_rag.observability import metrics
from infra.local.template import load_template
from tests.support.events import http_event, lambda_context
from tests.support.servers import REPO_ROOT, python_env

CODE = REPO_ROOT / "functions" / "api" / "dnd_rag"
TEMPLATE = load_template()
Metric = tuple[str, str, tuple[tuple[str, str], ...]]  # namespace, name, sorted (dimension, value) pairs


def error_codes() -> set[str]:
    for module in pkgutil.walk_packages(dnd_rag.__path__, "dnd_rag."):
        if not module.name.startswith("dnd_rag.handlers.api"):  # the entry module builds a container
            importlib.import_module(module.name)
    codes, todo = set(), [errors.ServiceError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    return codes


def placeholder_values() -> dict[str, set[str]]:
    return {"exc.code": error_codes(), "channel": set(CHANNELS)}


def _names(node: ast.expr, expansions: dict[str, set[str]], where: str) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _names(node.body, expansions, where) | _names(node.orelse, expansions, where)
    if isinstance(node, ast.JoinedStr):
        names = {""}
        for part in node.values:
            if isinstance(part, ast.Constant):
                names = {name + str(part.value) for name in names}
            else:
                assert isinstance(part, ast.FormattedValue)
                source = ast.unparse(part.value)
                assert source in expansions, f"{where}: cannot enumerate the metric names of {{{source}}}"
                names = {name + value for name in names for value in expansions[source]}
        return names
    raise AssertionError(f"{where}: a metric name this test cannot read: {ast.unparse(node)}")


def emitted_names(code: Path = CODE) -> set[str]:
    expansions = placeholder_values()
    names: set[str] = set()
    for path in sorted(code.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
            # a dimension added anywhere changes the dimension set of every metric of the request
            assert node.func.attr not in ("add_dimension", "single_metric", "set_default_dimensions"), where
            if node.func.attr == "add_metric":
                name = next((k.value for k in node.keywords if k.arg == "name"), node.args[0] if node.args else None)
                assert name is not None, where
                names |= _names(name, expansions, where)
    return names


def emitted_shape() -> tuple[str, dict[str, str]]:
    """Namespace and dimensions of what the code's Metrics object writes, under the deployed environment."""
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    env = {key: value for key, value in python_env().items() if not key.startswith("POWERTOOLS_")}
    env |= {key: variables[key] for key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")}
    probe = (
        "import json; from dnd_rag.observability import metrics; "
        "metrics.add_metric(name='Probe', unit='Count', value=1); print(json.dumps(metrics.serialize_metric_set()))"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    document = json.loads(result.stdout.strip().splitlines()[-1])
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (dimensions,) = directive["Dimensions"]
    return directive["Namespace"], {name: document[name] for name in dimensions}


def emitted() -> set[Metric]:
    namespace, dimensions = emitted_shape()
    return {(namespace, name, tuple(sorted(dimensions.items()))) for name in emitted_names()}


def _dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    body = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{[^}]+\}", "SUBSTITUTED", body))


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)  # an intrinsic (!Ref)


def referenced(template: dict[str, Any], namespace: str) -> set[Metric]:
    """(namespace, name, dimensions) of every metric on ``namespace`` the dashboard or an alarm shows."""
    found: set[Metric] = set()
    for widget in _dashboard_body(template)["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            fields = [field for field in row if not isinstance(field, dict)]  # options and expressions
            if not fields:
                continue
            assert not {"...", "."} & set(fields), f"shorthand rows hide what they reference: {row}"
            ns, name, *pairs = fields
            found.add((ns, name, tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))))
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        stats = [props] + [q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]
        for metric in stats:
            if "MetricName" in metric:
                dims = tuple(sorted((d["Name"], _plain(d["Value"])) for d in metric.get("Dimensions", [])))
                found.add((metric["Namespace"], metric["MetricName"], dims))
    return {metric for metric in found if metric[0] == namespace}


def silent_graphs(template: dict[str, Any], code_metrics: set[Metric]) -> list[Metric]:
    namespaces = {metric[0] for metric in code_metrics}
    assert len(namespaces) == 1
    return sorted(referenced(template, namespaces.pop()) - code_metrics)


@pytest.fixture(scope="module")
def code_metrics() -> set[Metric]:
    return emitted()


def test_the_code_emits_in_the_namespace_and_with_the_dimension_the_template_expects(code_metrics):
    namespace, dimensions = emitted_shape()

    assert namespace == "DndRag"
    assert dimensions == {"service": "dnd_rag"}  # Powertools' default dimension: every graph must name it
    assert ("DndRag", "QueryCostMicroUsd", (("service", "dnd_rag"),)) in code_metrics


def test_every_metric_the_dashboard_and_alarms_reference_is_emitted(code_metrics):
    missing = silent_graphs(TEMPLATE, code_metrics)

    assert referenced(TEMPLATE, "DndRag")
    assert missing == [], "referenced in template.yaml but never emitted by the code (an empty graph): " + ", ".join(
        f"{name} {dict(dims)}" for _, name, dims in missing
    )


@pytest.mark.parametrize(
    ("original", "typo"),
    [
        ('"QueryCostMicroUsd", "service"', '"QueryCostMicroUSD", "service"'),  # the name
        ('"AlertSent_webhook", "service", "dnd_rag"', '"AlertSent_webhook", "Service", "dnd_rag"'),  # a dimension
        ('"BudgetPercentage", "service", "dnd_rag"', '"BudgetPercentage", "service", "dnd-rag"'),  # its value
        ('["DndRag", "PromptTokens"', '["DndRAG", "PromptTokens"'),  # the namespace
    ],
)
def test_a_typo_in_the_dashboard_is_caught(code_metrics, original, typo):
    template = json.loads(json.dumps(TEMPLATE))
    dashboard = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]
    assert original in dashboard["Fn::Sub"]
    dashboard["Fn::Sub"] = dashboard["Fn::Sub"].replace(original, typo)

    before = set(silent_graphs(TEMPLATE, code_metrics))
    after = set(silent_graphs(template, code_metrics)) | (referenced(template, "DndRAG") if "DndRAG" in typo else set())

    assert after - before, f"the checker missed {typo}"


def test_a_typo_in_an_alarm_is_caught(code_metrics):
    template = json.loads(json.dumps(TEMPLATE))
    template["Resources"]["AlertFailuresAlarm"]["Properties"]["MetricName"] = "AlertsFailed"

    assert ("DndRag", "AlertsFailed", (("service", "dnd_rag"),)) in silent_graphs(template, code_metrics)


def test_metric_names_built_from_error_codes_and_channels_are_enumerated(code_metrics):
    names = {name for _, name, _ in code_metrics}

    assert {"Rejected_budget_exceeded", "Rejected_rate_limited", "AlertSent_webhook", "AlertFailed_sns"} <= names
    assert {"TokenCacheHit", "TokenCacheMiss"} <= names  # both arms of a conditional name


DELIBERATE_503 = [
    errors.BudgetExceededError("over", cause="spent", retry_after=60, budget_info={}),
    errors.ServicePausedError("paused", retry_after=60),
    errors.AuthUnavailableError("auth down", retry_after=5),
    errors.StoreUnavailableError("store down", retry_after=1),
]


def answer_metrics(exc: errors.ServiceError) -> tuple[int, dict[str, list[float]]]:
    """The status and the metrics of one request whose route raises ``exc``."""
    app = APIGatewayHttpResolver()
    register_error_handlers(app, {})

    @app.get("/fails")
    def fails() -> None:
        raise exc

    metrics.clear_metrics()
    try:
        response = app.resolve(http_event("GET", "/fails"), lambda_context())
        return response["statusCode"], {name: list(entry["Value"]) for name, entry in metrics.metric_set.items()}
    finally:
        metrics.clear_metrics()


@pytest.mark.parametrize("exc", DELIBERATE_503, ids=lambda exc: exc.code)
def test_each_deliberate_503_counts_once_as_deliberate(exc):
    status, emitted_metrics = answer_metrics(exc)

    assert status == 503
    assert emitted_metrics["Deliberate503"] == [1.0]  # HttpApi5xxAlarm subtracts it from the gateway's 5xx
    assert emitted_metrics[f"Rejected_{exc.code}"] == [1.0]


@pytest.mark.parametrize(
    "exc",
    [errors.UpstreamError("openai down"), errors.ServiceError("a defect"), errors.RateLimitedError("slow down")],
    ids=lambda exc: exc.code,
)
def test_other_errors_are_not_counted_as_deliberate_503s(exc):
    status, emitted_metrics = answer_metrics(exc)

    assert status != 503
    assert "Deliberate503" not in emitted_metrics


def test_the_deliberate_503s_are_exactly_the_spec_s_four():
    # a new error answered 503 would be subtracted from the 5xx alarm: it must be deliberate too
    assert (
        {cls.code for cls, status in STATUS_BY_ERROR.items() if status == 503}
        == {exc.code for exc in DELIBERATE_503}
        == {"budget_exceeded", "service_paused", "auth_unavailable", "service_unavailable"}
    )
