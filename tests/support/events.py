"""API Gateway HTTP API (payload 2.0) events and a Lambda context, for in-process handler tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from infra.local.api_server import LambdaContext


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "198.51.100.7",
) -> dict[str, Any]:
    all_headers = {"content-type": "application/json", "user-agent": "pytest"}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "pytest",
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "$default",
            "stage": "$default",
            "accountId": "000000000000",
            "apiId": "test",
            "domainName": "test.local",
            "time": "22/Nov/2026:12:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    if raw_body is not None:
        event["body"] = raw_body
    elif body is not None:
        event["body"] = json.dumps(body)
    return event


def lambda_context() -> LambdaContext:
    return LambdaContext("dnd-rag-test")


def parse(response: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of a handler response."""
    body = json.loads(response["body"]) if response.get("body") else {}
    return int(response["statusCode"]), body, dict(response.get("headers") or {})
