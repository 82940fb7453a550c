"""The template is the single source of the table schema and the routes; these read it as the
local stack does, and check the least-privilege promises."""

import json
import re

import pytest

from dnd_rag.handlers.middlewares import ALLOWED_HEADERS, EXPOSED_HEADERS, PREFLIGHT_MAX_AGE_SECONDS
from dnd_rag.handlers.routes import ROUTE_METHODS
from dnd_rag.logic.money.budget import LEASE_SECONDS
from infra.local.template import (
    create_table_request,
    http_api_properties,
    http_routes,
    load_template,
    resolve,
    ttl_attribute,
)

TEMPLATE = load_template()


def test_table_request_comes_from_the_template():
    request = create_table_request("t", TEMPLATE)

    assert request["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl_attribute(TEMPLATE) == "expires_at"


def test_routes_reach_the_lambda_handler_including_a_catch_all():
    routes = {(r.method, r.path): r.handler for r in http_routes(TEMPLATE)}

    assert routes[("GET", "/health")] == "dnd_rag.handlers.api.lambda_handler"
    assert routes[("POST", "/api/query")] == "dnd_rag.handlers.api.lambda_handler"
    assert ("ANY", "$default") in routes  # `/` and every unknown path or method reach our code


def test_every_route_of_the_function_is_declared_in_the_template():
    routes = {(r.method, r.path) for r in http_routes(TEMPLATE)}

    assert {(method, path) for path, methods in ROUTE_METHODS.items() for method in methods} <= routes


def test_table_has_point_in_time_recovery_and_ttl():
    table = TEMPLATE["Resources"]["RulesChatTable"]["Properties"]

    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"]["Enabled"] is True


def _statements():
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            for policy in resource["Properties"].get("Policies", []):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield from policy["Statement"]


def test_no_wildcard_actions_in_function_policies():
    actions = [a for s in _statements() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]

    assert actions
    assert not [a for a in actions if "*" in a]
    assert "dynamodb:Scan" not in actions


ORIGINS = "https://react.gravitycar.com,https://www.gravitycar.com"


def _cors(origins=ORIGINS):
    """The HttpApi's CorsConfiguration as deployed with CorsOrigins=``origins``."""
    return resolve(http_api_properties(TEMPLATE)["CorsConfiguration"], TEMPLATE, {"CORS_ORIGINS": origins})


def test_cors_is_configured_once_at_the_gateway_and_the_function_writes_none():
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]

    assert _cors()["AllowOrigins"] == ["https://react.gravitycar.com", "https://www.gravitycar.com"]
    assert variables["CORS_ORIGINS"] == {"Ref": "CorsOrigins"}  # prod refuses http origins at cold start
    assert variables["CORS_BY_GATEWAY"] == "true"  # the function's CORSConfig off: no second header


def test_the_gateway_allows_what_the_function_allowed_when_it_owned_cors():
    cors = _cors()

    assert cors["AllowCredentials"] is True
    assert set(cors["AllowHeaders"]) == ALLOWED_HEADERS
    assert (
        set(cors["ExposeHeaders"])
        == EXPOSED_HEADERS
        == {"Retry-After", "X-Request-Id", "X-Next-Cursor", "Content-Disposition"}
    )
    assert cors["MaxAge"] == PREFLIGHT_MAX_AGE_SECONDS
    routes_methods = set().union(*ROUTE_METHODS.values()) | {"OPTIONS"}
    assert set(cors["AllowMethods"]) == routes_methods == {"GET", "POST", "PUT", "DELETE", "OPTIONS"}  # SPEC §3


@pytest.mark.parametrize("origins", ["*", "https://*", "https://*.example.com", "https://app.example.com/", "null"])
def test_no_wildcard_or_path_can_be_an_allowed_origin(origins):
    assert not re.fullmatch(TEMPLATE["Parameters"]["CorsOrigins"]["AllowedPattern"], origins)


def test_without_origins_the_api_has_no_cors_at_all():
    assert re.fullmatch(TEMPLATE["Parameters"]["CorsOrigins"]["AllowedPattern"], "")
    assert _cors("") == {}


def test_the_whole_cors_configuration_is_the_intrinsic_not_allow_origins_alone():
    # SAM turns an intrinsic AllowOrigins into the whole configuration and drops every other
    # property (aws/serverless-application-model#1515): the headers, methods, credentials, max age
    configured = http_api_properties(TEMPLATE)["CorsConfiguration"]

    assert list(configured) == ["Fn::If"]
    condition, if_true, _ = configured["Fn::If"]
    assert TEMPLATE["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CorsOrigins"}, ""]}]}
    assert set(if_true) == {
        "AllowOrigins",
        "AllowMethods",
        "AllowHeaders",
        "ExposeHeaders",
        "AllowCredentials",
        "MaxAge",
    }


