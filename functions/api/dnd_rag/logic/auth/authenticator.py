"""Bearer-token authentication with a per-container cache in front of a shared one.

Only the SHA-256 of a token is ever kept or logged. A rejected token is cached briefly
(negative cache) so a client retrying a bad token cannot hammer the auth API.

Every question to the auth API first takes a failed-sign-in slot of the caller's address (one
conditional write, ``FailedAuthGuard.charge``) and gives it back once the token proves valid
(or the auth API could not say): the limit holds exactly however many guesses run in parallel,
since a guess that reaches the auth API has already paid for itself.

``max_age`` (the operator routes: 30 s) bounds how old a cached answer may be: past it the auth
API is asked again, so a demoted or revoked operator loses the role within that time in every
container, while queries keep the full ``TOKEN_CACHE_TTL``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from dnd_rag.errors import ForbiddenError, InvalidTokenError, MissingTokenError, ServiceError
from dnd_rag.logic.auth.ip_guard import FailedAuthGuard
from dnd_rag.logic.common.bounded_map import BoundedMap
from dnd_rag.logic.ports import AuthApi, SharedTokenCache
from dnd_rag.models.domain import USER_ID_DESCRIPTION, User, is_valid_user_id
from dnd_rag.observability import hashed_user_id, logger

CacheSource = Literal["local", "shared", "auth_api"]
MAX_TOKEN_CHARS = 4096
_TOKEN = re.compile(rf"[!-~]{{1,{MAX_TOKEN_CHARS}}}")
_BLANKS = " \t"


@dataclass(frozen=True)
class Authentication:
    user: User
    source: CacheSource


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or MissingTokenError.

    A token is 1..MAX_TOKEN_CHARS visible ASCII characters (RFC 6750 tokens are a subset): a header
    with anything else (non-ASCII, control characters) is malformed, refused here without asking
    the auth API, whose HTTP client could not even send it.
    """
    if not authorization:
        raise MissingTokenError("Send an Authorization: Bearer <token> header.")
    scheme, _, token = authorization.strip(_BLANKS).partition(" ")
    token = token.strip(_BLANKS)
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise MissingTokenError(
            "The Authorization header must be 'Bearer <token>', the token in visible ASCII characters."
        )
    return token


class Authenticator:
    def __init__(
        self,
        auth_api: AuthApi,
        shared_cache: SharedTokenCache,
        clock: Callable[[], float],
        ttl_seconds: int,
        negative_ttl_seconds: int,
        failed_auth_guard: FailedAuthGuard | None = None,
        max_local_entries: int = 10_000,
    ) -> None:
        self._auth_api = auth_api
        self._shared = shared_cache
        self._clock = clock
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        # per container, so a hit costs no round trip: token hash -> (user or rejection, expires_at, validated_at)
        self._local: BoundedMap[str, tuple[User | None, float, float]] = BoundedMap(max_local_entries)
        self._guard = failed_auth_guard

    def authenticate(
        self, authorization: str | None, source_ip: str = "", max_age: float | None = None
    ) -> Authentication:
        """The caller's user, or MissingToken / InvalidToken / IpRateLimited / AuthUnavailable, or
        Forbidden for a user whose id this service cannot manage (models/domain.py's rule).

        ``max_age``: trust a cached answer only that many seconds after the auth API gave it."""
        result = self._lookup(authorization, source_ip, max_age)
        if result.user is None:
            if self._guard is not None and result.source != "auth_api":  # a fresh "no" was charged already
                self._guard.record_failure(source_ip)
            raise InvalidTokenError("The token was not accepted. Sign in again.")
        if not is_valid_user_id(result.user.id):
            logger.warning(
                "signed-in user refused: id outside the rule", extra={"user": hashed_user_id(result.user.id)}
            )
            raise ForbiddenError(
                f"This account cannot use the service: its id is not {USER_ID_DESCRIPTION}. Contact the operator."
            )
        return Authentication(result.user, result.source)

    def _lookup(self, authorization: str | None, source_ip: str, max_age: float | None) -> _Lookup:
        token = bearer_token(authorization)
        key = token_hash(token)
        now = self._clock()

        def recent(validated_at: float) -> bool:
            return max_age is None or now - validated_at <= max_age

        cached = self._local.get(key)
        if cached is not None and cached[1] > now and recent(cached[2]):
            return _Lookup(cached[0], "local")

        shared = self._shared.get(key, now)
        if shared is not None and recent(shared[2]):
            user, shared_expires_at, validated_at = shared
            # never outlive the shared entry: a token is trusted for TTL seconds after validation, no longer
            self._local.put(key, (user, shared_expires_at, validated_at))
            return _Lookup(user, "shared")

        # Only a caller with a failed-sign-in slot to spare reaches the auth API (429 otherwise); the
        # slot is given back below unless the token turns out invalid.
        slot = self._guard.charge(source_ip) if self._guard is not None else None
        try:
            user = self._auth_api.fetch_user(token)
        except ServiceError:  # the auth API could not say: not the caller's failure
            if slot is not None:
                slot.give_back()
            raise
        if slot is not None:
            if user is not None:
                slot.give_back()  # a valid token costs its address nothing
            else:
                slot.keep()
        ttl = self._ttl if user else self._negative_ttl
        if ttl > 0:
            self._shared.put(key, user, now + ttl, now)
            self._local.put(key, (user, now + ttl, now))
        return _Lookup(user, "auth_api")


@dataclass(frozen=True)
class _Lookup:
    user: User | None
    source: CacheSource
