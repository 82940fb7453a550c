"""The template is the single source of the table schema and the routes; these read it as the
local stack does, and check the least-privilege promises."""

from infra.local.template import create_table_request, http_routes, load_template, ttl_attribute

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
    assert ("ANY", "/{proxy+}") in routes


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


def test_cors_is_configured_only_in_the_function():
    api = next(r for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::Serverless::HttpApi")

    assert "CorsConfiguration" not in api["Properties"]
