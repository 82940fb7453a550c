"""Reads template.yaml so the local stack and the tests use the deployed definitions, not copies.

The table is created from ``Resources.RulesChatTable.Properties`` and the local API routes from
each function's ``HttpApi`` events, so the schema and the routes cannot drift from the stack.
"""

from __future__ import annotations

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