def _statement(sid):
    return next(s for s in _statements() if s.get("Sid") == sid)


def test_dynamodb_access_is_limited_to_the_table():
    table_access = _statement("RulesChatTableAccess")

    assert table_access["Resource"] == {"Fn::GetAtt": "RulesChatTable.Arn"}
    assert all(action.startswith("dynamodb:") for action in table_access["Action"])


def test_ses_may_send_only_alert_from_to_alert_email_whichever_identity_ses_checks():
    ses = _statement("SendBudgetAlerts")
    identities = [r["Fn::Sub"] if isinstance(r["Fn::Sub"], str) else r["Fn::Sub"][1]["Domain"] for r in ses["Resource"]]

    assert ses["Action"] == "ses:SendEmail"
    # the sender's address or domain identity, and (SES sandbox) the recipient's address or domain
    assert [i.rsplit(":identity/", 1)[1] if isinstance(i, str) else i for i in identities] == [
        "${AlertFrom}",
        {"Fn::Select": [1, {"Fn::Split": ["@", {"Ref": "AlertFrom"}]}]},
        "${AlertEmail}",
        {"Fn::Select": [1, {"Fn::Split": ["@", {"Ref": "AlertEmail"}]}]},
    ]
    assert ses["Condition"] == {
        "StringEquals": {"ses:FromAddress": {"Ref": "AlertFrom"}},
        "ForAllValues:StringEquals": {"ses:Recipients": [{"Ref": "AlertEmail"}]},
    }


def test_alert_events_are_published_to_exactly_the_configured_topic():
    sns = _statement("PublishAlertEvents")
    topic = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["ALERT_SNS_TOPIC_ARN"]

    assert sns["Action"] == "sns:Publish"
    assert (
        sns["Resource"] == topic == {"Fn::If": ["HasAlertSnsTopic", {"Ref": "AlertSnsTopicArn"}, {"Ref": "AlarmTopic"}]}
    )


def test_secrets_are_read_from_the_named_parameters_only_the_chroma_one_optional():
    ssm = _statement("ReadApiKeys")
    openai, chroma, *_ = ssm["Resource"]

    assert ssm["Action"] == "ssm:GetParameter"
    assert openai["Fn::Sub"].endswith("parameter${OpenAiApiKeyParameter}")
    condition, granted, otherwise = chroma["Fn::If"]
    assert (condition, otherwise) == ("HasChromaApiKey", {"Ref": "AWS::NoValue"})
    assert granted["Fn::Sub"].endswith("parameter${ChromaApiKeyParameter}")
    assert TEMPLATE["Parameters"]["ChromaApiKeyParameter"]["Default"] == ""  # Chroma may run without auth
    assert TEMPLATE["Conditions"]["HasChromaApiKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ChromaApiKeyParameter"}, ""]}]
    }


def test_the_function_knows_its_stage_so_prod_can_insist_on_an_https_auth_api():
    # settings.py refuses AUTH_API_URL without https:// when STAGE is prod (tests/unit/test_settings.py)
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["STAGE"] == {"Ref": "Stage"}


def test_the_day_budget_is_split_over_the_configured_shards():
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["BUDGET_SHARDS"] == {"Ref": "BudgetShards"}
    assert TEMPLATE["Parameters"]["BudgetShards"]["Default"] == 16


def test_preflights_have_a_route_of_their_own_so_scanners_on_the_default_route_cannot_throttle_them():
    # HTTP API throttles per route, and without an OPTIONS route every preflight reaches $default,
    # whose bucket anyone sending requests to unknown paths can empty (issue 19)
    routes = {(r.method, r.path) for r in http_routes(TEMPLATE)}

    assert ("OPTIONS", "/{proxy+}") in routes


def test_routes_are_throttled_at_the_gateway():
    api = next(r for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::Serverless::HttpApi")

    settings = api["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] == {"Ref": "RouteThrottlingBurstLimit"}
    assert settings["ThrottlingRateLimit"] == {"Ref": "RouteThrottlingRateLimit"}


def test_no_secret_value_is_put_in_the_function_environment():
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]

    assert "OPENAI_API_KEY" not in variables
    assert "CHROMA_API_KEY" not in variables
    assert "OPENAI_API_KEY_PARAMETER" in variables
    assert "ALERT_WEBHOOK_URL" not in variables  # webhook URLs carry tokens: SSM, like the keys
    assert variables["ALERT_WEBHOOK_URL_PARAMETER"] == {"Ref": "AlertWebhookUrlParameter"}


def test_a_price_override_is_read_from_its_named_parameter_only_when_one_is_set():
    # pricing.py: the shipped prices unless PricesParameter names an SSM parameter holding a price file
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    granted = [resource["Fn::If"] for resource in _statement("ReadApiKeys")["Resource"] if "Fn::If" in resource]

    assert variables["PRICES_PARAMETER"] == {"Ref": "PricesParameter"}
    assert TEMPLATE["Parameters"]["PricesParameter"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasPricesParameter"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PricesParameter"}, ""]}]
    }
    [(_condition, arn, otherwise)] = [grant for grant in granted if grant[0] == "HasPricesParameter"]
    assert arn["Fn::Sub"].endswith("parameter${PricesParameter}")
    assert otherwise == {"Ref": "AWS::NoValue"}


