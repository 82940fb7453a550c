"""template.yaml: the runtime, the architecture switch, the local endpoint, the SnapStart switch and
the reserved concurrency."""

import re

from infra.local.template import load_template

TEMPLATE = load_template()
GLOBALS = TEMPLATE["Globals"]["Function"]
PARAMETERS = TEMPLATE["Parameters"]
FUNCTION = TEMPLATE["Resources"]["ApiFunction"]["Properties"]
LAYER = TEMPLATE["Resources"]["DependenciesLayer"]


def test_function_and_layer_are_python_3_13_for_the_chosen_architecture():
    assert GLOBALS["Runtime"] == "python3.13"
    assert GLOBALS["Architectures"] == [{"Ref": "Architecture"}]
    assert LAYER["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert LAYER["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": {"Ref": "Architecture"}}


def test_deployment_defaults_to_arm64_and_local_emulation_may_use_x86_64():
    assert PARAMETERS["Architecture"]["Default"] == "arm64"
    assert set(PARAMETERS["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}


def test_the_local_endpoint_is_declared_and_empty_unless_overridden():
    # sam local passes only declared variables; an empty AWS_ENDPOINT_URL is ignored by botocore
    assert GLOBALS["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == {"Ref": "LocalEndpointUrl"}
    assert PARAMETERS["LocalEndpointUrl"]["Default"] == ""


def test_snapstart_is_off_by_default_and_applies_to_the_published_alias():
    assert PARAMETERS["SnapStart"]["Default"] == "false"
    assert TEMPLATE["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]}
    assert FUNCTION["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
    assert FUNCTION["AutoPublishAlias"] == "live"
    assert FUNCTION["AutoPublishAliasAllProperties"] is True


def test_an_empty_endpoint_variable_leaves_the_sdk_on_aws(monkeypatch):
    # what a deployed function sees: the parameter's empty default
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    assert boto3.client("dynamodb").meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


def test_reserved_concurrency_is_unset_by_default_and_set_on_the_function_when_given():
    parameter = PARAMETERS["ReservedConcurrency"]

    assert parameter["Default"] == ""  # unreserved: the function shares the account's pool
    assert "hold" in parameter["Description"]  # it bounds the holds open on the day's budget item
    assert TEMPLATE["Conditions"]["HasReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, ""]}]
    }
    assert FUNCTION["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


def test_reserved_concurrency_accepts_empty_or_a_positive_count_only():
    pattern = re.compile(PARAMETERS["ReservedConcurrency"]["AllowedPattern"])

    assert [value for value in ("", "1", "50", "1000") if not pattern.fullmatch(value)] == []
    # 0 would throttle every request: a kill switch belongs to the operator routes, not a typo
    assert [value for value in ("0", "-1", "05", "1.5", "ten") if pattern.fullmatch(value)] == []
