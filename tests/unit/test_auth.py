"""The authenticator's caching policy, with in-memory stand-ins for the two outside ports."""

from dataclasses import dataclass, field

import pytest

from dnd_rag.errors import AuthUnavailableError, InvalidTokenError, MissingTokenError
from dnd_rag.logic.auth.authenticator import Authenticator, bearer_token, token_hash
from dnd_rag.models.domain import User

ALICE = User(id="alice")


@dataclass
class StubAuthApi:
    users: dict[str, User]
    calls: int = 0
    down: bool = False

    def fetch_user(self, token):
        self.calls += 1
        if self.down:
            raise AuthUnavailableError("down")
        return self.users.get(token)


@dataclass
class MemoryCache:
    items: dict = field(default_factory=dict)

    def get(self, key, now):
        entry = self.items.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry

    def put(self, key, user, expires_at):
        self.items[key] = (user, expires_at)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def make(api=None, shared=None, clock=None):
    api = api or StubAuthApi({"good": ALICE})
    shared = shared if shared is not None else MemoryCache()
    clock = clock or Clock()
    return Authenticator(api, shared, clock, ttl_seconds=300, negative_ttl_seconds=30), api, shared, clock


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "Token good", "Bearer a b"])
def test_missing_or_malformed_headers_are_missing_token(header):
    with pytest.raises(MissingTokenError):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive():
    assert bearer_token("bearer good") == "good"


def test_first_call_asks_the_auth_api_then_the_local_cache_answers():
    auth, api, _, _ = make()

    first = auth.authenticate("Bearer good")
    second = auth.authenticate("Bearer good")

    assert (first.user, first.source) == (ALICE, "auth_api")
    assert (second.user, second.source) == (ALICE, "local")
    assert api.calls == 1


def test_a_new_container_finds_the_user_in_the_shared_cache():
    shared = MemoryCache()
    make(shared=shared)[0].authenticate("Bearer good")
    other_container, api, _, _ = make(shared=shared)

    result = other_container.authenticate("Bearer good")

    assert result.source == "shared"
    assert api.calls == 0


def test_the_shared_cache_is_keyed_by_hash_and_never_holds_the_token():
    auth, _, shared, _ = make()

    auth.authenticate("Bearer good")

    assert list(shared.items) == [token_hash("good")]
    assert "good" not in repr(shared.items)


def test_a_copy_from_the_shared_cache_expires_with_the_shared_entry():
    shared = MemoryCache()
    first, _, _, clock = make(shared=shared)
    first.authenticate("Bearer good")  # validated at t0, trusted until t0 + 300
    clock.now += 200
    second, api, _, _ = make(shared=shared, clock=clock)
    assert second.authenticate("Bearer good").source == "shared"

    clock.now += 101  # t0 + 301: past the validation's lifetime, though the copy is only 101 s old
    assert second.authenticate("Bearer good").source == "auth_api"
    assert api.calls == 1


def test_entries_expire_after_the_ttl():
    auth, api, _, clock = make()
    auth.authenticate("Bearer good")

    clock.now += 301
    result = auth.authenticate("Bearer good")

    assert result.source == "auth_api"
    assert api.calls == 2


def test_rejections_are_cached_briefly():
    auth, api, _, clock = make()

    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            auth.authenticate("Bearer bad")
    assert api.calls == 1

    clock.now += 31
    with pytest.raises(InvalidTokenError):
        auth.authenticate("Bearer bad")
    assert api.calls == 2


def test_auth_api_down_is_not_cached_and_not_a_401():
    auth, api, shared, _ = make()
    api.down = True

    with pytest.raises(AuthUnavailableError):
        auth.authenticate("Bearer good")

    api.down = False
    assert auth.authenticate("Bearer good").user == ALICE
    assert len(shared.items) == 1