def test_the_webhook_url_is_read_from_its_named_parameter_when_one_is_set():
    *_, webhook = _statement("ReadApiKeys")["Resource"]

    condition, granted, otherwise = webhook["Fn::If"]
    assert (condition, otherwise) == ("HasAlertWebhook", {"Ref": "AWS::NoValue"})
    assert granted["Fn::Sub"].endswith("parameter${AlertWebhookUrlParameter}")
    assert TEMPLATE["Parameters"]["AlertWebhookUrlParameter"]["Default"] == ""


def test_a_budget_hold_outlives_any_request_so_only_dead_requests_are_charged_as_orphans():
    timeout = load_template()["Globals"]["Function"]["Timeout"]

    assert 2 * timeout <= LEASE_SECONDS  # a live request always settles before its lease ends


def test_the_operator_routes_and_their_refresh_interval_are_declared():
    routes = {(r.method, r.path) for r in http_routes(TEMPLATE)}
    refresh = TEMPLATE["Parameters"]["ControlsRefreshSeconds"]
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]

    assert {
        ("PUT", "/api/admin/budget"),
        ("POST", "/api/admin/pause"),
        ("POST", "/api/admin/resume"),
        ("PUT", "/api/admin/users/{user_id}/block"),
        ("DELETE", "/api/admin/users/{user_id}/block"),
        ("POST", "/api/admin/users/{user_id}/reset"),
        ("GET", "/api/admin/audit"),
        ("GET", "/api/admin/spend"),
        ("GET", "/api/admin/reconciliation"),
    } <= routes
    assert (refresh["Default"], refresh["MaxValue"]) == (4, 5)
    assert variables["CONTROLS_REFRESH_SECONDS"] == {"Ref": "ControlsRefreshSeconds"}


def test_access_logs_go_to_a_vended_logs_group_and_say_why_a_request_failed():
    group = TEMPLATE["Resources"]["HttpApiAccessLogGroup"]["Properties"]
    settings = TEMPLATE["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    fields = json.loads(settings["Format"])

    # /aws/vendedlogs/ keeps the group out of the account's size-limited CloudWatch Logs resource policy
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/vendedlogs/${AWS::StackName}/http-api-access"}
    assert settings["DestinationArn"] == {"Fn::GetAtt": "HttpApiAccessLogGroup.Arn"}
    assert fields["errorMessage"] == "$context.error.message"  # the gateway's own error (throttled, timeout)
    assert fields["integrationErrorMessage"] == "$context.integrationErrorMessage"  # why the Lambda call failed
    assert {"requestId", "status", "routeKey", "integrationLatency"} <= fields.keys()


def _alarm(name):
    return TEMPLATE["Resources"][name]["Properties"]


def test_the_5xx_alarm_leaves_out_the_503s_the_function_answers_on_purpose():
    alarm = _alarm("HttpApi5xxAlarm")
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    returned = [query for query in alarm["Metrics"] if query["ReturnData"]]

    assert "MetricName" not in alarm  # metric math: the alarm watches the one expression returned
    assert returned == [queries["unexpected5xx"]]
    assert queries["unexpected5xx"]["Expression"] == "FILL(gateway5xx, 0) - FILL(deliberate503, 0)"
    assert queries["gateway5xx"]["MetricStat"]["Metric"] == {
        "Namespace": "AWS/ApiGateway",
        "MetricName": "5xx",
        "Dimensions": [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}],
    }
    assert queries["deliberate503"]["MetricStat"]["Metric"]["MetricName"] == "Deliberate503"
    assert {q["MetricStat"]["Period"] for q in alarm["Metrics"] if "MetricStat" in q} == {300}
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_dynamodb_throttling_of_the_table_raises_an_alarm():
    alarm = _alarm("DynamoDbThrottlesAlarm")
    watched = {
        query["MetricStat"]["Metric"]["MetricName"]: query["MetricStat"]["Metric"]
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }
    (returned,) = [query for query in alarm["Metrics"] if query["ReturnData"]]

    assert set(watched) == {"ReadThrottleEvents", "WriteThrottleEvents"}
    for metric in watched.values():
        # published per table (ThrottledRequests would also need the Operation dimension)
        assert metric["Namespace"] == "AWS/DynamoDB"
        assert metric["Dimensions"] == [{"Name": "TableName", "Value": {"Ref": "RulesChatTable"}}]
    assert returned["Expression"] == "FILL(reads, 0) + FILL(writes, 0)"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_a_failed_settle_raises_an_alarm_like_the_other_emf_alarms():
    alarm = _alarm("SettleFailedAlarm")

    # same namespace and dimension as what the code emits (tests/unit/test_metrics_emitted.py)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("DndRag", "SettleFailed")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "dnd_rag"}]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 1)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_sweeper_runs_every_5_minutes_on_the_live_alias_with_its_task_input():
    schedule = TEMPLATE["Resources"]["SweeperSchedule"]
    target = schedule["Properties"]["Target"]

    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Properties"]["FlexibleTimeWindow"] == {"Mode": "OFF"}  # the string, not YAML's False
    assert TEMPLATE["Resources"]["ApiFunction"]["Properties"]["AutoPublishAlias"] == "live"
    assert target["Arn"] == {"Ref": "ApiFunction.Alias"}  # the version the API runs, not $LATEST
    assert json.loads(target["Input"]) == {"dnd_rag_task": "sweep"}
    assert target["RoleArn"] == {"Fn::GetAtt": "SweeperScheduleRole.Arn"}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 300  # never a sweep older than the next


