"""OpenAI's organization usage and costs API, served by the fake OpenAI server from what it billed.

The shapes follow OpenAI's API reference (Usage: "Completions" / "Embeddings", "Costs"; checked
against the reference and OpenAI's cookbook "How to use the Usage API and Cost API"):

- ``GET /v1/organization/usage/completions`` and ``/usage/embeddings``: ``start_time`` (required, unix
  seconds, inclusive), ``end_time`` (exclusive), ``bucket_width`` (``1d`` only here; OpenAI also has
  ``1h``/``1m``), ``group_by`` (``model`` here; repeated or comma-separated), ``models``, ``limit``
  (buckets per page: default 7, at most 31), ``page`` (the previous page's ``next_page``). The page is
  ``{"object": "page", "data": [bucket...], "has_more", "next_page"}``; a bucket is
  ``{"object": "bucket", "start_time", "end_time", "results": [...]}`` with results
  ``organization.usage.completions.result`` (``input_tokens`` cached included, ``input_cached_tokens``,
  ``output_tokens``, ``num_model_requests``, ``model``, ...) or ``organization.usage.embeddings.result``
  (``input_tokens``, ``num_model_requests``, ``model``, ...). Ungrouped fields are ``null``.
- ``GET /v1/organization/costs``: the same paging (``limit`` at most 180), ``bucket_width=1d``,
  ``group_by`` ``line_item`` and/or ``project_id``; results ``organization.costs.result`` with
  ``amount: {"value": <USD float>, "currency": "usd"}``, ``line_item`` (``"<model>, input"``,
  ``"<model>, cached input"``, ``"<model>, output"``) and ``project_id``.

Buckets are UTC days (a record's ``at``, when it was billed); days with no usage are returned as
empty buckets, as OpenAI does. Every call needs ``Authorization: Bearer <admin key>``: a project key
is refused like OpenAI refuses it (401).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dnd_rag.pricing import PriceFile

DEFAULT_ADMIN_KEY = "sk-admin-fake"
PROJECT_ID = "proj_fake"
DAY = 86_400
LIMITS = {"usage": (7, 31), "costs": (7, 180)}  # (default, max) buckets per page at 1d
PER_TOKENS = Decimal(1_000_000)
NANOS = Decimal(1_000_000_000)


def _error(status: int, message: str, code: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _list(values: list[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def _line_items(record: dict[str, Any], prices: PriceFile) -> dict[str, int]:
    """Nano-dollars per line item of one billed record (they add up to its ``cost_nanos``)."""
    model = str(record["model"])
    if str(record["path"]).endswith("/embeddings"):
        return {f"{model}, input": record["cost_nanos"]}
    chat = prices.chat[model]
    cached = int(record.get("cached_tokens") or 0)
    cached_rate = chat.input if chat.cached_input is None else chat.cached_input
    items = {
        f"{model}, input": (record["prompt_tokens"] - cached) * chat.input,
        f"{model}, cached input": cached * cached_rate,
        f"{model}, output": record["completion_tokens"] * chat.output,
    }
    return {name: int(dollars / PER_TOKENS * NANOS) for name, dollars in items.items() if dollars}


def _bucket_results(kind: str, records: list[dict[str, Any]], group: set[str], prices: PriceFile) -> list[dict]:
    sums: dict[tuple[str | None, str | None], dict[str, int]] = {}
    for record in records:
        project = PROJECT_ID if "project_id" in group else None
        if kind == "costs":
            for item, nanos in _line_items(record, prices).items():
                key = (item if "line_item" in group else None, project)
                sums.setdefault(key, {"nanos": 0})["nanos"] += nanos
            continue
        key = (str(record["model"]) if "model" in group else None, project)
        row = sums.setdefault(key, {"input": 0, "cached": 0, "output": 0, "requests": 0})
        row["input"] += record["prompt_tokens"]
        row["cached"] += int(record.get("cached_tokens") or 0)
        row["output"] += record.get("completion_tokens", 0)
        row["requests"] += 1
    results: list[dict[str, Any]] = []
    for (name, project), row in sorted(sums.items(), key=lambda pair: str(pair[0])):
        if kind == "costs":
            value = float(Decimal(row["nanos"]) / NANOS)
            amount = {"value": value, "currency": "usd"}
            result = {"object": "organization.costs.result", "amount": amount, "line_item": name}
            results.append({**result, "project_id": project, "api_key_id": None, "quantity": None})
            continue
        common = {"project_id": project, "user_id": None, "api_key_id": None, "model": name, "batch": None}
        if kind == "completions":
            tokens = {
                "input_tokens": row["input"],
                "input_cached_tokens": row["cached"],
                "output_tokens": row["output"],
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
            }
            results.append({"object": "organization.usage.completions.result", **tokens, **common})
        else:
            results.append({"object": "organization.usage.embeddings.result", "input_tokens": row["input"], **common})
        results[-1]["num_model_requests"] = row["requests"]
    return results


def organization_answer(
    path: str, authorization: str | None, admin_key: str, records: list[dict[str, Any]], prices: PriceFile
) -> tuple[int, dict[str, Any]]:
    """(status, body) of a GET on the organization usage or costs API."""
    if authorization != f"Bearer {admin_key}":
        return _error(401, "Incorrect API key provided. This endpoint requires an admin key.", "invalid_api_key")
    url = urlsplit(path)
    query = parse_qs(url.query)
    if url.path.endswith("/organization/usage/completions"):
        kind, wanted = "completions", "/chat/completions"
    elif url.path.endswith("/organization/usage/embeddings"):
        kind, wanted = "embeddings", "/embeddings"
    elif url.path.endswith("/organization/costs"):
        kind, wanted = "costs", ""
    else:
        return _error(404, "unknown path")
    try:
        start = int(query["start_time"][0])
        end = int(query["end_time"][0]) if "end_time" in query else start + 7 * DAY
        default, most = LIMITS["costs" if kind == "costs" else "usage"]
        limit = int(query.get("limit", [default])[0])
        page = int(query.get("page", ["0"])[0] or 0)
    except (KeyError, ValueError):
        return _error(400, "start_time is required; start_time, end_time, limit and page are integers")
    if query.get("bucket_width", ["1d"])[0] != "1d" or not 1 <= limit <= most or start % DAY or end <= start:
        return _error(400, f"bucket_width 1d only here, limit 1..{most}, start_time at a UTC midnight, end after start")
    group = set(_list(query.get("group_by", []) + query.get("group_by[]", [])))
    allowed = {"line_item", "project_id"} if kind == "costs" else {"model", "project_id"}
    if group - allowed:
        return _error(400, f"group_by must be among {sorted(allowed)} here")
    models = set(_list(query.get("models", []) + query.get("models[]", [])))
    billed = [r for r in records if str(r["path"]).endswith(wanted) or (not wanted and r["path"])]
    if models:
        billed = [r for r in billed if r["model"] in models]
    starts = list(range(start, end, DAY))
    first = page * limit
    buckets = []
    for bucket_start in starts[first : first + limit]:
        inside = [r for r in billed if bucket_start <= r["at"] < bucket_start + DAY]
        buckets.append(
            {
                "object": "bucket",
                "start_time": bucket_start,
                "end_time": bucket_start + DAY,
                "results": _bucket_results(kind, inside, group, prices),
            }
        )
    more = first + limit < len(starts)
    return 200, {"object": "page", "data": buckets, "has_more": more, "next_page": str(page + 1) if more else None}
