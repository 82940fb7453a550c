"""``make dev``'s terminal (LOG_FORMAT=human): one line per request, and a summary at the end.

    POST /api/query 200 alice 48 ms cache=miss $0.00034
    POST /api/query 429 bob 6 ms rate_limited
    GET /api/usage 200 u:3f9a1c2e 11 ms

The user is the dev user's name (``dev-alice`` -> alice) or a short hash of the user id the
answer names, never a token; ``-`` when the answer names nobody. Cache and cost come from the
answer's ``meta``, the error code from its body.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from typing import Any

from infra.local.auth_server import DEV_USERS

_NAMES_BY_ID = {user["id"]: user["email"].partition("@")[0] for user in DEV_USERS.values()}
_NAMES_BY_TOKEN = {token: user["email"].partition("@")[0] for token, user in DEV_USERS.items()}


def user_label(user_id: str) -> str:
    return _NAMES_BY_ID.get(user_id) or f"u:{hashlib.sha256(user_id.encode()).hexdigest()[:8]}"


def usd(amount: float) -> str:
    text = f"{amount:.6f}".rstrip("0").rstrip(".")
    return f"${text}" if text != "0" or amount == 0 else "<$0.000001"


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body[:1] == b"{" else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def access_line(
    method: str, path: str, status: int, millis: float, headers: dict[str, str], body: bytes
) -> tuple[str, float]:
    """The request's line, and what it cost in dollars (0 when the answer says nothing)."""
    data = _json(body)
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    user_id = meta.get("user_id") or data.get("user_id")
    if isinstance(user_id, str) and user_id:
        who = user_label(user_id)
    else:  # a rejection names no user: a dev token still says who (its name, never the token)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        who = _NAMES_BY_TOKEN.get(token.strip(), "-") if scheme.lower() == "bearer" else "-"
    parts = [method, path, str(status), who, f"{millis:.0f} ms"]
    cost = 0.0
    if meta.get("cache"):
        parts.append(f"cache={meta['cache']}")
    query_cost = (meta.get("cost") or {}).get("query_cost") if isinstance(meta.get("cost"), dict) else None
    if isinstance(query_cost, int | float):
        cost = float(query_cost)
        parts.append(usd(cost))
    if isinstance(data.get("error"), str):
        parts.append(data["error"])
    return " ".join(parts), cost


class Tally:
    """What the gateway answered, for the one-line summary when it stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: Counter[int] = Counter()
        self._spent = 0.0

    def add(self, status: int, cost: float = 0.0) -> None:
        with self._lock:
            self._statuses[status] += 1
            self._spent += cost

    def summary(self) -> str:
        with self._lock:
            total = sum(self._statuses.values())
            if not total:
                return "no requests"
            counts = ", ".join(f"{count} x {status}" for status, count in sorted(self._statuses.items()))
            return f"{total} request{'s' if total != 1 else ''} ({counts}), {usd(self._spent)} spent"