def test_the_sweeper_role_can_do_nothing_but_invoke_the_live_alias():
    role = TEMPLATE["Resources"]["SweeperScheduleRole"]["Properties"]
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]

    assert statement == {
        "Sid": "InvokeLiveAlias",
        "Effect": "Allow",
        "Action": "lambda:InvokeFunction",
        "Resource": {"Ref": "ApiFunction.Alias"},
    }
    assert not {"ManagedPolicyArns", "PermissionsBoundary"} & role.keys()
    # nothing else in the template attaches a policy to it
    attached = [
        name
        for name, resource in TEMPLATE["Resources"].items()
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy")
    ]
    assert attached == []
    # only EventBridge Scheduler, acting for a schedule of this account's default group, assumes it
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"},
            "aws:SourceArn": {
                "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule-group/default"
            },
        }
    }
    assert "GroupName" not in TEMPLATE["Resources"]["SweeperSchedule"]["Properties"]  # the default group


def test_the_only_explicit_role_is_the_sweeper_s():
    # the function's role is SAM's, from its Policies (tests/integration/test_iam_policy.py); a new role
    # needs its own least-privilege test
    roles = [name for name, resource in TEMPLATE["Resources"].items() if resource["Type"] == "AWS::IAM::Role"]

    assert roles == ["SweeperScheduleRole"]


def test_the_reconciliation_runs_hourly_at_a_quarter_past_only_with_an_admin_key_read_only_by_name():
    resources = TEMPLATE["Resources"]
    schedule = resources["ReconciliationSchedule"]
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    granted = [resource["Fn::If"] for resource in _statement("ReadApiKeys")["Resource"] if "Fn::If" in resource]

    # hourly at :15 UTC (so 00:15 too, after the sweeper's 5-minute runs closed yesterday's holds)
    assert schedule["Condition"] == "HasOpenAiAdminKey"
    assert schedule["Properties"]["ScheduleExpression"] == "cron(15 * * * ? *)"
    assert schedule["Properties"]["ScheduleExpressionTimezone"] == "UTC"
    assert json.loads(schedule["Properties"]["Target"]["Input"]) == {"dnd_rag_task": "reconcile"}
    assert schedule["Properties"]["Target"]["Arn"] == {"Ref": "ApiFunction.Alias"}
    # the admin key: a parameter name in the environment, granted only when named
    assert variables["OPENAI_ADMIN_KEY_PARAMETER"] == {"Ref": "OpenAiAdminKeyParameter"}
    assert TEMPLATE["Parameters"]["OpenAiAdminKeyParameter"]["Default"] == ""
    [(_condition, arn, otherwise)] = [grant for grant in granted if grant[0] == "HasOpenAiAdminKey"]
    assert arn["Fn::Sub"].endswith("parameter${OpenAiAdminKeyParameter}")
    assert otherwise == {"Ref": "AWS::NoValue"}
    # the drift alarm watches the metric the job emits, at the tolerance
    alarm = _alarm("ReconciliationDriftAlarm")
    assert (alarm["MetricName"], alarm["Statistic"]) == ("ReconciliationDriftUsd", "Maximum")
    assert alarm["Threshold"] == {"Ref": "ReconciliationToleranceUsd"}
    assert variables["RECONCILIATION_TOLERANCE_USD"] == {"Ref": "ReconciliationToleranceUsd"}
    dashboard = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert "ReconciliationDriftUsd" in dashboard
    assert "ReconciliationSafetyMarginUsd" in dashboard
