"""Client of the auth API's ``GET /auth/me``: the only code that talks to it."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from dnd_rag.errors import AuthUnavailableError
from dnd_rag.models.domain import User

AUTH_RETRY_AFTER_SECONDS = 10


class HttpAuthApi:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._url = base_url.rstrip("/") + "/auth/me"
        self._client = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def fetch_user(self, token: str) -> User | None:
        try:
            response = self._client.get(self._url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise _unavailable(f"auth API unreachable ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            return None
        if response.status_code != 200:
            raise _unavailable(f"auth API answered {response.status_code}")
        try:
            return User.model_validate(response.json()["data"])
        except (ValueError, KeyError, TypeError, ValidationError):
            raise _unavailable("auth API answered 200 without a user") from None


def _unavailable(reason: str) -> AuthUnavailableError:
    return AuthUnavailableError(
        "Sign-in could not be checked right now. Please retry shortly.",
        retry_after=AUTH_RETRY_AFTER_SECONDS,
        reason=reason,
    )
