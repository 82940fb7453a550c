"""Reads template.yaml so the local stack and the tests use the deployed definitions, not copies.

The table is created from ``Resources.RulesChatTable.Properties``, the local API routes from
each function's ``HttpApi`` events and the local gateway's CORS and throttling from the HttpApi's
properties, so the schema, the routes and the gateway's rules cannot drift from the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
TABLE_LOGICAL_ID = "RulesChatTable"


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (``!Ref``, ``!Sub``...) as plain data."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass


def create_table_request(table_name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """``CreateTable`` arguments for the template's table (intrinsics such as DeletionProtection dropped)."""
    properties = (template or load_template())["Resources"][TABLE_LOGICAL_ID]["Properties"]
    request: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for optional in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if optional in properties:
            request[optional] = properties[optional]
    return request


def ttl_attribute(template: dict[str, Any] | None = None) -> str | None:
    properties = (template or load_template())["Resources"][TABLE_LOGICAL_ID]["Properties"]
    spec = properties.get("TimeToLiveSpecification") or {}
    return spec.get("AttributeName") if spec.get("Enabled") else None


@dataclass(frozen=True)
class HttpRoute:
    method: str  # upper case, or "ANY"
    path: str  # API Gateway syntax: /api/query, /items/{id}, /{proxy+}, or $default (the catch-all)
    handler: str  # module.function
    code_uri: Path


def http_routes(template: dict[str, Any] | None = None) -> list[HttpRoute]:
    template = template or load_template()
    globals_function = template.get("Globals", {}).get("Function", {})
    routes = []
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**globals_function, **resource.get("Properties", {})}
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            event_properties = event.get("Properties", {})
            routes.append(
                HttpRoute(
                    method=str(event_properties.get("Method", "ANY")).upper(),
                    # SAM makes an event without Path and Method the $default route
                    path=str(event_properties.get("Path", "$default")),
                    handler=properties["Handler"],
                    code_uri=(REPO_ROOT / properties["CodeUri"]).resolve(),
                )
            )
    return routes


def http_api_properties(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``Properties`` of the template's ``AWS::Serverless::HttpApi`` (there is one)."""
    template = template or load_template()
    api = next(r for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::HttpApi")
    return dict(api.get("Properties") or {})


def parameter_value(name: str, template: dict[str, Any], env: Mapping[str, str]) -> str:
    """A template parameter's value for the local stack: the function variable that the template
    sets to it (``CORS_ORIGINS: !Ref CorsOrigins``), as the environment has it, else its default.
    The local stack configures the function, so the gateway reads the same value the function does."""
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for variable, value in variables.items():
        if value == {"Ref": name} and variable in env:
            return env[variable]
    return str(template["Parameters"][name].get("Default", ""))


def resolve(value: Any, template: dict[str, Any], env: Mapping[str, str]) -> Any:
    """The intrinsics the local stack reads the HttpApi with (Ref to a parameter, Fn::Split, Fn::If,
    Fn::Equals, Fn::Not and the conditions they name); anything else is returned as it is."""
    if isinstance(value, list):
        return [resolve(item, template, env) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref" and argument in template.get("Parameters", {}):
            return parameter_value(argument, template, env)
        if name == "Fn::Split":
            delimiter, text = resolve(argument, template, env)
            return str(text).split(delimiter)
        if name == "Fn::Equals":
            left, right = resolve(argument, template, env)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not resolve(argument[0], template, env)
        if name == "Condition":
            return bool(resolve(template["Conditions"][argument], template, env))
        if name == "Fn::If":
            condition, if_true, if_false = argument
            chosen = if_true if resolve({"Condition": condition}, template, env) else if_false
            return resolve(chosen, template, env)
    return {key: resolve(item, template, env) for key, item in value.items()}
