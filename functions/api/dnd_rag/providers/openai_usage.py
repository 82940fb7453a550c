"""OpenAI's organization usage and costs API (read-only, admin key), for the reconciliation.

The ``openai`` SDK has no typed client for these endpoints, so this is plain httpx, as the auth API's
client is. Per UTC day: ``GET {base}/organization/usage/completions`` and ``/usage/embeddings``
(``bucket_width=1d``, ``group_by=model``) for tokens and requests, and ``GET {base}/organization/costs``
(``group_by=line_item``) for dollars; each paged with ``page`` = the previous ``next_page`` while
``has_more``. A line item is ``"<model>, input"`` / ``"<model>, cached input"`` / ``"<model>, output"``:
its model is the part before the comma. ``OPENAI_PROJECT_ID`` keeps only that project's records
(an organization's other projects are not on these books).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from dnd_rag.errors import UpstreamError
from dnd_rag.logic.common.clock import day_end
from dnd_rag.logic.operations.reconciliation import BilledDay, ModelUsage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DAY_SECONDS = 86_400
MAX_PAGES = 50  # one day is one bucket: more pages than this means the API is looping
NANOS_PER_USD = Decimal(1_000_000_000)
TIMEOUT_SECONDS = 4.0  # per call: a day's 3 calls fit the scheduled run's time (logic RUN_SECONDS)


def nanos_of(value: Any) -> int:
    """A costs API amount (USD, a JSON number) in whole nano-dollars, rounded half-even; exact for any
    amount the books can hold (the float's shortest repr is read as a decimal)."""
    return int((Decimal(repr(float(value))) * NANOS_PER_USD).to_integral_value())


class OpenAIUsageApi:
    def __init__(
        self,
        admin_key: str,
        base_url: str | None = None,
        project_id: str | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS,
    ) -> None:
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
        self._project_id = project_id
        self._timeout = timeout_seconds

    def billed_day(self, day: str) -> BilledDay:
        end = int(day_end(day))
        window = {"start_time": end - DAY_SECONDS, "end_time": end, "bucket_width": "1d", "limit": 1}
        if self._project_id:
            window["project_ids"] = self._project_id
        usage: dict[str, ModelUsage] = {}
        for kind in ("completions", "embeddings"):
            for result in self._results(f"/organization/usage/{kind}", {**window, "group_by": "model"}):
                model = str(result.get("model") or "(unknown)")
                tokens = ModelUsage(
                    int(result.get("input_tokens") or 0),
                    int(result.get("output_tokens") or 0),
                    int(result.get("num_model_requests") or 0),
                )
                usage[model] = usage.get(model, ModelUsage()) + tokens
        costs: dict[str, int] = {}
        for result in self._results("/organization/costs", {**window, "group_by": "line_item"}):
            amount = result.get("amount") or {}
            if str(amount.get("currency", "usd")).lower() != "usd":
                raise UpstreamError("OpenAI's costs are not in USD.", reason=f"costs currency {amount.get('currency')}")
            model = str(result.get("line_item") or "(unknown)").split(",")[0].strip()
            costs[model] = costs.get(model, 0) + nanos_of(amount.get("value") or 0)
        return BilledDay(usage, costs)

    def _results(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every result of every bucket of every page."""
        results: list[dict[str, Any]] = []
        page: str | None = None
        for _ in range(MAX_PAGES):
            query = {**params, **({"page": page} if page else {})}
            try:
                response = httpx.get(self._base + path, params=query, headers=self._headers, timeout=self._timeout)
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    "OpenAI's usage API is unreachable.", reason=f"{path}: {type(exc).__name__}"
                ) from None
            if response.status_code != 200:
                raise UpstreamError(
                    "OpenAI's usage API refused the request.", reason=f"{path}: HTTP {response.status_code}"
                )
            body = response.json()
            for bucket in body.get("data", []):
                results.extend(bucket.get("results", []))
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                return results
        raise UpstreamError("OpenAI's usage API kept paging.", reason=f"{path}: more than {MAX_PAGES} pages")
